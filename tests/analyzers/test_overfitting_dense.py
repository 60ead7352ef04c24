"""`overfitting` on dense validation: the planned walk (``overfitting_batch``) decides exactly as the
one-evaluation-at-a-time walk, for every logging shape, chunking and saved state (issue 14)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tbmon.analyzers.overfitting as overfitting
from tbmon.analyzers import AnalyzerConfig, Engine
from tbmon.analyzers.overfitting_batch import noise_at, window_medians
from tbmon.analyzers.windows import small_median
from tests.analyzers.streams import Stream

ONLY_OVERFITTING = AnalyzerConfig(enabled=("overfitting",))
PLAIN = 10**9  # DENSE_MIN_EVALS that no batch reaches: every evaluation walked one at a time
SLOW_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]  # (every feed() sets what it patches)


def dense_stream(draw: st.DrawFn) -> Stream:
    """A run with validation every 1-3 steps (or at a random subset of steps), training every 1-3
    steps (some points NaN or repeated, sometimes), validation logged before or after training at a
    step, a loss that falls, then overfits, plateaus or rises with training (divergence)."""
    n = draw(st.integers(150, 700))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    val_every, train_every = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    shape = draw(st.sampled_from(["overfit", "plateau", "both_rise", "flicker"]))
    bottom = draw(st.integers(n // 5, 4 * n // 5))
    val_noise = draw(st.sampled_from([0.0, 0.005, 0.02, 0.1]))
    val_first = draw(st.booleans())
    t = np.arange(n)
    train = (0.05 + 2.0 * np.exp(-t / (n / 4))) * np.exp(0.05 * rng.standard_normal(n))
    val = 0.5 + 1.5 * np.exp(-t / (n / 5))
    after = np.maximum(t - bottom, 0)
    if shape == "overfit":
        val = val + draw(st.sampled_from([0.0005, 0.002, 0.01])) * after
    elif shape == "both_rise":
        val, train = val + 0.004 * after, train + 0.004 * after
    elif shape == "flicker":
        val = val * np.where((after > 0) & ((after // 7) % 3 == 0), 1.3, 1.0)
    val = val * np.exp(val_noise * rng.standard_normal(n))
    if draw(st.booleans()):
        val[rng.random(n) < 0.02] = np.nan
    if draw(st.booleans()):
        train[rng.random(n) < 0.01] = np.nan
    regular = draw(st.booleans())
    val_steps = set(range(0, n, val_every)) if regular else set(np.flatnonzero(rng.random(n) < 0.6).tolist())
    repeat = draw(st.sampled_from([0.0, 0.0, 0.05]))  # training points logged twice at a step
    lr_shape = draw(st.sampled_from([None, "decay", "restarts"]))  # restarts: the walk forgets the best
    period = draw(st.integers(n // 4, n))
    lr = 0.1 * np.exp(-t / n) if lr_shape == "decay" else 0.1 * (1 + np.cos(np.pi * (t % period) / period)) / 2 + 1e-4
    s = Stream()
    for step in range(n):
        if lr_shape is not None and step % 5 == 0:
            s.scalar("lr", step, lr[step])
        if step in val_steps and val_first:
            s.scalar("val/loss", step, val[step])
        if step % train_every == 0:
            s.scalar("train/loss", step, train[step])
            if rng.random() < repeat:
                s.scalar("train/loss", step, train[step] * 0.9)
        if step in val_steps and not val_first:
            s.scalar("val/loss", step, val[step])
    return s


def feed(
    stream: Stream, cuts: list[int], dense_min: int, monkeypatch, resume: bool = False,
    config: AnalyzerConfig = ONLY_OVERFITTING,
) -> tuple[list, list]:
    """Alerts and the rule's saved state after every batch, walked planned (``dense_min``) or plain."""
    monkeypatch.setattr(overfitting, "DENSE_MIN_EVALS", dense_min)
    engine, alerts, states = Engine(config), [], []
    for batch in stream.batches(cuts):
        if resume:
            saved = json.loads(json.dumps(engine.state_dict()))
            engine = Engine(config)
            engine.load_state_dict(saved)
        alerts += [a.to_dict() for a in engine.feed(batch)]
        states.append(json.dumps(engine.state_dict(), sort_keys=True))
    return alerts, states


