"""`vanishing_gradients` completes a streak when the run overflows (issue #10).

The sampled development run s0500 (a 30-layer ReLU MLP at default init, AdamW at lr 0.64, gradient
histograms every 171 steps, the loss every step) logs one gradient histogram group, at step 0, with a
first/last weight-gradient RMS ratio of 6e-12; its loss is NaN from step 2 on and tensorboardX writes no
more histograms. The streams below copy that shape. Each is fed as one batch, a step at a time, a point at
a time, and in chunks with a JSON state round trip between them: the alerts must not change.
"""

from __future__ import annotations

import json
import math
from functools import partial

import numpy as np

from tbmon.analyzers import Engine
from tbmon.analyzers.alerts import Alert
from tests.analyzers import streams
from tests.analyzers.streams import Stream, hist_fields

KIND = "vanishing_gradients"
DEPTH = 8  # weight layers net.0 … net.14 (with their biases), input side first


canon = partial(streams.canon, kind=KIND)
feed = partial(streams.feed, kind=KIND)
step_cuts = streams.step_cuts


def same_whatever_the_chunking(stream: Stream) -> list[Alert]:
    whole = feed(stream)
    assert canon(feed(stream, step_cuts(stream))) == canon(whole)  # a step at a time
    assert canon(feed(stream, range(1, len(stream)))) == canon(whole)  # a point at a time (a live feed)
    assert canon(feed(stream, range(1, len(stream), 3), roundtrip=True)) == canon(whole)
    assert canon(feed(stream, step_cuts(stream), roundtrip=True)) == canon(whole)
    return whole


def vanishing(first: float = 1e-13, last: float = 1e-2):
    """Weight-gradient RMS falling geometrically from ``last`` (the head) to ``first`` (the input layer):
    first/last = 1e-11 by default, as s0500's 6e-12 at its only log."""
    return lambda step, k: last * (first / last) ** ((DEPTH - 1 - k) / (DEPTH - 1))


def healthy(step: int, k: int) -> float:
    return 0.01 * (1.0 + 0.1 * k)


def run(groups: dict[int, object], losses: dict[int, float], *, skip: tuple[tuple[int, int], ...] = ()) -> Stream:
    """Gradient histograms (weights and biases) at the steps of ``groups`` (step -> RMS of layer k), the
    training loss at the steps of ``losses``, in step order (at one step: the loss, then the gradients).
    ``skip``: (step, layer) pairs whose weight histogram is not logged."""
    rng = np.random.default_rng(0)
    s = Stream()
    for step in sorted(set(groups) | set(losses)):
        if step in losses:
            s.scalar("train/loss", step, losses[step])
        if step in groups:
            for k in range(DEPTH):
                for part in ("weight", "bias"):
                    if part == "weight" and (step, k) in skip:
                        continue
                    rms = groups[step](step, k)
                    g = rng.standard_normal(32)
                    g *= rms / float(np.sqrt(np.mean(g * g)))
                    s.histogram(f"grad/net.{2 * k}.{part}", step, **hist_fields(g))
    return s


def s0500(steps: int = 60) -> Stream:
    """One gradient log at step 0 (vanishing), loss 5.6 at steps 0-1, NaN from step 2 on."""
    return run({0: vanishing()}, {0: 5.6, 1: 3.1e3} | {s: math.nan for s in range(2, steps)})


def test_an_overflow_after_one_vanishing_log_completes_the_streak() -> None:
    got = same_whatever_the_chunking(s0500())
    assert [(a.step, a.severity, a.tag, a.evidence["noticed_step"], a.evidence["overflow_step"]) for a in got] == [
        (0, "warning", "grad/net.0.weight", 2, 2)]
    a = got[0]
    assert a.evidence["first_layer"] == "net.0.weight" and a.evidence["last_layer"] == f"net.{2 * (DEPTH - 1)}.weight"
    assert a.evidence["first"] / a.evidence["last"] < 1e-10
    assert "vanishing gradients since step 0" in a.message
    assert "the run overflowed (non-finite loss) by step 2" in a.message
    assert a.wall_time == 1000.0 + 1  # the group's last point (the loss at step 0 is seq 0)


