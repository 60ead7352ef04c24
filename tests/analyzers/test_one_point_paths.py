"""The one-point paths a live feed takes (issue 14) give what the vectorised paths give for the same stream.

A watcher feeds a run a step at a time, so `episode_events`, `streak_update` and
`ScalarContext.update` mostly see one point; they answer it without numpy's set-up. Each test feeds
the same stream point by point (the fast path) and whole (the vectorised path) and compares every
answer and the state left behind.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tbmon.analyzers import Engine
from tbmon.analyzers.base import ScalarContext, Tagged
from tbmon.analyzers.config import AnalyzerConfig
from tbmon.analyzers.series import HistogramSeries, RunBatch, ScalarSeries
from tbmon.analyzers.signals import Match
from tbmon.analyzers.windows import (
    EpisodeState,
    Streak,
    episode_events,
    episode_point,
    episode_points,
    small_median,
    streak_update,
    trailing_median,
    trailing_window_stats,
    window_stats_point,
)
from tests.analyzers.streams import Stream, scalar_run

VALUES = st.one_of(st.floats(-5, 5), st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0]))


@settings(max_examples=200, deadline=None)
@given(levels=st.lists(st.sampled_from([0, 0, 1, 2]), min_size=1, max_size=40), rearm=st.integers(0, 6))
def test_episode_point_is_episode_events_of_one_point(levels: list[int], rearm: int) -> None:
    whole, single = EpisodeState(), EpisodeState()
    steps = np.arange(len(levels)) * 10
    expected = episode_events(np.asarray(levels, dtype=np.int64), steps, whole, rearm).tolist()
    due = [i for i, level in enumerate(levels) if episode_point(level, int(steps[i]), single, rearm)]
    assert due == expected
    assert single.to_json() == whole.to_json()


@settings(max_examples=200, deadline=None)
@given(cond=st.lists(st.booleans(), min_size=1, max_size=40), start=st.integers(0, 3))
def test_streak_update_point_by_point_matches_one_batch(cond: list[bool], start: int) -> None:
    n = len(cond)
    steps, walls, values = np.arange(n) * 5, np.arange(n) * 0.5 + 100.0, np.linspace(1.0, 2.0, n)
    whole, single = (Streak(length=start, start_step=-7 if start else -1) for _ in range(2))
    run_len, _ = streak_update(np.asarray(cond), whole, steps, walls, values)
    lengths = []
    for i in range(n):
        one, first = streak_update(np.asarray(cond[i : i + 1]), single, steps[i : i + 1], walls[i : i + 1], values[i : i + 1])
        assert one.dtype == first.dtype == np.int64
        lengths.append(int(one[0]))
    assert lengths == run_len.tolist()
    # Where the open streak began (its wall time and value mean something only while one is open).
    assert (single.length, single.start_step) == (whole.length, whole.start_step)
    if whole.start_step >= 0:
        assert (single.start_wall, single.start_value) == (whole.start_wall, whole.start_value)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(VALUES, min_size=1, max_size=30).filter(lambda v: not np.isnan(v[0])))
def test_scalar_context_point_by_point_matches_one_batch(values: list[float]) -> None:
    # (A NaN first value is left out: `first` is then the first value of the first chunk, whichever
    # path computes it, a chunking dependence of `update` itself, not of its one-point path.)
    n = len(values)
    series = ScalarSeries("lr", np.arange(n, dtype=np.int64) * 3, np.arange(n, dtype=np.int64) * 2,
                          np.arange(n) * 1.0, np.asarray(values, dtype=float))
    match = Match("learning_rate", None)
    whole = ScalarContext()
    whole.update(iter([Tagged(match, series)]))
    expected = [(whole.at(int(q)), whole.rises_at(int(q))) for q in series.seq]
    single, got = ScalarContext(), []
    for i in range(n):
        point = ScalarSeries("lr", series.seq[i : i + 1], series.step[i : i + 1], series.wall_time[i : i + 1],
                             series.value[i : i + 1])
        single.update(iter([Tagged(match, point)]))
        got.append((single.at(int(point.seq[0])), single.rises_at(int(point.seq[0]))))
    assert _numbers(got) == _numbers(expected)
    assert _numbers(single.state()) == _numbers(whole.state())


def _numbers(data: object) -> list[object]:
    """Nested answers flattened, NaN as a marker (NaN != NaN), so -0.0 == 0.0 as the rules compare them."""
    flat = json.loads(json.dumps(data).replace("NaN", '"nan"'))

    def walk(x: object) -> list[object]:
        return [y for item in x for y in walk(item)] if isinstance(x, list) else [x]

    return walk(flat)


def test_overfitting_state_saved_does_not_change_as_the_rule_goes_on() -> None:
    """The rule grows its lists in place; a state it handed out (a watcher's checkpoint) stays as it was."""
    steps = np.arange(400, dtype=np.int64)
    train = 2.0 * np.exp(-steps / 100.0) + 0.1
    val = np.where(steps < 200, train + 0.05, train + 0.05 + 0.004 * (steps - 200))

    def batch(lo: int, hi: int) -> RunBatch:
        return RunBatch("run", scalars=(
            ScalarSeries("train/loss", 2 * steps[lo:hi], steps[lo:hi], steps[lo:hi] * 1.0, train[lo:hi]),
            ScalarSeries("val/loss", 2 * steps[lo:hi] + 1, steps[lo:hi], steps[lo:hi] * 1.0, val[lo:hi]),
        ))

    engine = Engine()
    engine.feed(batch(0, 150))
    whole = engine.state_dict()
    frozen = json.dumps(whole)
    saved = whole["rules"]["run"]["overfitting"]
    mine = json.dumps(saved)
    alerts = engine.feed(batch(150, 400))
    assert json.dumps(saved) == mine
    assert [a.kind for a in alerts] == ["overfitting"]
    resumed = Engine()
    resumed.load_state_dict(json.loads(frozen))
    again = resumed.feed(batch(150, 400))
    assert [(a.step, a.message) for a in again] == [(a.step, a.message) for a in alerts]


def test_an_evaluation_training_has_passed_is_judged_in_the_batch_that_brings_it() -> None:
    """Training at steps 0-30, then (next batch) the first validation point, at step 10: its tag is
    new, and it is judged at once, with no training point after it needed to trigger that."""
    steps = np.arange(31, dtype=np.int64)
    engine = Engine()
    engine.feed(RunBatch("run", scalars=(ScalarSeries("train/loss", steps, steps, steps * 1.0, 1.0 / (1 + steps)),)))
    one = np.array([10], dtype=np.int64)
    engine.feed(RunBatch("run", scalars=(ScalarSeries("val/loss", one + 100, one, one * 1.0, np.array([0.5])),)))
    val = engine.state_dict()["rules"]["run"]["overfitting"]["tags"]["val:val/loss"]
    assert val["pending"] == [] and val["prev_step"] == 10
    assert val["evals"][0][1] == float(np.median(1.0 / (1 + steps[:11])))  # level: the points up to step 10


def test_an_overfitting_state_saved_before_issue_14_still_loads() -> None:
    """Training points used to be saved as [step, value] pairs; such a state loads and goes on."""
    from tbmon.analyzers.overfitting import Overfitting

    rule = Overfitting("run", {})
    rule.load_state_dict({"tags": {"train:loss": {"points": [[0.0, 2.0], [1.0, 1.5]], "max_step": 1}},
                          "episodes": {}, "alerted_minimum": {}})
    assert rule.state_dict()["tags"]["train:loss"] == {"steps": [0, 1], "values": [2.0, 1.5], "max_step": 1}


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.one_of(st.floats(-1e6, 1e6), st.sampled_from([float("inf"), -float("inf"), 0.0, -0.0])),
                       min_size=1, max_size=20))
