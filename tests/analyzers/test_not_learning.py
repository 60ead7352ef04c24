"""`not_learning`: runs that never learn warn once, with their likely cause; healthy runs that look
flat at first (slow starters, warm-up, resumed or converged runs, epoch losses, ELBOs, RL) stay quiet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tbmon.analyzers import AnalyzerConfig, Engine, analyze
from tbmon.analyzers.alerts import Alert
from tbmon.monitor import read
from tests.analyzers.streams import Stream, hist_fields, scalar_run
from tests.scenarios.training import Recipe, train

CHANCE = float(np.log(10))


def alerts_of(stream: Stream, cuts=(), *, kind: str | None = "not_learning", resume: bool = False) -> list[Alert]:
    engine = Engine()
    out: list[Alert] = []
    for batch in stream.batches(cuts):
        if resume:  # a watcher restarted between polls
            state = json.loads(json.dumps(engine.state_dict()))
            engine = Engine()
            engine.load_state_dict(state)
        out += engine.feed(batch)
    return [a for a in out if kind is None or a.kind == kind]


def brief(alerts: list[Alert]) -> list[tuple[str, int, int]]:
    return [(a.severity, a.step, a.evidence["noticed_step"]) for a in alerts]


def noisy(level: np.ndarray, noise: float = 0.01, seed: int = 0) -> np.ndarray:
    return level * np.exp(noise * np.random.default_rng(seed).standard_normal(level.size))


def flat(n: int, level: float = CHANCE, noise: float = 0.01, seed: int = 0) -> np.ndarray:
    return noisy(np.full(n, level), noise, seed)


# --- real tiny trainings ----------------------------------------------------------------------------


def test_a_deep_tanh_net_that_never_learns_warns_and_names_vanishing_gradients(tmp_path: Path) -> None:
    """16 tanh layers at PyTorch's default init: the first layer gets ~1e-4 of the head's gradient."""
    recipe = Recipe(hidden=(16,) * 16, act="tanh", lr=0.1, steps=400, seed=0, hist_every=50, val_every=50,
                    norm_every=50)
    train(recipe, "slash", "tensorboardX", tmp_path / "deep_tanh")
    alerts = analyze(read(tmp_path))
    [alert] = [a for a in alerts if a.kind == "not_learning"]
    assert (alert.severity, alert.step, alert.tag, alert.evidence["noticed_step"]) == ("warning", 0, "train/loss", 300)
    assert alert.message.startswith("train/loss has not improved in 300 steps")
    assert "gradients vanish" in alert.message and alert.evidence["grad_ratio"] < 1e-3
    assert not [a for a in alerts if a.kind == "loss_plateau"]  # the stretch is not_learning's, not a plateau note


def test_sgd_at_lr_1e_6_warns_that_the_rate_is_too_low(tmp_path: Path) -> None:
    train(Recipe(hidden=(64,), lr=1e-6, steps=400, seed=2, val_every=50), "slash", "tensorboardX", tmp_path / "r")
    [alert] = [a for a in analyze(read(tmp_path)) if a.kind == "not_learning"]
    assert alert.severity == "warning" and "far too low" in alert.message


def _shim_run(logdir: Path, lr: float) -> None:
    """A 2-layer MLP on digits under plain SGD for 400 steps, logged by the trainer shim without its learning
    rate: histograms, weight norms and update ratios every 50 steps."""
    from tbmon.trainer_shim import TrainerShim
    from tests.trainer_shim.training import mlp, train as train_shim

    net = mlp(seed=3)
    with TrainerShim(logdir, net, hist_every=50, norms_every=10) as shim:
        train_shim(shim, net, 400, lr=lr, log_lr=False)


def test_weights_that_barely_move_are_a_cause_the_shim_shows(tmp_path: Path) -> None:
    """SGD at lr 1e-6 with no learning rate logged: the shim's update ratios say the weights move ~1e-7 of
    their norm per step, so the warning comes at step 300 with that cause (without it: nothing before 1,000
    steps). The same net at lr 0.1 learns and is silent."""
    _shim_run(tmp_path / "frozen", lr=1e-6)
    _shim_run(tmp_path / "healthy", lr=0.1)
    [alert] = [a for a in analyze(read(tmp_path / "frozen")) if a.kind == "not_learning"]
    assert (alert.severity, alert.evidence["noticed_step"]) == ("warning", 300)
    assert "weights barely move" in alert.message and alert.evidence["update_per_step"] < 1e-6
    assert [a for a in analyze(read(tmp_path / "healthy")) if a.kind == "not_learning"] == []


@pytest.mark.parametrize("recipe", [
    Recipe(hidden=(64,), lr=0.1, steps=1050, seed=5, val_every=100, hist_every=100),
    Recipe(data="teacher_reg", hidden=(64,), lr=0.02, steps=1050, seed=10, val_every=100, hist_every=100),
], ids=["digits_sgd", "noisy_regression"])
def test_a_healthy_training_is_silent(tmp_path: Path, recipe: Recipe) -> None:
    train(recipe, "slash", "tensorboardX", tmp_path / "healthy")
    assert [a for a in analyze(read(tmp_path)) if a.kind == "not_learning"] == []


# --- synthetic streams: what never learned ----------------------------------------------------------


def test_flat_without_a_visible_cause_is_an_info_first_and_a_warning_after_four_times_the_wait() -> None:
    alerts = alerts_of(scalar_run({"train/loss": flat(4200)}, 4200))
    assert brief(alerts) == [("info", 0, 1000), ("warning", 0, 4000)]
    assert "late start" in alerts[0].message and "inputs and labels" in alerts[1].message


def test_a_leap_then_back_to_chance_names_a_too_high_learning_rate() -> None:
    level = np.full(1200, CHANCE)
    level[1:12] = np.geomspace(40.0, 3.0, 11)  # Adam at 100x its lr: saturated logits, then dead units at chance
    [alert] = alerts_of(scalar_run({"train/loss": noisy(level), "lr": np.full(1200, 0.1)}, 1200))
    assert brief([alert]) == [("warning", 0, 1000)]
    assert alert.evidence["start_level"] == pytest.approx(level[0], rel=0.05)
    assert "far too high (lr 0.1)" in alert.message


def test_a_leap_waits_longer_than_the_other_causes_because_runs_recover_from_it() -> None:
    """A sampled run leapt to 140x its start, sat at the untrained loss until step ~750, then learned:
    a leap warns only after `note_steps` (1,000), the other causes after 300."""
    t = np.arange(3000)
    level = np.where(t < 750, CHANCE, 0.3 + (CHANCE - 0.3) * np.exp(-(t - 750) / 150))
    level[1:12] = np.geomspace(300.0, 3.0, 11)
    assert alerts_of(scalar_run({"train/loss": noisy(level), "lr": np.full(3000, 0.1)}, 3000)) == []


def test_a_resume_that_rewrites_steps_keeps_the_start() -> None:
    """Crash at step 250, resume from the step-150 checkpoint into the same run: still flat since step 0."""
    s = Stream()
    steps = [*range(250), *range(150, 1000)]
    for step, value in zip(steps, flat(len(steps)), strict=True):
        s.scalar("train/loss", step, value)
        s.scalar("lr", step, 1e-6)
    assert brief(alerts_of(s)) == [("warning", 0, 300)]


# --- synthetic streams: healthy runs that look flat somewhere -----------------------------------------


def late_start(n: int, sits: int, seed: int = 0) -> np.ndarray:
    t = np.arange(n)
    return noisy(np.where(t < sits, CHANCE, 0.05 + (CHANCE - 0.05) * np.exp(-(t - sits) / 100)), 0.02, seed)


def test_a_slow_starter_is_silent_or_only_noted() -> None:
    """A GRU on a memory task sat at chance for 50-3,580 steps before it learned (24 measured seeds):
    under 1,000 steps nothing; longer, an info note, never a warning."""
    assert alerts_of(scalar_run({"train/loss": late_start(4500, 900)}, 4500)) == []
    assert brief(alerts_of(scalar_run({"train/loss": late_start(4500, 3600)}, 4500))) == [("info", 0, 1000)]


def late_start_with_gradients(ratio: float, n: int = 2302, sits: int = 1150) -> Stream:
    """s14682 (twentieth development batch): 12 tanh layers under SGD with momentum, at chance for 1,150 of its
    2,302 steps, then learning; gradient histograms every 50 steps, the first layer's ``ratio`` x the head's."""
    rng = np.random.default_rng(3)
    loss = late_start(n, sits)
    s = Stream()
    for step in range(n):
        s.scalar("train/loss", step, loss[step])
        if step % 50 == 0:
            for layer, scale in (("net.0.weight", ratio * 1e-2), ("net.2.weight", 1e-3), ("net.4.weight", 1e-2)):
                s.histogram(f"grad/{layer}", step, **hist_fields(scale * rng.standard_normal(64)))
    return s


def test_a_gradient_ratio_vanishing_gradients_would_not_call_vanishing_is_no_cause() -> None:
    """At 0.0037 (s14682) a late start and a net that never learns look alike (never-learners sat at 0.0015-0.0067
    too): the no-cause path, an info note after 1,000 steps. Below vanishing_gradients' 1e-3 it is a cause."""
    assert brief(alerts_of(late_start_with_gradients(0.0037))) == [("info", 0, 1000)]
    [alert] = alerts_of(late_start_with_gradients(1e-4))
    assert (alert.severity, alert.evidence["noticed_step"]) == ("warning", 300) and "gradients vanish" in alert.message


