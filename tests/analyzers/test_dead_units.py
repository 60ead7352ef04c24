"""`dead_units`: layers whose gradients are mostly exactly zero; measured on real tiny trainings too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tbmon.analyzers import Engine, analyze
from tests.analyzers.streams import Stream, scalar_run

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


def test_a_layer_dead_without_a_break_is_said_once_while_other_layers_re_arm_the_episode() -> None:
    """Development run s1316: a 31-layer net whose quiet layers re-armed the run's episode between two logs
    of one dead layer, which was then alerted 16 times, each dated at its streak's first step."""
    fracs = {"0.weight": lambda s: 0.3, "4.weight": lambda s: 0.9}  # 4.weight dead from the first log on
    fracs.update({f"{k}.weight": (lambda s: 0.2) for k in range(6, 40, 2)})  # 17 healthy layers
    fracs["2.weight"] = lambda s: 0.9 if 30 <= s < 60 else 0.2  # a second layer dies for a while
    stream = zero_frac_run(fracs, 100)
    alerts = alerts_of(stream)
    assert [(a.step, a.tag) for a in alerts] == [(0, "grad_zero_frac/4.weight"), (30, "grad_zero_frac/2.weight")]
    assert _fed(stream, cuts=range(1, len(stream))) == _fed(stream)  # a step at a time: the same


def test_silent_on_sparse_first_layer_embeddings_and_one_zero_batch() -> None:
    stream = zero_frac_run({
        "0.weight": lambda s: 0.95,  # first layer: sparse inputs (bag of words, blank pixels); its units live
        "0.bias": lambda s: 0.1,
        "2.weight": lambda s: 1.0 if s == 50 else 0.2,  # one all-zero batch is not sustained
        "4.weight": lambda s: 0.1,
    })
    assert alerts_of(stream) == []
    # Embeddings: only the rows of the batch's tokens get gradient.
    assert alerts_of(zero_frac_run({"embed.weight": lambda s: 0.99, "0.weight": lambda s: 0.2,
                                    "2.weight": lambda s: 0.1})) == []


# The twenty-third development batch's s16166 (healthy: an 8-layer ReLU CNN at 2.05x He init under momentum SGD,
# validation 327 -> 0.97), its exact zero fractions at the 10 logs (every 50 steps): its first update killed 10 of
# net.3's 16 channels (bias 0.625) and 2 of net.0's; net.3's weight entries are 0.70 zero because the dead inputs
# from net.0 count again, and net.5's 0.77 while 15 of its 16 units are alive (net.3's dead channels are its inputs).
S16166 = {
    "net.0.weight": [0.0, 0.1319, 0.1389, 0.125, 0.125, 0.125, 0.1319, 0.125, 0.125, 0.125],
    "net.0.bias": [0.0] + [0.125] * 9,
    "net.3.weight": [0.0334, 0.7018, 0.7088, 0.7049, 0.6979, 0.7053, 0.707, 0.7005, 0.6949, 0.6997],
    "net.3.bias": [0.0, 0.625, 0.625, 0.625, 0.625, 0.625, 0.625, 0.625, 0.5625, 0.625],
    "net.5.weight": [0.0312, 0.7717, 0.7734, 0.7704, 0.7665, 0.7708, 0.7726, 0.763, 0.7635, 0.7669],
    "net.5.bias": [0.0] + [0.0625] * 9,
    "net.18.weight": [0.2371, 0.3008, 0.3242, 0.3516, 0.3906, 0.418, 0.3984, 0.3828, 0.4258, 0.4102],
    "net.18.bias": [0.0] * 10,
}


def _logged(fracs: dict[str, list[float]]) -> Stream:
    """Exact zero fractions every 50 steps, in the shim's order (each layer's weight, then its bias)."""
    s = Stream()
    for k in range(10):
        for name, values in fracs.items():
            s.scalar(f"grad_zero_frac/{name}", 50 * k, values[k])
    return s