def test_small_median_is_numpys_median(values: list[float]) -> None:
    with np.errstate(invalid="ignore"):  # inf and -inf in the middle: NaN either way
        expected = float(np.median(values))
    assert _numbers([small_median(values)]) == _numbers([expected])


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.floats(-100, 100), min_size=1, max_size=60), window=st.integers(1, 12))
def test_trailing_median_point_by_point_matches_one_batch(values: list[float], window: int) -> None:
    data = np.asarray(values)
    whole = trailing_median(data[:0], data, window)
    single = [trailing_median(data[:i], data[i : i + 1], window)[0] for i in range(data.size)]
    assert single == whole.tolist()


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.floats(-100, 100), min_size=1, max_size=80), window=st.integers(4, 24))
def test_trailing_window_stats_point_by_point_reuses_the_block(values: list[float], window: int) -> None:
    data = np.asarray(values)
    med, mad, _ = trailing_window_stats(data[:0], data, window, 3, offset=0, stride=8)
    last: list[float] | None = None
    got = []
    for i in range(data.size):
        m, d, last = trailing_window_stats(data[max(0, i - window - 8) : i], data[i : i + 1], window, 3, offset=i,
                                           stride=8, last=last)
        got.append((float(m[0]), float(d[0])))
    assert _numbers(got) == _numbers(list(zip(med.tolist(), mad.tolist())))


