"""A few runs that make every built-in rule fire (and some stay silent), for engine-level properties."""

from __future__ import annotations

import numpy as np

from tests.analyzers.streams import Stream, healthy_loss, hist_fields, scalar_run, warmup_cosine_lr


def divergence_run(n: int = 400) -> Stream:
    loss = healthy_loss(n, seed=3)
    loss[150] *= 6  # spike
    loss[300:] = np.nan
    gn = np.abs(1 + 0.1 * np.random.default_rng(3).standard_normal(n))
    gn[299:] = np.inf
    return scalar_run({"train/loss": loss, "train/grad_norm": gn, "lr": warmup_cosine_lr(n)}, n)


def mixed_run(n: int = 300, seed: int = 5) -> Stream:
    """Scalars and gradient histograms interleaved; the first layer's gradients fade away."""
    rng = np.random.default_rng(seed)
    s = Stream()
    loss = healthy_loss(n, seed=seed)
    loss[200:] = np.linspace(0.6, 5, n - 200)
    for step in range(n):
        s.scalar("loss", step, loss[step])
        if step % 10 == 0:
            s.scalar("val_loss", step, 1.0 + (0.002 * max(step - 100, 0)) + 0.01 * rng.standard_normal())
        for layer, scale in (("layer0.weight", 1e-3 * np.exp(-step / 15)), ("layer2.weight", 1e-2)):
            g = scale * rng.standard_normal(64)
            if layer == "layer0.weight" and step % 7 == 0:
                g[: 48] = 0.0
            s.histogram(f"grad/{layer}", step, **hist_fields(g))
        s.scalar("grad_norm/layer0.weight", step, 1e-3 * np.exp(-step / 15) * 8)
        s.scalar("grad_norm/layer2.weight", step, 1e-2 * 8 * (1 + step / 10))
    return s


def overfit_run(n: int = 400) -> Stream:
    train = healthy_loss(n, floor=0.02, seed=7)
    rng = np.random.default_rng(7)
    val = {s: 0.5 + 1.8 * np.exp(-s / 60) + 0.001 * max(s - 150, 0) + 0.01 * rng.standard_normal()
           for s in range(0, n, 10)}
    zero0 = {s: 0.3 for s in range(0, n, 10)}
    zero1 = {s: (1.0 if s >= 250 else 0.2) for s in range(0, n, 10)}  # a layer dies at step 250
    return scalar_run({"train_loss_step": train, "val_loss": val, "grad_zero_frac/l0.weight": zero0,
                       "grad_zero_frac/l1.weight": zero1}, n)


def all_scenarios() -> dict[str, Stream]:
    return {"divergence": divergence_run(), "mixed": mixed_run(), "overfit": overfit_run()}