def test_a_layer_with_a_bias_is_judged_by_its_units() -> None:
    """A zero weight-gradient entry is a dead unit of its own layer or a dead input from the layer before: the
    entries count a dead unit twice and blame the layer after it (s16166's net.5, 0.77 with 94 % of its units
    alive). A bias entry is one unit: its gradient is zero only when no example of the batch activated it."""
    assert _fed(_logged(S16166)) == []
    dead = _logged({**S16166, "net.3.bias": [0.0] + [0.75] * 9})  # three quarters of net.3's units dead
    assert _fed(dead) == [(50, "grad_zero_frac/net.3.bias", 100)]
    for cuts in (_per_step(dead), list(range(1, len(dead)))):
        assert _fed(dead, cuts) == _fed(dead)
    # A layer with no bias (a convolution before BatchNorm) is still judged by its weight's entries.
    no_bias = _logged({k: v for k, v in S16166.items() if k != "net.5.bias"})
    assert _fed(no_bias) == [(50, "grad_zero_frac/net.5.weight", 100)]
    assert _fed(no_bias, _per_step(no_bias)) == _fed(no_bias)


# The twenty-fifth development batch's s17456 (healthy: a 6-layer ReLU MLP, dropout 0.48, momentum SGD at batch 9,
# loss 9.4 -> 0.35): the exact zero fraction of its last hidden layer's bias at its 103 logs (every 22 steps).
S17456_NET15 = [
    0.31, 0.91, 0.88, 0.86, 0.83, 0.92, 0.97, 0.95, 0.94, 0.97, 0.97, 1.00, 0.97, 0.95, 0.94, 0.91, 0.72, 0.91, 0.84,
    0.73, 0.78, 0.78, 0.94, 0.77, 0.72, 0.62, 0.75, 0.80, 0.86, 0.73, 0.83, 0.84, 0.83, 0.89, 0.72, 0.78, 0.80, 0.75,
    0.83, 0.78, 0.72, 0.66, 0.66, 0.73, 0.52, 0.73, 0.72, 0.75, 0.70, 0.67, 0.69, 0.67, 0.70, 0.69, 0.73, 0.72, 0.73,
    0.66, 0.66, 0.67, 0.62, 0.64, 0.72, 0.59, 0.62, 0.58, 0.75, 0.69, 0.59, 0.67, 0.67, 0.64, 0.66, 0.69, 0.61, 0.59,
    0.69, 0.64, 0.66, 0.67, 0.58, 0.61, 0.59, 0.64, 0.64, 0.64, 0.59, 0.53, 0.64, 0.61, 0.53, 0.59, 0.67, 0.61, 0.61,
    0.62, 0.67, 0.69, 0.66, 0.66, 0.69, 0.61, 0.62]


def _every_22_steps(net15: list[float]) -> Stream:
    """s17456's logging: per log, the first layer's weight and bias, a healthy hidden layer, then net.15's bias."""
    s = Stream()
    for k, share in enumerate(net15):
        for name, value in (("net.0.weight", 0.1), ("net.0.bias", 0.1), ("net.3.bias", 0.3), ("net.15.bias", share)):
            s.scalar(f"grad_zero_frac/{name}", 22 * k, value)
    return s


def test_a_layer_flickering_around_the_bar_is_one_episode_until_it_stays_under_it() -> None:
    """s17456's last hidden layer: 83-100 % of its units got no gradient for its first 16 logs, then 0.52-0.89
    (median 0.69). Each return over the bar for two logs was a new alert (steps 572, 990, 1,188), because the run's
    episode re-armed after 10 quiet points summed over all its layer tags, under one log. A layer is re-armed by
    ``rearm`` of its own logs under the bar; one that stays under it that long and dies again is said again."""
    flicker = _every_22_steps(S17456_NET15)
    assert _fed(flicker) == [(22, "grad_zero_frac/net.15.bias", 44)]
    assert _fed(flicker, _per_step(flicker)) == _fed(flicker)
    again = _every_22_steps(S17456_NET15[:20] + [0.4] * 10 + [0.9] * 5)
    assert _fed(again) == [(22, "grad_zero_frac/net.15.bias", 44), (660, "grad_zero_frac/net.15.bias", 682)]


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
    # Layer 2's dead units block all gradient: layer 0's units (seq first) get none either, and are named.
    assert [(a.step, a.evidence["layer"], a.evidence["counted"]) for a in dead] == [(0, "0.bias", "units")]
    assert dead[0].message.startswith("0: 100% of its units got no gradient from any example of the batch")
    assert [a for a in analyze(tmp_path / "ok") if a.severity != "info"] == []


