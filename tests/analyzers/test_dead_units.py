"""`dead_units`: layers whose gradients are mostly exactly zero; measured on real tiny trainings too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tbmon.analyzers import Engine, analyze
from tests.analyzers.streams import scalar_run

LAYERS = ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight"]


def zero_frac_run(fracs: dict[str, callable], n: int = 100):
    cols = {f"grad_zero_frac/{name}": np.array([f(s) for s in range(n)]) for name, f in fracs.items()}
    return scalar_run(cols, n)


def alerts_of(stream):
    engine = Engine()
    return [a for b in stream.batches() for a in engine.feed(b) if a.kind == "dead_units"]


def test_fires_at_the_first_of_two_dead_logs_and_names_the_layer() -> None:
    stream = zero_frac_run({"0.weight": lambda s: 0.3, "2.weight": lambda s: 1.0 if s >= 40 else 0.2,
                            "4.weight": lambda s: 0.1})
    alerts = alerts_of(stream)
    assert [(a.step, a.tag, a.severity) for a in alerts] == [(40, "grad_zero_frac/2.weight", "warning")]
    assert "2.weight" in alerts[0].message and alerts[0].evidence["noticed_step"] == 41


def test_silent_on_sparse_first_layer_embeddings_biases_and_one_zero_batch() -> None:
    stream = zero_frac_run({
        "0.weight": lambda s: 0.95,  # first layer: sparse inputs (bag of words, blank pixels)
        "0.bias": lambda s: 1.0,
        "2.weight": lambda s: 1.0 if s == 50 else 0.2,  # one all-zero batch is not sustained
        "4.weight": lambda s: 0.1,
    })
    assert alerts_of(stream) == []
    # Embeddings: only the rows of the batch's tokens get gradient.
    assert alerts_of(zero_frac_run({"embed.weight": lambda s: 0.99, "0.weight": lambda s: 0.2,
                                    "2.weight": lambda s: 0.1})) == []


torch = pytest.importorskip("torch")


def _train(logdir: Path, *, dead: bool) -> None:
    from sklearn.datasets import load_digits

    from tbmon.trainer_shim import TrainerShim

    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16, dtype=torch.float32), torch.tensor(y)
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                              torch.nn.Linear(64, 10))
    if dead:  # a bias that pushes every pre-activation below zero: the second ReLU layer is dead
        with torch.no_grad():
            net[2].bias.fill_(-3.0)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    with TrainerShim(logdir, net, hist_every=5, norms_every=5) as shim:
        for step in range(40):
            idx = torch.randint(0, len(x), (32,))
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            shim.log_gradients(step)
            opt.step()
            shim.log_scalars(step, loss=loss.item())


def test_real_dead_relu_training_is_flagged_and_a_healthy_one_is_not(tmp_path: Path) -> None:
    _train(tmp_path / "dead", dead=True)
    _train(tmp_path / "ok", dead=False)
    dead = [a for a in analyze(tmp_path / "dead") if a.kind == "dead_units"]
    assert [(a.step, a.evidence["layer"]) for a in dead] == [(0, "2.weight")]
    assert [a for a in analyze(tmp_path / "ok") if a.severity != "info"] == []
