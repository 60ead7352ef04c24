"""Alerts of one run that describe one incident, grouped: one page, then updates in place.

A single divergence raises several alerts (a spike that stays up, the explosion, exploding
gradients, a NaN gradient), each right about its own signal. Paging once per alert wakes the
on-call four times for one event, so `watch` and `report` group them with this module (pure, no
I/O): an ``IncidentTracker`` per logdir assigns every alert, in order, to an incident of its run.

**Causal families.** Alerts group only with alerts of their family, by the rules' ``kind``:

* ``instability``: ``divergence``, ``exploding_gradients``. A too-high learning rate or a bad
  batch blows up the gradients and the loss together; which of the two rules fires first depends
  on what was logged (gradient norms, histograms, the loss only), not on the cause.
* ``stuck``: ``vanishing_gradients``, ``dead_units``, ``not_learning``. Gradients that vanish or
  units that die are the usual reasons a loss never falls; ``not_learning`` names them as its
  cause, so they are one problem seen from three signals.
* ``overfitting``, ``loss_plateau`` and any other kind (``stalled``, third-party rules): a family
  of their own. Overfitting needs a healthy training loss, the opposite of the two above; a
  plateau is an lr hint on a run that did learn.

**Overlapping steps.** An alert covers the steps from ``step`` (where its condition first held)
to ``evidence["noticed_step"]`` (where the rule could tell; the same step when absent). An
incident covers the union of its alerts' spans. An alert joins its family's incident when its
span overlaps the incident's widened by ``gap`` steps on each side: ``max(MIN_GAP, GAP_RATIO x
the incident's last step)``. ``MIN_GAP`` is 200, the ``rearm`` of the divergence and exploding-
gradient rules: their own "same episode" horizon is 200 points, and 200 points span at least 200
steps. The ratio keeps runs logged every 10 or 100 steps, or deep into training, in proportion.
The demo's blow-up spans steps 106-130 (one incident); a second divergence after a checkpoint
restore thousands of steps later opens a new one.

**Pages.** The alert that opens an incident, and one that raises its severity, are pages
(webhooks, ``--on-alert``); the others are updates (shown, kept in JSON, not sent).

**Determinism.** Incident ids are ``<run>:<family>@<step of its first alert>``: no counter, so
the same alerts give the same ids in `watch` (any chunking, after restarts: the tracker is
rebuilt by replaying the alerts the state file keeps) and in `report`, as long as both feed
alerts in ``canonical_order``: by noticed step, which is the order a live watcher learns of them.
(A writer that logs a step lower than one it logged before, in a later flush, could let a watcher
learn of two alerts out of that order: they still form one incident when they overlap, but the id
would name the step of the one learnt first. Every analyzer scenario, cut at random and a step at
a time, gives `report`'s ids: tests/analyzers/test_incidents.py.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tbmon.analyzers.alerts import Alert, severity_rank

FAMILIES = {
    "divergence": "instability",
    "exploding_gradients": "instability",
    "vanishing_gradients": "stuck",
    "dead_units": "stuck",
    "not_learning": "stuck",
}
"""Kinds that describe one cause from different signals; any other kind is its own family."""

MIN_GAP = 200
GAP_RATIO = 0.25

OPENED, ESCALATED, UPDATED = "opened", "escalated", "updated"


def family_of(kind: str) -> str:
    return FAMILIES.get(kind, kind)


def noticed_step(alert: Alert) -> int:
    """Where the rule could tell (``evidence["noticed_step"]``), else the alert's own step."""
    noticed = alert.evidence.get("noticed_step")
    return noticed if isinstance(noticed, int) and not isinstance(noticed, bool) else alert.step


def canonical_order(alerts: Iterable[Alert]) -> list[Alert]:
    """The order a live watcher learns of alerts (noticed step, then dated step, kind, tag): feed both
    `watch`'s alerts of one poll and `report`'s alerts in it, so ids come out the same."""
    return sorted(alerts, key=lambda a: (noticed_step(a), a.step, a.kind, a.tag))


@dataclass
class Incident:
    """One incident: its first alert's step names it; the span, worst severity and kinds grow."""

    run: str
    family: str
    first_step: int
    start: int
    end: int
    severity: str
    alerts: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.run}:{self.family}@{self.first_step}"

    @property
    def label(self) -> str:
        """The id without the run, for places that show the run already."""
        return f"{self.family}@{self.first_step}"

    def gap(self) -> int:
        return max(MIN_GAP, int(GAP_RATIO * abs(self.end)))

    def overlaps(self, start: int, end: int) -> bool:
        return start <= self.end + self.gap() and end >= self.start - self.gap()

    def kinds_text(self) -> str:
        """``divergence x2, exploding_gradients x3``: what the incident's alerts were."""
        return ", ".join(kind if n == 1 else f"{kind} x{n}" for kind, n in self.kinds.items())


@dataclass(frozen=True)
class Assignment:
    """What one alert did to its incident: opened it, escalated it (a page either way) or updated it."""

    incident: str
    label: str
    event: str
    severity: str
    alerts: int

    @property
    def pages(self) -> bool:
        """Whether notifiers (webhooks, ``--on-alert``) get this alert: a new incident or a higher severity."""
        return self.event != UPDATED

    def fields(self) -> dict[str, Any]:
        """The fields added to an alert's JSON: its ``incident`` id and the incident as it stands."""
        return {
            "incident": self.incident,
            "incident_event": self.event,
            "incident_severity": self.severity,
            "incident_alerts": self.alerts,
        }


class IncidentTracker:
    """Assigns alerts, fed in order, to incidents per run and family (see the module docstring)."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], list[Incident]] = {}
        self.by_id: dict[str, Incident] = {}

    def add(self, alert: Alert) -> Assignment:
        family = family_of(alert.kind)
        start, end = sorted((alert.step, noticed_step(alert)))
        incidents = self._open.setdefault((alert.run, family), [])
        joined = [i for i in incidents if i.overlaps(start, end)]
        if joined:
            incident = max(joined, key=lambda i: i.first_step)  # the latest one a late, back-dated alert touches
            rises = severity_rank(alert.severity) > severity_rank(incident.severity)
            event = ESCALATED if rises else UPDATED
            incident.start, incident.end = min(incident.start, start), max(incident.end, end)
            if rises:
                incident.severity = alert.severity
        else:
            incident = Incident(alert.run, family, alert.step, start, end, alert.severity)  # unique: an alert at
            incidents.append(incident)  # an incident's first step always overlaps it, so never opens a second
            self.by_id[incident.id] = incident
            event = OPENED
        incident.alerts += 1
        incident.kinds[alert.kind] = incident.kinds.get(alert.kind, 0) + 1
        return Assignment(incident.id, incident.label, event, incident.severity, incident.alerts)

    def incidents(self) -> list[Incident]:
        return list(self.by_id.values())


AlertKey = tuple[str, str, str, int]


def group_alerts(alerts: Iterable[Alert]) -> tuple[dict[AlertKey, Assignment], list[Incident]]:
    """Post hoc (`report`): every alert's assignment (by ``alert.key()``) and the incidents, from one
    tracker fed in ``canonical_order``, exactly as a watcher would have grouped them."""
    tracker = IncidentTracker()
    assignments = {alert.key(): tracker.add(alert) for alert in canonical_order(alerts)}
    return assignments, tracker.incidents()