def test_an_infinite_loss_completes_it_too_and_so_does_one_that_comes_much_later() -> None:
    inf = run({0: vanishing()}, {0: 5.6, 1: 4.0, 2: 3.0, 3: math.inf})
    assert [(a.step, a.evidence["noticed_step"]) for a in same_whatever_the_chunking(inf)] == [(0, 3)]
    late = run({0: vanishing()}, {s: 5.0 for s in range(0, 150)} | {150: math.nan, 151: math.nan})
    assert [(a.step, a.evidence["noticed_step"]) for a in same_whatever_the_chunking(late)] == [(0, 150)]


def test_a_finite_loss_after_one_vanishing_log_completes_nothing() -> None:
    """One vanishing log is a one-off until a second log or an overflow says otherwise."""
    assert same_whatever_the_chunking(run({0: vanishing()}, {s: 5.6 / (1 + s) for s in range(0, 60)})) == []
    assert same_whatever_the_chunking(run({0: vanishing()}, {0: 5.6})) == []
    # Vanishing, then a healthy log, then the overflow: the streak was broken before the loss turned NaN.
    broken = run({0: vanishing(), 10: healthy}, {s: 2.0 for s in range(0, 15)} | {15: math.nan, 16: math.nan})
    assert same_whatever_the_chunking(broken) == []


def test_an_overflow_after_a_log_whose_head_gradient_is_exploding_completes_nothing() -> None:
    """The demo's diverging run: at its last gradient log before the NaN, the first layer's gradient is 0
    and the head's RMS 4e12 — ReLUs killed by the blow-up, which exploding_gradients reports; vanishing
    stays silent (head RMS above 1, exploding_gradients' per-weight gate; s0500's head was at 0.23)."""
    blowup = run({0: healthy, 10: vanishing(first=0.0, last=4e12)}, {s: 2.0 for s in range(0, 12)} | {12: math.nan})
    assert same_whatever_the_chunking(blowup) == []
    calm_head = run({0: healthy, 10: vanishing(first=1e-13, last=0.5)}, {s: 2.0 for s in range(0, 12)} | {12: math.nan})
    assert [a.step for a in same_whatever_the_chunking(calm_head)] == [10]


def test_a_nan_loss_before_any_vanishing_log_starts_no_streak() -> None:
    # Before the run's first gradient log.
    first = run({10: vanishing(), 20: healthy}, {0: 2.0, 5: math.nan, 10: 2.0, 15: 2.0, 20: 2.0, 25: 2.0})
    assert same_whatever_the_chunking(first) == []
    # Between healthy logs, just before the one vanishing log.
    between = run({0: healthy, 10: healthy, 20: vanishing(), 30: healthy},
                  {0: 2.0, 10: 2.0, 15: math.nan, 20: 2.0, 25: 2.0, 30: 2.0, 35: 2.0})
    assert same_whatever_the_chunking(between) == []


def test_two_vanishing_logs_still_alert_at_the_second_and_an_overflow_between_them_at_itself() -> None:
    two = run({0: vanishing(), 10: vanishing(), 20: vanishing()}, {s: 2.0 for s in range(0, 25)})
    got = same_whatever_the_chunking(two)
    assert [(a.step, a.evidence["noticed_step"], "overflow_step" in a.evidence) for a in got] == [(0, 10, False)]
    assert "overflowed" not in got[0].message
    nan_between = run({0: vanishing(), 10: vanishing(), 20: vanishing()},
                      {s: 2.0 for s in range(0, 25)} | {5: math.nan, 6: math.nan})
    got = same_whatever_the_chunking(nan_between)
    assert [(a.step, a.evidence["noticed_step"]) for a in got] == [(0, 5)]  # one alert: the episode stays open