def _divergence_alerts(stream: Stream, cuts: range | tuple[int, ...]) -> tuple[list[tuple], dict]:
    engine = Engine(AnalyzerConfig.from_mapping({"enable": ["divergence"]}))
    alerts = [a for batch in stream.batches(cuts) for a in engine.feed(batch)]
    rows = sorted((a.tag, a.step, a.severity, a.message, a.evidence.get("condition")) for a in alerts)
    return rows, json.loads(json.dumps(engine.state_dict()["rules"]["run"]["divergence"], default=str))


def test_divergence_blowup_and_undone_point_by_point_match_one_batch() -> None:
    """The one-point paths of ``_blowup`` and ``_undone`` (a live feed) decide as the vectorised ones."""
    rng = np.random.default_rng(4)
    n = 400
    undone = np.concatenate([np.linspace(2.3, 0.4, 150), np.linspace(0.4, 2.4, 60), np.full(190, 2.4)])
    climb = np.linspace(1.0, 4.0, n)  # a loss that climbs from step 0: its best is its first value
    for loss in (undone, climb):
        stream = scalar_run({"train/loss": loss * (1 + 0.02 * rng.standard_normal(n)),
                             "train/lr": np.full(n, 1e-3)}, n)
        whole, whole_state = _divergence_alerts(stream, ())
        single, single_state = _divergence_alerts(stream, range(1, len(stream)))
        assert {"undone", "blowup"} & {row[-1] for row in whole}
        assert single == whole
        assert _numbers(single_state) == _numbers(whole_state)


@settings(max_examples=150, deadline=None)
@given(values=st.lists(st.one_of(st.floats(-100, 100), st.sampled_from([float("inf"), -float("inf")])),
                       min_size=1, max_size=90),
       window=st.integers(2, 24), min_history=st.integers(1, 6), stride=st.sampled_from([1, 3, 8]))
def test_window_stats_point_is_trailing_window_stats(values: list[float], window: int, min_history: int,
                                                     stride: int) -> None:
    """The block's median and MAD in plain Python, from a history trimmed as the rules keep it (the
    last ``window + stride + 1`` values); infinities go through numpy, as they must."""
    data = np.asarray(values)
    with np.errstate(invalid="ignore"):
        med, mad, _ = trailing_window_stats(data[:0], data, window, min_history, offset=0, stride=stride)
    last: list[float] | None = None
    got = []
    for i in range(data.size):
        kept = values[max(0, i - (window + stride + 1)) : i]
        with np.errstate(invalid="ignore"):
            last = window_stats_point(lambda: kept, window, min_history, offset=i, stride=stride, last=last)
        assert last[0] == i - i % stride
        got.append((last[1], last[2]))
    assert _numbers(got) == _numbers(list(zip(med.tolist(), mad.tolist())))


