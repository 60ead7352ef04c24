"""Incident grouping (issue 11 item 2): which alerts are one incident, which are pages, and that
`watch` (any chunking) and `report` (post hoc) give every alert the same incident id."""

from __future__ import annotations

import dataclasses
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tbmon.analyzers import Engine
from tbmon.analyzers.alerts import Alert
from tbmon.analyzers.incidents import IncidentTracker, canonical_order, group_alerts
from tests.analyzers.scenarios import all_scenarios
from tests.analyzers.streams import Stream

SCENARIOS = all_scenarios()


def alert(kind: str, severity: str, step: int, noticed: int | None = None, run: str = "r", tag: str = "train/loss") -> Alert:
    evidence = {} if noticed is None else {"noticed_step": noticed}
    return Alert(run, kind, severity, step, 0.0, tag, f"{kind} at {step}", evidence)


# The demo's diverging run as `tbmon report` lists it (steps and noticed steps of a real run).
DEMO = [
    alert("divergence", "warning", 106, 109),
    alert("divergence", "critical", 108, 111),
    alert("exploding_gradients", "warning", 110, 120, tag="train/grad_norm"),
    alert("exploding_gradients", "warning", 120, 127, tag="grad/0.weight"),
    alert("exploding_gradients", "critical", 130, tag="grad_norm/0.weight"),
]


def test_one_divergence_is_one_incident_paged_when_opened_and_when_it_escalates() -> None:
    tracker = IncidentTracker()
    done = [tracker.add(a) for a in DEMO]
    assert {d.incident for d in done} == {"r:instability@106"}
    assert [d.event for d in done] == ["opened", "escalated", "updated", "updated", "updated"]
    assert [d.pages for d in done] == [True, True, False, False, False]  # 2 pages for 5 alerts
    assert [d.severity for d in done] == ["warning", "critical", "critical", "critical", "critical"]
    (incident,) = tracker.incidents()
    assert (incident.start, incident.end, incident.alerts) == (106, 130, 5)
    assert incident.kinds_text() == "divergence x2, exploding_gradients x3"


def test_other_families_other_runs_and_distant_steps_are_separate_incidents() -> None:
    tracker = IncidentTracker()
    ids = [
        tracker.add(alert("divergence", "critical", 100)).incident,
        tracker.add(alert("overfitting", "warning", 120, 160, tag="val/loss")).incident,  # not caused by a blow-up
        tracker.add(alert("divergence", "critical", 110, run="other")).incident,
        tracker.add(alert("vanishing_gradients", "warning", 130, tag="grad/0.weight")).incident,
        tracker.add(alert("exploding_gradients", "critical", 5000, tag="train/grad_norm")).incident,  # hours later
    ]
    assert ids == ["r:instability@100", "r:overfitting@120", "other:instability@110", "r:stuck@130", "r:instability@5000"]
    assert all(d.pages for d in [tracker.add(alert("loss_plateau", "info", 140))])


def test_the_gap_is_the_rules_rearm_or_a_quarter_of_the_step() -> None:
    tracker = IncidentTracker()
    first = tracker.add(alert("divergence", "warning", 100)).incident
    assert tracker.add(alert("divergence", "warning", 300, tag="b")).incident == first  # 200 steps on: same episode horizon
    assert tracker.add(alert("divergence", "warning", 501, tag="c")).incident != first  # 201 past the end: a new one
    late = IncidentTracker()
    opened = late.add(alert("divergence", "warning", 40_000)).incident
    assert late.add(alert("exploding_gradients", "warning", 49_000, tag="g")).incident == opened  # 25 % of 40k


def test_a_back_dated_alert_joins_the_incident_its_span_overlaps() -> None:
    """`not_learning` is dated at the run's first step and noticed hundreds of steps later; the
    vanishing gradients it names as the cause are the same problem."""
    tracker = IncidentTracker()
    vanishing = tracker.add(alert("vanishing_gradients", "warning", 900, 960, tag="grad/0.weight"))
    stuck = tracker.add(alert("not_learning", "warning", 0, 1300))
    assert stuck.incident == vanishing.incident and stuck.event == "updated" and not stuck.pages


def test_grouping_does_not_depend_on_the_order_alerts_are_handed_in() -> None:
    alerts = [*DEMO, alert("overfitting", "warning", 60, 140, tag="val/loss"), alert("divergence", "critical", 900, run="b")]
    expected, _ = group_alerts(alerts)
    for seed in range(20):
        shuffled = alerts[:]
        random.Random(seed).shuffle(shuffled)
        assert group_alerts(shuffled)[0] == expected


def watch_style(stream: Stream, cuts: list[int]) -> dict[tuple[str, str, str, int], str]:
    """What `tbmon watch` does per poll: feed the chunk, then group its new alerts in canonical order."""
    engine, tracker, ids = Engine(), IncidentTracker(), {}
    for batch in stream.batches(cuts):
        for one in canonical_order(engine.feed(batch)):
            ids[one.key()] = tracker.add(one).incident
    return ids


REPORT_IDS = {
    name: {key: a.incident for key, a in group_alerts(Engine().feed(stream.batches()[0]))[0].items()}
    for name, stream in SCENARIOS.items()
}


def test_scenarios_group_several_alerts_somewhere() -> None:
    """The chunking test below means something: some scenario has an incident of several alerts."""
    sizes = [list(ids.values()).count(i) for ids in REPORT_IDS.values() for i in set(ids.values())]
    assert max(sizes) >= 2 and len(sizes) >= 6


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SCENARIOS)), data=st.data())
def test_any_chunking_gives_the_ids_report_gives(name: str, data: st.DataObject) -> None:
    stream = SCENARIOS[name]
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=40))))
    assert watch_style(stream, cuts) == REPORT_IDS[name]


def test_a_step_at_a_time_gives_the_ids_report_gives() -> None:
    for name, stream in SCENARIOS.items():
        steps = [(stream.points[i][1] if kind == "s" else stream.hists[i][1]) for kind, i in stream._order]
        cuts = [q for q in range(1, len(steps)) if steps[q] != steps[q - 1]]
        assert watch_style(stream, cuts) == REPORT_IDS[name], name


def test_unknown_kinds_are_their_own_family() -> None:
    tracker = IncidentTracker()
    stalled = tracker.add(dataclasses.replace(DEMO[0], kind="stalled", severity="info", tag=""))
    assert stalled.incident == "r:stalled@106" and tracker.add(DEMO[0]).event == "opened"