def test_the_waiting_non_finite_losses_stay_bounded() -> None:
    """A vanishing group that cannot close yet (a layer missing at its step, and the loss logged at that
    same step 3,000 times, NaN: a writer whose step counter stopped) defers the losses behind it, collapsed
    to one per gap between waiting gradient points; when a later step closes the group, that one loss
    completes the streak. A NaN stretch after closed groups keeps nothing but ``nan_run``."""
    stuck = run({0: healthy, 10: healthy, 20: vanishing()}, {0: 2.0, 10: 2.0}, skip=((20, 3),))
    for _ in range(3000):
        stuck.scalar("train/loss", 20, math.nan)
    stuck.scalar("train/loss", 30, 2.0)  # the writer moves on: the group at step 20 closes
    engine, got, deferred, sizes = Engine(), [], [], []
    for batch in stuck.batches(range(1, len(stuck), 97)):
        got += [a for a in engine.feed(batch) if a.kind == KIND]
        state = json.loads(json.dumps(engine.state_dict()))["rules"]["run"][KIND]
        deferred.append(len(state["overflow"]["deferred"]))
        sizes.append(len(json.dumps(state)))
    assert max(deferred) == 1 and deferred[-1] == 0 and max(sizes) < 20_000
    assert [(a.step, a.evidence["noticed_step"]) for a in got] == [(20, 20)]
    assert canon(got) == canon(feed(stuck))
    closed = run({0: vanishing()}, {0: 5.6} | {s: math.nan for s in range(1, 5000)})
    engine = Engine()
    got = [a for b in closed.batches(range(1, len(closed), 97)) for a in engine.feed(b) if a.kind == KIND]
    state = engine.state_dict()["rules"]["run"][KIND]
    assert state["overflow"] == {"deferred": [], "nan_run": True} and len(json.dumps(state)) < 20_000
    assert [(a.step, a.evidence["noticed_step"]) for a in got] == [(0, 1)]


def test_a_state_saved_before_the_overflow_completion_still_loads() -> None:
    """States of the current STATE_VERSION saved by the previous code have no ``overflow``/``last_held``:
    they load with defaults and go on as before."""
    two = run({0: vanishing(), 10: vanishing(), 20: vanishing()}, {s: 2.0 for s in range(0, 25)})
    cut = step_cuts(two)[5]
    engine = Engine()
    out = [a for a in engine.feed(two.batches([cut])[0]) if a.kind == KIND]
    state = json.loads(json.dumps(engine.state_dict()))
    rule = state["rules"]["run"][KIND]
    del rule["overflow"], rule["last_held"]
    engine = Engine()
    engine.load_state_dict(state)
    out += [a for a in engine.feed(two.batches([cut])[1]) if a.kind == KIND]
    assert canon(out) == canon(feed(two))


SYNTHETIC = {
    "s0500": s0500(30),
    "late": run({0: vanishing(), 10: vanishing()}, {s: 2.0 for s in range(0, 12)} | {12: math.nan, 13: math.inf}),
    "between": run({0: vanishing(), 10: healthy, 20: vanishing(), 30: healthy},
                   {0: 2.0, 5: 2.0, 10: 2.0, 20: 2.0, 22: math.nan, 23: math.nan, 30: 2.0}),
}
WHOLE = {name: canon(feed(stream)) for name, stream in SYNTHETIC.items()}


def test_the_synthetic_streams_alert() -> None:
    steps = {name: [(json.loads(a)["step"], json.loads(a)["evidence"]["noticed_step"]) for a in alerts]
             for name, alerts in WHOLE.items()}
    assert steps == {"s0500": [(0, 2)], "late": [(0, 10)], "between": [(20, 22)]}


test_any_chunking_and_state_round_trip_gives_the_same_alerts = streams.any_chunking_test(SYNTHETIC, WHOLE, KIND)
