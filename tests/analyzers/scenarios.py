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


def blown_up_run(n: int = 260, seed: int = 11) -> Stream:
    """One run-level episode across several tags, and what a divergence does to the gradients.

    The loss spikes and recovers (info), explodes and stays up (critical), then spikes again (a
    lower level inside the open episode) and goes NaN; the total grad norm goes +inf and the
    validation loss NaN in the same episode. Gradient histograms every 10 steps: a layer appears
    late (step 60), a ReLU layer goes all-zero after the explosion (dead units), the last layer's
    histograms turn NaN.
    """
    rng = np.random.default_rng(seed)
    loss = healthy_loss(n, seed=seed)
    loss[100] = 8.0  # spike: well above the recent median, below 10x the initial loss
    loss[140:143] = 60.0  # explosion: over 10x the initial loss, still there at the next point
    loss[165] = 8.0  # a smaller spike inside the open episode
    loss[220:] = np.nan
    s = Stream()
    for step in range(n):
        s.scalar("train/loss", step, loss[step])
        s.scalar("train/grad_norm", step, np.inf if step >= 225 else abs(1 + 0.1 * rng.standard_normal()))
        s.scalar("lr", step, 1e-2)
        if step % 10 == 0:
            s.scalar("val/loss", step, np.nan if step >= 230 else 1.0 + 0.01 * rng.standard_normal())
            layers = ["net.0.weight", "net.2.weight", "net.4.weight"] + (["net.6.weight"] if step >= 60 else [])
            for layer in layers:
                g = 0.05 * rng.standard_normal(64)
                if layer == "net.2.weight" and step >= 150:
                    g[:] = 0.0
                if layer == "net.4.weight" and step >= 240:
                    g[:] = np.nan
                s.histogram(f"grad/{layer}", step, **hist_fields(g))
    return s


def plateau_run(n: int = 2600) -> Stream:
    """Falls, stalls at constant lr, falls again after a step decay, stalls again: two plateau notes."""
    t = np.arange(n)
    level = np.where(t < 1100, 0.4 + 2.0 * np.exp(-t / 80), 0.15 + 0.25 * np.exp(-np.clip(t - 1100, 0, None) / 60))
    loss = level * np.exp(0.1 * np.random.default_rng(13).standard_normal(n))
    lr = np.where(t < 1100, 0.1, 0.01)
    return scalar_run({"train/loss": loss, "lr": lr}, n)


def never_learns_run(n: int = 1100) -> Stream:
    """At chance level from the start, lr logged, the first layer's gradient 1e-4 of the head's: not_learning."""
    rng = np.random.default_rng(17)
    loss = np.log(10) * np.exp(0.01 * rng.standard_normal(n))
    s = Stream()
    for step in range(n):
        s.scalar("train/loss", step, loss[step])
        s.scalar("lr", step, 0.1)
        if step % 50 == 0:
            for layer, scale in (("net.0.weight", 1e-6), ("net.2.weight", 1e-2)):
                s.histogram(f"grad/{layer}", step, **hist_fields(scale * rng.standard_normal(32)))
    return s


def all_scenarios() -> dict[str, Stream]:
    return {"divergence": divergence_run(), "mixed": mixed_run(), "overfit": overfit_run(), "blown_up": blown_up_run(),
            "plateau": plateau_run(), "never_learns": never_learns_run()}