def test_an_annealed_learning_rate_is_not_blamed_as_far_too_low() -> None:
    """A warm-restart run (sampled s0874: Adam at 1.2e-4, cosine to 9e-6) sat flat for ~370 steps, then learned
    after the restart: the annealed tail is not the set rate, so no early warning blames it. The same curve at a
    rate that never exceeded 1e-6 is blamed on it, as before."""
    n = 1500
    t = np.arange(n)
    loss = noisy(np.where(t < 380, CHANCE, 0.2 + (CHANCE - 0.2) * np.exp(-(t - 380) / 120)))
    cosine = 9e-6 + (1.2e-4 - 9e-6) * 0.5 * (1 + np.cos(np.pi * np.minimum(t, 375) / 375))
    restarted = np.where(t < 375, cosine, 1.2e-4)
    assert alerts_of(scalar_run({"train/loss": loss, "lr": restarted}, n)) == []
    flat_run = scalar_run({"train/loss": flat(n), "lr": np.full(n, 1e-6)}, n)
    (alert,) = alerts_of(flat_run)
    assert alert.severity == "warning" and "far too low" in alert.message


def test_warmup_that_starts_flat_is_silent() -> None:
    n = 3000
    lr = np.minimum(1.0, (np.arange(n) + 1) / 800) * 3e-4
    loss = late_start(n, 600)
    assert alerts_of(scalar_run({"train/loss": loss, "lr": lr}, n)) == []