def _per_step(stream) -> list[int]:
    """Cut positions between training steps: what `tbmon watch` feeds."""
    steps = [(stream.points[i][1] if kind == "s" else stream.hists[i][1]) for kind, i in stream._order]
    return [q for q in range(1, len(steps)) if steps[q] != steps[q - 1]]


def _fed(stream, cuts=()) -> list[tuple[int, str, int]]:
    engine = Engine()
    return [(a.step, a.tag, a.evidence["noticed_step"]) for b in stream.batches(cuts) for a in engine.feed(b)
            if a.kind == "dead_units"]


def test_all_zero_histograms_are_judged_in_every_chunk_not_only_the_first() -> None:
    """Histogram-only run, a layer dies at step 50: a step-at-a-time feed must see it too (it once
    judged histograms only in the first chunk, mistaking their own streaks for exact scalars)."""
    from tests.analyzers.streams import hist_fields

    rng = np.random.default_rng(0)
    s = Stream()
    for step in range(0, 100, 10):
        s.scalar("loss", step, 1.0)
        for layer in ("net.0.weight", "net.2.weight", "net.4.weight"):
            g = rng.standard_normal(32) * (0.0 if layer == "net.2.weight" and step >= 50 else 0.1)
            s.histogram(f"grad/{layer}", step, **hist_fields(g))
    assert _fed(s) == [(50, "grad/net.2.weight", 60)]
    assert _fed(s, _per_step(s)) == _fed(s)


def test_a_layer_that_appears_late_changes_the_first_layer_from_then_on_only() -> None:
    """A name-sorted writer logs `net.10.weight`, `net.2.weight`; `net.4.weight` appears at step 30,
    and from then on the names read as sorted, so `net.2` becomes the first layer (not judged).
    Before step 30 it is judged, whether the run is fed in one batch or step by step."""
    s = Stream()
    for step in range(60):
        s.scalar("grad_zero_frac/net.10.weight", step, 0.1)
        s.scalar("grad_zero_frac/net.2.weight", step, 1.0)
        if step >= 30:
            s.scalar("grad_zero_frac/net.4.weight", step, 0.2)
    assert _fed(s) == [(0, "grad_zero_frac/net.2.weight", 1)]
    assert _fed(s, _per_step(s)) == _fed(s)


def test_exact_scalars_take_over_from_histograms_at_their_first_point() -> None:
    """Histograms before the run's first grad_zero_frac point count, later ones do not, whatever the chunking."""
    from tests.analyzers.streams import hist_fields

    s = Stream()
    zero, live = hist_fields(np.zeros(16)), hist_fields(np.full(16, 0.1))
    for step in range(0, 60, 10):
        for layer in ("0.weight", "2.weight", "4.weight"):
            s.histogram(f"grad/{layer}", step, **(zero if layer == "2.weight" and step >= 20 else live))
        if step >= 30:  # the exact scalars start later and say the layer is alive
            for layer in ("0.weight", "2.weight", "4.weight"):
                s.scalar(f"grad_zero_frac/{layer}", step, 0.2)
    assert _fed(s) == [(20, "grad/2.weight", 30)]
    for cuts in (_per_step(s), list(range(1, len(s))), [len(s) - 3]):
        assert _fed(s, cuts) == _fed(s)