@settings(max_examples=80, deadline=None, suppress_health_check=SLOW_OK)
@given(data=st.data())
def test_planned_walk_decides_and_saves_exactly_as_the_plain_walk(data: st.DataObject, monkeypatch) -> None:
    """Also with other parameters: an even or no smoothing window, no patience, a short rearm, any rise."""
    stream = dense_stream(data.draw)
    cuts = data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=4))
    resume = data.draw(st.booleans())
    params = data.draw(st.fixed_dictionaries({}, optional={
        "smooth_evals": st.sampled_from([1, 2, 4, 5]), "patience": st.sampled_from([1, 2]),
        "rearm": st.sampled_from([1, 3]), "noise_sigma": st.sampled_from([0.5, 1.0]),
        "min_rise": st.sampled_from([0.0, 0.02]), "min_train_fall": st.sampled_from([0.0, 0.3]),
        "min_gap": st.sampled_from([0.0, 0.5]),
    }))
    config = AnalyzerConfig(enabled=("overfitting",), params={"overfitting": params})
    plain = feed(stream, cuts, PLAIN, monkeypatch, resume, config)
    assert feed(stream, cuts, 1, monkeypatch, resume, config) == plain
    assert feed(stream, cuts, 64, monkeypatch, resume, config) == plain


@settings(max_examples=20, deadline=None, suppress_health_check=SLOW_OK)
@given(data=st.data())
def test_planned_walk_is_chunk_invariant(data: st.DataObject, monkeypatch) -> None:
    """Batches of any size (each large one planned) raise the alerts of one batch."""
    stream = dense_stream(data.draw)
    cuts = data.draw(st.lists(st.integers(1, len(stream) - 1), min_size=1, max_size=6))
    assert feed(stream, cuts, 1, monkeypatch)[0] == feed(stream, [], 1, monkeypatch)[0]


def _dense_overfitting_run(n: int = 2000, val_first: bool = False) -> Stream:
    t = np.arange(n)
    rng = np.random.default_rng(7)
    train = (0.05 + 2.0 * np.exp(-t / 400)) * np.exp(0.05 * rng.standard_normal(n))
    val = (0.5 + 1.5 * np.exp(-t / 300) + 0.0008 * np.maximum(t - 1200, 0)) * np.exp(0.01 * rng.standard_normal(n))
    s = Stream()
    for step in range(n):
        for tag, curve in (("val/loss", val), ("train/loss", train))[:: 1 if val_first else -1]:
            s.scalar(tag, step, curve[step])
    return s


@pytest.mark.parametrize("val_first", [False, True])
def test_a_dense_run_is_judged_one_evaluation_at_a_time_only_where_it_can_count(val_first: bool, monkeypatch) -> None:
    """2,000 evaluations, the validation loss rising from step 1,200: the same warning as the plain walk,
    while the evaluations before the rise, which cannot count, are stepped over in a few stretches
    (also when each evaluation is logged before its step's training point)."""
    walked: list[int] = []
    one = overfitting.Overfitting._walk_one
    monkeypatch.setattr(overfitting.Overfitting, "_walk_one", lambda self, *a: walked.append(a[3]) or one(self, *a))
    stream = _dense_overfitting_run(val_first=val_first)
    planned = feed(stream, [], 64, monkeypatch)
    before_rise = sum(step < 1200 for step in walked)
    assert planned == feed(stream, [], PLAIN, monkeypatch)
    assert [(a["kind"], a["step"]) for a in planned[0]] == [("overfitting", 1198)]
    assert before_rise < 60, before_rise  # of 1,200 (the plain walk: all of them)


def test_many_training_points_between_evaluations_fill_the_buffer_as_the_plain_walk_does(monkeypatch) -> None:
    """An evaluation every 3,000 steps with training every step: windows over the 2,048-point buffer."""
    n = 3000 * 40
    t = np.arange(n)
    train = 0.05 + 2.0 * np.exp(-t / 40000)
    evals = {s: 0.6 + 1.5 * np.exp(-s / 50000) + (0.00001 * (s - 60000) if s > 60000 else 0)
             for s in range(0, n, 3000)}
    stream = Stream()
    for step in range(n):
        stream.scalar("loss", step, train[step])
        if step in evals:
            stream.scalar("eval_loss", step, evals[step])
    plain = feed(stream, [], PLAIN, monkeypatch)
    assert [a["kind"] for a in plain[0]] == ["overfitting"]
    assert feed(stream, [], 1, monkeypatch) == plain


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.floats(-1e300, 1e300), min_size=1, max_size=80), data=st.data())
def test_window_medians_are_small_medians(values: list[float], data: st.DataObject) -> None:
    windows = data.draw(st.lists(st.tuples(st.integers(0, len(values) - 1), st.integers(1, len(values))), max_size=20))
    windows = [(s, min(n, len(values) - s)) for s, n in windows]
    got = window_medians(np.array(values), np.array([s for s, _ in windows], dtype=np.int64),
                         np.array([n for _, n in windows], dtype=np.int64))
    assert got.tolist() == [small_median(values[s : s + n]) for s, n in windows]


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_a_stretch_judges_the_noise_float_for_float_as_the_walk(data: st.DataObject) -> None:
    """``noise_at`` (a stretch's evaluations at once) against ``evaluation_noise`` (the walk's, one
    window of kept evaluations): the same σ to the last bit, on either side of the switch from the
    second differences of the window to the first differences since the best."""
    window = overfitting.MAX_EVALS
    kept = np.array(data.draw(st.lists(st.floats(-1e6, 1e6), min_size=window, max_size=window + 12)))
    best = data.draw(st.integers(0, kept.size - 1))
    position = np.arange(max(window - 1, best), kept.size)
    expected = [overfitting.evaluation_noise(kept[q - (window - 1) : q + 1].tolist(), max(best - q + window - 1, 0))
                for q in position.tolist()]
    assert noise_at(kept, position, window, best, overfitting.NOISE_SINCE_BEST).tolist() == expected