def test_a_resumed_converged_run_is_not_judged() -> None:
    """Resumed from a checkpoint into a new directory: steps start at 10,000 and the loss is flat because
    the model learned before the log began. The same values logged from step 0 would warn."""
    values = flat(4200, level=0.05, noise=0.05)
    resumed, fresh = Stream(), Stream()
    for i, v in enumerate(values):
        resumed.scalar("train/loss", 10_000 + i, v)
        fresh.scalar("train/loss", i, v)
    assert alerts_of(resumed, kind=None) == [] or all(a.kind == "loss_plateau" for a in alerts_of(resumed, kind=None))
    assert alerts_of(resumed) == []
    assert brief(alerts_of(fresh)) == [("info", 0, 1000), ("warning", 0, 4000)]


def test_a_run_that_converged_within_its_first_points_is_silent() -> None:
    """HF-style, logged every 10 steps: the first point averages the descent, the next ones are converged."""
    loss = noisy(np.concatenate([[1.1, 0.32], np.full(400, 0.3)]), 0.01)
    assert alerts_of(scalar_run({"loss": dict(zip(range(10, 4030, 10), loss, strict=True))}, 4030)) == []


def test_a_slow_steady_decline_gets_no_warning() -> None:
    """30 % over 5,000 steps, linear: 6 % below its start at step 1,000 (an info note), 10 % by step 1,667,
    before the 4,000-step wait for a warning without a visible cause."""
    n = 5000
    alerts = alerts_of(scalar_run({"train/loss": noisy(np.linspace(1.0, 0.7, n), 0.02)}, n), kind=None)
    assert [a for a in alerts if a.severity != "info"] == []
    noted = [a for a in alerts if a.kind == "not_learning"]
    assert brief(noted) == [("info", 0, 1000)] and "within 10% of where it started" in noted[0].message


