"""Score tbmon's alerts against the labelled corpus: recall per kind, false alarms, detection delay.

Rules of the count (docs/detection-quality.md explains why):
- Only alerts at severity >= warning count as detections or false alarms; info alerts are listed apart.
- A scenario's alerts are those whose run is the scenario directory or lies inside it (Keras
  train/validation runs, the parent of a pair).
- Detection of kind k: the first >= warning alert of kind k whose step is no earlier than the labelled
  onset minus 5% of the run (the label's own granularity: one validation interval). An alert of kind k
  before that is "premature" (it fired before the data showed the problem) and does not count.
- Delay = (alert step - onset) / run length, run length = last - first logged step. The alert step is
  where the condition began (contract); the *notice* delay replays the corpus a step at a time
  (`replay.py`) and uses the step of the newest point fed when the alert came out: what a live
  `tbmon watch` user waits.
- Any >= warning alert on a healthy scenario is a false alarm. On a pathological scenario an alert of a
  kind it was not built for is "other-kind": reported, marked whether the labeller also sees that kind.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable

from .corpus import Labelled

FIXED_KINDS = ("divergence", "overfitting", "vanishing_gradients", "exploding_gradients")
EARLY_TOLERANCE = 0.05


@dataclass
class ScenarioResult:
    labelled: Labelled
    detections: dict[str, int | None] = field(default_factory=dict)  # intended kind → detecting alert step
    premature: list[Any] = field(default_factory=list)
    other_kind: list[tuple[Any, bool]] = field(default_factory=list)  # (alert, kind also seen by labeller)
    false_alarms: list[Any] = field(default_factory=list)
    info: list[Any] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.labelled.scenario.name

    def delay(self, kind: str) -> float | None:
        step = self.detections.get(kind)
        if step is None:
            return None
        return (step - self.labelled.onsets[kind]) / self.labelled.run_length


def _scenario_of(run: str) -> str:
    return run.split("/", 1)[0]


def score(corpus: list[Labelled], alerts: Iterable[Any]) -> "QualityReport":
    by_scenario: dict[str, list[Any]] = {}
    for alert in alerts:
        by_scenario.setdefault(_scenario_of(alert.run), []).append(alert)
    results = []
    for item in corpus:
        result = ScenarioResult(item)
        intended = item.scenario.kinds
        if missing := set(intended) - set(item.onsets):
            raise ValueError(f"scenario {item.scenario.name} does not show {sorted(missing)}: a broken scenario")
        ordered = sorted(by_scenario.get(item.scenario.name, []), key=lambda a: a.step)
        for kind in intended:
            result.detections[kind] = None
        for alert in ordered:
            if alert.severity == "info":
                result.info.append(alert)
            elif not intended:
                result.false_alarms.append(alert)
            elif alert.kind in intended:
                earliest = item.onsets[alert.kind] - EARLY_TOLERANCE * item.run_length
                if alert.step < earliest:
                    result.premature.append(alert)
                elif result.detections[alert.kind] is None:
                    result.detections[alert.kind] = int(alert.step)
            else:
                result.other_kind.append((alert, alert.kind in item.onsets))
        results.append(result)
    return QualityReport(results)


@dataclass
class KindRow:
    kind: str
    positives: int
    detected: int
    median_delay: float | None
    max_delay: float | None
    premature: int

    @property
    def recall(self) -> float:
        return self.detected / self.positives if self.positives else float("nan")


@dataclass
class QualityReport:
    results: list[ScenarioResult]
    live: "QualityReport | None" = None  # the same corpus replayed a step at a time, steps = notice steps
    alerts: list[Any] = field(default_factory=list)  # what `evaluate` scored: the one-shot alerts…
    replayed: list[tuple[Any, int]] = field(default_factory=list)  # …and the replay's (alert, noticed step)

    @property
    def healthy(self) -> list[ScenarioResult]:
        return [r for r in self.results if not r.labelled.scenario.kinds]

    def kind_row(self, kind: str) -> KindRow:
        positives = [r for r in self.results if kind in r.labelled.scenario.kinds]
        delays = [d for r in positives if (d := r.delay(kind)) is not None]
        return KindRow(kind, len(positives), len(delays),
                       statistics.median(delays) if delays else None, max(delays) if delays else None,
                       sum(1 for r in positives for a in r.premature if a.kind == kind))

    def false_alarm_count(self) -> int:
        return sum(len(r.false_alarms) for r in self.healthy)

    def table(self) -> str:
        """The markdown tables for the README, the issue note and `pytest -s`."""
        pct = lambda x: "—" if x is None else f"{100 * x:.1f}%"  # noqa: E731
        head = "| kind | positives | detected | recall | median delay | max delay | premature |"
        rule = "|---|---|---|---|---|---|---|"
        if self.live:
            head += " live recall | median notice delay | max notice delay |"
            rule += "---|---|---|"
        lines = [head, rule]
        for kind in FIXED_KINDS:
            row = self.kind_row(kind)
            line = (f"| {kind} | {row.positives} | {row.detected} | {row.recall:.2f} | {pct(row.median_delay)} "
                    f"| {pct(row.max_delay)} | {row.premature} |")
            if self.live:
                live = self.live.kind_row(kind)
                line += f" {live.recall:.2f} | {pct(live.median_delay)} | {pct(live.max_delay)} |"
            lines.append(line)
        healthy = self.healthy
        affected = sum(1 for r in healthy if r.false_alarms)
        info = sum(len(r.info) for r in healthy)
        lines += ["", "| healthy runs | false alarms (>= warning) | per healthy run | runs with a false alarm | info alerts "
                  "| live false alarms |", "|---|---|---|---|---|---|",
                  f"| {len(healthy)} | {self.false_alarm_count()} | {self.false_alarm_count() / max(1, len(healthy)):.2f} "
                  f"| {affected} | {info} | {self.live.false_alarm_count() if self.live else '—'} |"]
        return "\n".join(lines)

    def details(self) -> str:
        """One line per scenario: labels, what was raised, and everything that did not count."""
        lines = []
        for r in self.results:
            s = r.labelled
            labels = ", ".join(f"{k}@{v}" for k, v in sorted(s.onsets.items())) or "healthy"
            hits = ", ".join(f"{k}@{v}" if v is not None else f"{k}:MISSED" for k, v in r.detections.items())
            extra = []
            if r.false_alarms:
                extra.append("FALSE ALARMS " + "; ".join(_short(a) for a in r.false_alarms))
            if r.premature:
                extra.append("premature " + "; ".join(_short(a) for a in r.premature))
            if r.other_kind:
                extra.append("other-kind " + "; ".join(f"{_short(a)}{_support(a, ok)}" for a, ok in r.other_kind))
            if r.info:
                extra.append("info " + "; ".join(_short(a) for a in r.info))
            if self.live:
                live = next(x for x in self.live.results if x.name == r.name)
                noticed = ", ".join(f"{k}@{v}" if v is not None else f"{k}:MISSED" for k, v in live.detections.items())
                extra.append(f"live: {noticed or '-'}" + (f", {len(live.false_alarms)} false alarms" if live.false_alarms else ""))
            lines.append(f"{s.scenario.name} [len {s.run_length}] labels: {labels} | detected: {hits or '-'}"
                         + ("".join(f" | {e}" for e in extra)))
        return "\n".join(lines)


def _support(alert: Any, labelled: bool) -> str:
    if alert.kind not in FIXED_KINDS:
        return " (no label criterion for this kind)"
    return " (also in the data)" if labelled else " (not in the data)"


def _short(alert: Any) -> str:
    return f"{alert.kind}/{alert.severity}@{alert.step} {alert.tag}"


def score_live(corpus: list[Labelled], replayed: list[tuple[Any, int]]) -> QualityReport:
    """Score a step-at-a-time replay (`replay.replay`): each alert counts at the step it was noticed."""
    return score(corpus, [dataclasses.replace(alert, step=noticed) for alert, noticed in replayed])


def evaluate(logdir: Any, corpus: list[Labelled], runs: str | None = None) -> QualityReport:
    """Score tbmon's one-shot alerts (`analyze`) and, as `.live`, a step-at-a-time replay of the same data.

    ``runs``: read only the runs whose name matches this regular expression (``read(runs=...)``)."""
    from tbmon.analyzers import analyze
    from tbmon.monitor import read

    from .replay import replay

    data = read(str(logdir), runs=runs)
    alerts, replayed = analyze(data), replay(data)
    report = score(corpus, alerts)
    report.live = score_live(corpus, replayed)
    report.alerts, report.replayed = alerts, replayed
    return report