@pytest.mark.parametrize("role_order", [("train", "validation"), ("validation", "train")])
def test_keras_siblings_with_dense_validation_take_either_walk_to_the_same_alert(role_order, monkeypatch) -> None:
    """The validation run's evaluations judged against the training run's buffer (no training in its batch)."""
    n = 400
    t = np.arange(n)
    train = 2.0 * np.exp(-t / 80)
    val = 1.0 + 0.3 * np.exp(-t / 60) + 0.002 * np.maximum(t - 150, 0)
    runs = {}
    for role, tag, curve in (("train", "epoch_loss", train), ("validation", "epoch_loss", val)):
        s = Stream(run=f"exp/{role}", experiment_dir="exp", role=role)
        for step in range(n):
            s.scalar(tag, step, curve[step])
        runs[role] = s
    results = []
    for dense_min in (PLAIN, 1):
        monkeypatch.setattr(overfitting, "DENSE_MIN_EVALS", dense_min)
        engine = Engine(ONLY_OVERFITTING)
        results.append([a.to_dict() for role in role_order for b in runs[role].batches() for a in engine.feed(b)])
    assert results[0] == results[1]
    assert [(a["run"], a["kind"]) for a in results[0]] == [("exp", "overfitting")]


@pytest.mark.parametrize("val_first", [False, True])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    "params", [{}, {"patience": 1, "rearm": 2, "noise_sigma": 1.0}, {"smooth_evals": 2, "min_rise": 0.05}]
)
def test_a_rise_judged_a_stretch_at_a_time_counts_streaks_and_episodes_as_the_plain_walk(
    seed: int, params: dict, val_first: bool, monkeypatch
) -> None:
    """Validation every step rising (steadily, or flickering +30 % on and off) after a minimum, training
    still falling: the evaluations that may count are judged a stretch at a time (noise, streak,
    episode), with the plain walk's alerts, episode counts and saved state; also when each step's
    validation point is logged before its training point (judged when the next one arrives)."""
    n = 1500
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    train = (0.05 + 2.0 * np.exp(-t / 300)) * np.exp(0.05 * rng.standard_normal(n))
    after = np.maximum(t - 500 - 100 * seed, 0)
    val = 0.5 + 1.5 * np.exp(-t / 200)
    val = val * (np.where((after > 0) & ((after // 9) % 4 == 0), 1.3, 1.0) if seed % 2 else 1 + 0.0004 * after)
    val = val * np.exp(0.01 * rng.standard_normal(n))
    stream = Stream()
    for step in range(n):
        for tag, curve in (("val/loss", val), ("train/loss", train))[:: 1 if val_first else -1]:
            stream.scalar(tag, step, curve[step])
    config = AnalyzerConfig(enabled=("overfitting",), params={"overfitting": params})
    judged = []
    stretch = overfitting.Overfitting._judge_stretch
    monkeypatch.setattr(overfitting.Overfitting, "_judge_stretch",
                        lambda self, *a: judged.append(a[5] - a[4]) or stretch(self, *a))
    cuts = [len(stream) // 3, len(stream) // 2]
    for chunks in ([], cuts):
        planned = feed(stream, chunks, 64, monkeypatch, config=config)
        assert planned == feed(stream, chunks, PLAIN, monkeypatch, config=config)
        assert any(a["kind"] == "overfitting" for a in planned[0]) or params  # (the defaults do warn)
    assert sum(judged) >= 50  # the rise is hundreds of evaluations