@settings(max_examples=200, deadline=None)
@given(levels=st.lists(st.sampled_from([0, 0, 0, 1, 2, 3]), min_size=1, max_size=40), rearm=st.integers(0, 6),
       cut=st.integers(0, 40))
def test_episode_points_is_episode_events(levels: list[int], rearm: int, cut: int) -> None:
    whole, parts = EpisodeState(), EpisodeState()
    steps = (np.arange(len(levels)) * 10).tolist()
    expected = episode_events(np.asarray(levels, dtype=np.int64), np.asarray(steps), whole, rearm).tolist()
    got = episode_points(levels[:cut], steps[:cut], parts, rearm)
    got += [cut + i for i in episode_points(levels[cut:], steps[cut:], parts, rearm)]
    assert got == expected
    assert parts.to_json() == whole.to_json()


LAYER_COUNT = 4


def _live_stream(loss: np.ndarray, grads: np.ndarray, *, epoch_tag: bool = False, pretrain: bool = False) -> Stream:
    """A run logging, every step, its loss, lr, total gradient norm and per-layer norms (a validation
    loss every 10 steps, and before the first step when ``pretrain``), as a live watcher sees it."""
    stream = Stream()
    n = loss.size
    if pretrain:
        stream.scalar("eval/loss", 0, float(loss[:5].mean()) / 3.0)  # an evaluation of the untrained model
    shares = np.linspace(0.2, 0.7, LAYER_COUNT)
    for i in range(n):
        stream.scalar("train/epoch_loss" if epoch_tag else "train/loss", i, loss[i])
        stream.scalar("train/lr", i, 1e-3 * min(1.0, (i + 1) / 20))
        stream.scalar("grad_norm", i, grads[i])
        for k, share in enumerate(shares):
            stream.scalar(f"grad_norm/layers.{k}.weight", i, share * grads[i])
        if i % 10 == 9:
            stream.scalar("eval/loss", i, 1.05 * float(np.median(loss[max(0, i - 9) : i + 1])))
    return stream


def _step_cuts(stream: Stream) -> list[int]:
    """Seq positions where a new training step begins: one feed per step."""
    steps = [stream.points[i][1] if kind == "s" else stream.hists[i][1] for kind, i in stream._order]
    return [j for j in range(1, len(steps)) if steps[j] != steps[j - 1]]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(30, 200),
       events=st.lists(st.tuples(st.sampled_from(["spike", "nan", "jump", "climb", "grads", "undo"]),
                                 st.floats(0.05, 0.95)), max_size=3),
       epoch_tag=st.booleans(), pretrain=st.booleans(), chunk=st.sampled_from([0, 0, 11, 25, 60, 200]))