def test_negative_losses_are_not_judged() -> None:
    """An ELBO-style loss: negative, its zero arbitrary. Flat at -50, or improving 3 % at -1,000."""
    n = 4000
    assert alerts_of(scalar_run({"loss": -flat(n, level=50.0)}, n)) == []
    assert alerts_of(scalar_run({"loss": noisy(np.linspace(-1000, -1030, n), 0.002)}, n)) == []


def test_an_rl_like_noisy_flat_loss_is_not_judged() -> None:
    """Positive, flat-ish, with a spread of ~40 % point to point and a slow wander: not a level to call 'unchanged'."""
    n = 4000
    rng = np.random.default_rng(3)
    wander = 0.5 + 0.1 * np.sin(np.arange(n) / 300)
    assert alerts_of(scalar_run({"loss": wander * np.exp(0.4 * rng.standard_normal(n))}, n)) == []


def keras(values: np.ndarray, lr: float | None = None) -> Stream:
    s = Stream(run="exp/train", experiment_dir="exp", role="train")
    for epoch, v in enumerate(values):
        s.scalar("epoch_loss", epoch, v)
        if lr is not None:
            s.scalar("epoch_learning_rate", epoch, lr)
    return s


def test_keras_epoch_losses_are_judged_in_epochs() -> None:
    """One `epoch_loss` point per epoch in a run dir named `train`: 10 epochs with a visible cause, without
    one an info note after 20 and a warning after 80."""
    never = flat(90, noise=0.003)
    assert brief(alerts_of(keras(never, lr=1e-6))) == [("warning", 0, 9)]  # epochs 0-9
    alerts = alerts_of(keras(never))
    assert brief(alerts) == [("info", 0, 19), ("warning", 0, 79)]
    assert alerts[0].message.startswith("epoch_loss has not improved in 20 epochs")
    healthy = noisy(0.05 + 0.5 * np.exp(-np.arange(80) / 10), 0.01)
    assert alerts_of(keras(healthy)) == []


# --- streaming properties ----------------------------------------------------------------------------


def vanishing_stream(n: int = 1300) -> Stream:
    """Flat loss, lr, and gradient histograms every 50 steps whose first layer gets 1e-4 of the head's."""
    rng = np.random.default_rng(7)
    loss = flat(n)
    s = Stream()
    for step in range(n):
        s.scalar("train/loss", step, loss[step])
        s.scalar("lr", step, 0.1)
        if step % 50 == 0:
            for layer, scale in (("net.0.weight", 1e-6), ("net.2.weight", 1e-4), ("net.4.weight", 1e-2)):
                s.histogram(f"grad/{layer}", step, **hist_fields(scale * rng.standard_normal(64)))
    return s


def canon(alerts: list[Alert]) -> list[str]:
    return sorted(json.dumps(a.to_dict(), sort_keys=True) for a in alerts)


