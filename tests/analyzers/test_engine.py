"""Engine properties that hold for every rule: chunk invariance, resumable state, restarts, pairing."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tbmon.analyzers import Engine
from tbmon.analyzers.alerts import Alert
from tbmon.analyzers.series import RunBatch
from tests.analyzers.scenarios import all_scenarios, divergence_run
from tests.analyzers.streams import Stream, healthy_loss, scalar_run

SCENARIOS = all_scenarios()


def canon(alerts: list[Alert]) -> list[str]:
    return sorted(json.dumps(a.to_dict(), sort_keys=True) for a in alerts)


def feed_all(stream: Stream, cuts=(), *, resume_each_chunk: bool = False) -> list[Alert]:
    engine = Engine()
    out: list[Alert] = []
    for batch in stream.batches(cuts):
        if resume_each_chunk:  # a watcher restarted between every poll
            state = json.loads(json.dumps(engine.state_dict()))
            engine = Engine()
            engine.load_state_dict(state)
        out += engine.feed(batch)
    return out


WHOLE = {name: canon(feed_all(stream)) for name, stream in SCENARIOS.items()}


def test_scenarios_exercise_the_rules() -> None:
    kinds = {json.loads(a)["kind"] for alerts in WHOLE.values() for a in alerts}
    assert kinds == {"divergence", "overfitting", "vanishing_gradients", "exploding_gradients", "dead_units", "loss_plateau",
                     "not_learning"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SCENARIOS)), data=st.data())
def test_chunking_never_changes_the_alerts(name: str, data: st.DataObject) -> None:
    stream = SCENARIOS[name]
    cuts = data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=12))
    assert canon(feed_all(stream, cuts)) == WHOLE[name]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SCENARIOS)), data=st.data())
def test_state_round_trip_through_json_gives_identical_future_alerts(name: str, data: st.DataObject) -> None:
    stream = SCENARIOS[name]
    cuts = data.draw(st.lists(st.integers(1, len(stream) - 1), min_size=1, max_size=6))
    assert canon(feed_all(stream, cuts, resume_each_chunk=True)) == WHOLE[name]


def step_cuts(stream: Stream) -> list[int]:
    """Cut positions between training steps: what `tbmon watch` feeds while a run is written."""
    steps = [(stream.points[i][1] if kind == "s" else stream.hists[i][1]) for kind, i in stream._order]
    return [q for q in range(1, len(steps)) if steps[q] != steps[q - 1]]


def test_a_step_at_a_time_equals_one_batch_for_every_scenario() -> None:
    for name, stream in SCENARIOS.items():
        assert canon(feed_all(stream, step_cuts(stream))) == WHOLE[name], name


def test_blown_up_scenario_exercises_episodes_across_tags_and_dead_layers() -> None:
    """What the chunk-invariance tests rely on: one divergence episode with an escalation and a
    lower level after it, and dead units on the layer that dies after the explosion. (The spike at
    100 recovers at once: an info note since recovering spikes stopped being warnings.)"""
    alerts = [json.loads(a) for a in WHOLE["blown_up"]]
    divergence = sorted((a["step"], a["severity"]) for a in alerts if a["kind"] == "divergence")
    assert divergence == [(100, "info"), (140, "critical")]
    assert [(a["tag"], a["step"]) for a in alerts if a["kind"] == "dead_units"] == [("grad/net.2.weight", 150)]


def test_tiny_chunks_equal_one_batch() -> None:
    stream = divergence_run()
    assert canon(feed_all(stream, range(1, len(stream), 3))) == WHOLE["divergence"]


def test_resume_from_checkpoint_overlap_does_not_false_alarm() -> None:
    """Steps 0..599 logged, then resumed from the step-400 checkpoint: 400..999 again."""
    first = healthy_loss(600, seed=1)
    second = healthy_loss(1000, seed=2)[400:] * 1.3  # the resumed run sits a bit higher
    s = Stream()
    for step, v in enumerate(first):
        s.scalar("train/loss", step, v)
    for step, v in zip(range(400, 1000), second):
        s.scalar("train/loss", step, v)
    for cuts in ((), (600,), (300, 601, 602, 900)):
        assert feed_all(s, cuts) == []


def test_restart_keeps_the_open_episode() -> None:
    """A NaN, then a resume that goes NaN again soon: the same episode, no second alert."""
    loss = healthy_loss(300, seed=4)
    s = Stream()
    for step in range(300):
        s.scalar("train/loss", step, loss[step] if step < 250 else np.nan)
    for step in range(200, 260):
        s.scalar("train/loss", step, loss[step] if step < 255 else np.nan)
    alerts = feed_all(s)
    assert [(a.step, a.evidence["condition"]) for a in alerts] == [(250, "non_finite")]


def test_episode_counts_reach_the_report() -> None:
    from tbmon.analyzers import analyze

    class Read:
        batches = divergence_run().batches()

    alerts = [a for a in analyze(Read()) if a.severity == "critical" and a.kind == "divergence"]
    # One run-level episode: grad norm +inf from step 299 (101 points), loss NaN from 300 (100).
    assert [(a.tag, a.step) for a in alerts] == [("train/grad_norm", 299)]
    assert alerts[0].evidence["episode_points"] == 201 and alerts[0].evidence["episode_last_step"] == 399


def test_unknown_tags_are_ignored_and_empty_batches_are_fine() -> None:
    s = scalar_run({"accuracy": np.linspace(0, 1, 50)}, 50)
    engine = Engine()
    assert engine.feed(s.batches()[0]) == []
    assert engine.feed(RunBatch("run")) == []