def test_a_live_feed_step_by_step_gives_the_alerts_and_state_of_one_batch(
        seed: int, n: int, events: list[tuple[str, float]], epoch_tag: bool, pretrain: bool, chunk: int) -> None:
    """Every rule, fed a step at a time (each tag one point per feed: the one-point paths of issue 14),
    or in chunks of ``chunk`` points (1-25 per tag: divergence judges up to 12 a point at a time), and in
    one batch: the same alerts, and the same state left behind by the two rules whose one-point
    paths replace most of their vectorised work (not_learning's state already depended on the chunking
    before issue 14, in bookkeeping no decision reads: its history stops once the run has learned)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    loss = (0.3 + 2.0 * np.exp(-t / (n / 4))) * np.exp(0.1 * rng.standard_normal(n))
    grads = (0.5 + np.exp(-t / 30)) * np.exp(0.2 * rng.standard_normal(n))
    for kind, where in events:
        at = int(where * n)
        if kind == "spike":
            loss[at] *= 30
        elif kind == "nan":
            loss[at:] = np.nan
        elif kind == "jump":
            loss[at:] *= 8
        elif kind == "climb":
            loss[at:] *= np.exp((t[at:] - at) / 15.0)
        elif kind == "grads":
            grads[at:] *= 10 ** np.minimum(4, (t[at:] - at + 1) / 2)
        else:  # back to the untrained level
            loss[at:] = np.maximum(loss[at:], 2.2)
    stream = _live_stream(loss, grads, epoch_tag=epoch_tag, pretrain=pretrain)
    whole, whole_state = _engine_run(stream, ())
    single, single_state = _engine_run(stream, range(chunk, len(stream), chunk) if chunk else _step_cuts(stream))
    assert single == whole
    for rule in ("divergence", "exploding_gradients"):
        assert _numbers(_closed_streaks(single_state[rule])) == _numbers(_closed_streaks(whole_state[rule])), rule


def _closed_streaks(state: object) -> object:
    """A state with each closed streak (``[0, -1, wall, value]``) cut to ``[0, -1]`` and its
    ``<streak>_began`` record dropped: where a streak that is not running began is stale bookkeeping,
    kept by one chunking and not another before issue 14 too."""
    if isinstance(state, dict):
        closed = {k for k, v in state.items() if isinstance(v, list) and v[:2] == [0, -1]}
        return {k: _closed_streaks(v) for k, v in state.items() if not (k.endswith("_began") and k[:-6] in closed)}
    if isinstance(state, list):
        if len(state) == 4 and state[:2] == [0, -1]:
            return [0, -1]
        return [_closed_streaks(v) for v in state]
    return state


def _engine_run(stream: Stream, cuts: list[int] | tuple[int, ...]) -> tuple[list[tuple], dict]:
    engine = Engine()
    alerts = [a for batch in stream.batches(cuts) for a in engine.feed(batch)]
    rows = sorted((a.kind, a.tag, a.step, a.severity, a.message) for a in alerts)
    return rows, json.loads(json.dumps(engine.state_dict()["rules"]["run"], default=str))


def test_the_engine_remembers_routes_per_set_of_tags_and_forgets_them_past_its_bound() -> None:
    """A live feed's tags are classified once per set, not on every feed; the same tag as a scalar and
    as a histogram keeps its two meanings; chunks that cut anywhere do not grow the memory without bound."""
    import tbmon.analyzers.engine as engine_module

    engine = Engine()
    one = np.zeros(1, dtype=np.int64)
    hist = HistogramSeries("grad/fc.weight", one + 5, one, one * 1.0, np.array([-1.0]), np.array([1.0]),
                           np.array([10.0]), np.array([0.0]), np.array([10.0]), (np.array([0.0, 1.0]),),
                           (np.array([5.0, 5.0]),))
    for step in range(3):
        q = np.array([step], dtype=np.int64)
        engine.feed(RunBatch("run", scalars=(ScalarSeries("grad/fc.weight", 10 * q, q, q * 1.0, np.array([1.0])),
                                             ScalarSeries("loss", 10 * q + 1, q, q * 1.0, np.array([1.0]))),
                             histograms=(dataclasses.replace(hist, seq=10 * q + 2, step=q),)))
    assert len(engine._routes) == 1
    ((scalars, histograms),) = engine._routes.values()
    assert [(i, match.signal) for i, match in scalars] == [(1, "train_loss")]
    assert [(i, match.signal) for i, match in histograms] == [(2, "grad_histogram")]
    # A non-finite histogram under that tag is an exploding-gradient alert; the scalar twin is no gradient.
    broken = dataclasses.replace(hist, seq=one + 40, step=one + 3, sum_squares=np.array([float("inf")]))
    alerts = engine.feed(RunBatch("run", histograms=(broken,)))
    assert [(a.kind, a.tag) for a in alerts] == [("exploding_gradients", "grad/fc.weight")]
    kept = engine_module._ROUTES_KEPT
    try:
        engine_module._ROUTES_KEPT = 8
        for k in range(20):
            q = np.array([10 + k], dtype=np.int64)
            engine.feed(RunBatch("run", scalars=(ScalarSeries(f"extra/{k}", 100 + q, q, q * 1.0, np.ones(1)),)))
        assert 0 < len(engine._routes) <= 8
    finally:
        engine_module._ROUTES_KEPT = kept