def test_chunking_and_state_round_trips_never_change_the_alerts() -> None:
    s = vanishing_stream()
    whole = canon(alerts_of(s, kind=None))
    [alert] = alerts_of(s)
    assert alert.severity == "warning" and "gradients vanish" in alert.message
    steps = [q for q in range(1, len(s)) if q % 2 == 0]  # a point at a time, roughly
    rng = np.random.default_rng(0)
    for cuts in (steps, sorted(rng.integers(1, len(s), 25).tolist())):
        assert canon(alerts_of(s, cuts, kind=None)) == whole
    assert canon(alerts_of(s, sorted(rng.integers(1, len(s), 8).tolist()), kind=None, resume=True)) == whole


def update_stream(per_step: float, n: int = 1300) -> Stream:
    """Flat loss with no learning rate; update ratios every 50 steps for two weights (and a bias at 1.0, which
    the median leaves out) whose weights moved ``per_step`` of their norm per step."""
    loss = flat(n)
    s = Stream()
    for step in range(n):
        s.scalar("train/loss", step, loss[step])
        if step % 50 == 0 and step:
            for param, scale in (("net.0.weight", per_step), ("net.0.bias", 1 / 50), ("net.2.weight", 2 * per_step)):
                s.scalar(f"update_ratio/{param}", step, 50 * scale)
    return s


def test_the_update_size_bar_and_its_chunk_invariance() -> None:
    """1e-6 per step is a cause (a warning at 300, dated and worded the same in any chunking or through a
    saved state); 5e-5 per step, just above the slowest healthy shim-written run of the sampled development
    part (4.2e-5), is not: an info note at 1,000 steps only."""
    frozen = update_stream(1e-6)
    whole = canon(alerts_of(frozen, kind=None))
    [alert] = alerts_of(frozen)
    assert (alert.severity, alert.evidence["noticed_step"]) == ("warning", 300)
    assert alert.evidence["update_per_step"] == pytest.approx(1.5e-6)  # the median of the two weights
    rng = np.random.default_rng(1)
    for cuts in ([q for q in range(1, len(frozen)) if q % 3 == 0], sorted(rng.integers(1, len(frozen), 25).tolist())):
        assert canon(alerts_of(frozen, cuts, kind=None)) == whole
    assert canon(alerts_of(frozen, sorted(rng.integers(1, len(frozen), 8).tolist()), kind=None, resume=True)) == whole
    assert brief(alerts_of(update_stream(5e-5))) == [("info", 0, 1000)]


def test_a_state_saved_before_update_sizes_were_read_still_loads() -> None:
    """A watcher's state from before ``updates`` existed loads with no update size known: the ratios logged
    after it count (each tag's first one has no interval), so a run frozen all along is still warned, once
    step 300's median has closed (by step 350's ratios, logged after its loss: noticed at 351) instead of at 300."""
    frozen = update_stream(1e-6)
    cut = 250 + 4 * 3  # the points before step 250: a loss a step, three ratios at steps 50-200
    engine = Engine()
    assert [a for a in engine.feed(frozen.batches([cut])[0]) if a.kind == "not_learning"] == []
    state = json.loads(json.dumps(engine.state_dict()))
    del state["rules"]["run"]["not_learning"]["updates"]
    engine = Engine()
    engine.load_state_dict(state)
    got = [a for a in engine.feed(frozen.batches([cut])[1]) if a.kind == "not_learning"]
    assert brief(got) == [("warning", 0, 351)] and got[0].evidence["update_per_step"] == pytest.approx(1.5e-6)


def test_state_stays_small_on_a_long_run() -> None:
    n = 20_000
    engine = Engine(AnalyzerConfig.from_mapping({"enable": ["not_learning"]}))
    for batch in scalar_run({"train/loss": flat(n)}, n).batches([5000, 12000]):
        engine.feed(batch)
    assert len(json.dumps(engine.state_dict())) < 3_000
