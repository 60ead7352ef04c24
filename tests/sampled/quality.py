"""Score tbmon on a sampled corpus: per kind, per class of run, healthy and borderline runs.

Scoring is `tests.scenarios.scoring`'s (the same rules of the count; docs/detection-quality.md), with two
additions the sampled corpus needs: the kinds include `not_learning`, and runs with no label that sit in a
criterion's borderline band are left out of the healthy count and reported on their own.
"""

from __future__ import annotations

import re

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.scenarios.scoring import FIXED_KINDS, QualityReport, evaluate

from .corpus import Sample
from .labels import curves, writer_dropped_records
from .space import CLASSES

KINDS = (*FIXED_KINDS, "not_learning")


@dataclass
class SampledReport:
    samples: list[Sample]
    report: QualityReport  # scored on the runs that are labelled or cleanly healthy

    @property
    def borderline(self) -> list[Sample]:
        return [s for s in self.samples if not s.kinds and s.borderline]

    def alarms(self, name: str, live: bool = False) -> list[Any]:
        """The >= warning alerts on one run (one-shot, or as noticed by the step-at-a-time replay)."""
        alerts = [a for a, _ in self.report.replayed] if live else self.report.alerts
        return [a for a in alerts if a.run.split("/", 1)[0] == name and a.severity != "info"]

    def failures(self, recall_floor: float | Mapping[str, float], delay_ceiling: float, warned_healthy: int = 0,
                 kinds: tuple[str, ...] = FIXED_KINDS) -> list[str]:
        """What falls below the floors: recall per kind (one-shot and live; one floor, or one per kind), healthy
        runs with a warning or critical (at most ``warned_healthy``), median alert-step delay."""
        out = []
        for kind in kinds:
            floor = recall_floor[kind] if isinstance(recall_floor, Mapping) else recall_floor
            row, live = self.report.kind_row(kind), self.report.live.kind_row(kind)
            if row.positives and row.recall < floor:
                out.append(f"{kind}: recall {row.recall:.3f} < {floor} ({row.detected}/{row.positives})")
            if row.positives and live.recall < floor:
                out.append(f"{kind}: live recall {live.recall:.3f} < {floor}")
            if row.median_delay is not None and row.median_delay > delay_ceiling:
                out.append(f"{kind}: median delay {row.median_delay:.1%} > {delay_ceiling:.0%}")
        for which, rep in (("one-shot", self.report), ("live", self.report.live)):
            flagged = [r.name for r in rep.healthy if r.false_alarms]
            if len(flagged) > warned_healthy:
                out.append(f"{which}: warnings on {len(flagged)} healthy runs (at most {warned_healthy})")
        return out

    def tables(self) -> str:
        pct = lambda x: "—" if x is None else f"{100 * x:.1f}%"  # noqa: E731
        rep, live = self.report, self.report.live
        healthy = rep.healthy
        lines = [f"{len(self.samples)} runs: {len(healthy)} healthy, {len(self.borderline)} borderline (left out), "
                 f"{len(self.samples) - len(healthy) - len(self.borderline)} with a problem", "",
                 "| kind | positives | detected | recall | median delay | max delay | live recall | median notice delay "
                 "| missed, alerted only before the onset |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for kind in KINDS:
            row, lrow = rep.kind_row(kind), live.kind_row(kind)
            recall = f"{row.recall:.3f}" if row.positives else "—"
            lrecall = f"{lrow.recall:.3f}" if lrow.positives else "—"
            lines.append(f"| {kind} | {row.positives} | {row.detected} | {recall} | {pct(row.median_delay)} | "
                         f"{pct(row.max_delay)} | {lrecall} | {pct(lrow.median_delay)} | {_early_only(rep, kind)} |")
        flagged = sum(1 for r in healthy if r.false_alarms)
        live_flagged = sum(1 for r in live.healthy if r.false_alarms)
        border_flagged = sum(1 for s in self.borderline if self.alarms(s.name))
        info = sum(len(r.info) for r in healthy)
        spurious = [(r.name, a) for r in rep.results for a, labelled in r.other_kind if not labelled and a.kind in KINDS]
        lines += ["", "| healthy runs | with a warning or critical | live | info notes on them | borderline runs | "
                  "borderline runs warned | pathological runs: alerts of a kind the data does not show |",
                  "|---|---|---|---|---|---|---|",
                  f"| {len(healthy)} | {flagged} | {live_flagged} | {info} | {len(self.borderline)} | {border_flagged} | "
                  f"{len(spurious)} |", ""]
        lines += self._class_table()
        return "\n".join(lines)

    def _class_table(self) -> list[str]:
        by_name = {r.name: r for r in self.report.results}
        lines = ["| class of run | runs | healthy (warned) | borderline | labelled problems: found / labelled |",
                 "|---|---|---|---|---|"]
        for cls in CLASSES:
            members = [s for s in self.samples if s.config.cls == cls]
            if not members:
                continue
            healthy = [s for s in members if not s.kinds and not s.borderline]
            warned = sum(1 for s in healthy if by_name[s.name].false_alarms)
            found: Counter[str] = Counter()
            total: Counter[str] = Counter()
            for s in members:
                for kind in s.kinds:
                    total[kind] += 1
                    found[kind] += by_name[s.name].detections.get(kind) is not None
            problems = ", ".join(f"{k} {found[k]}/{total[k]}" for k in KINDS if total[k]) or "—"
            lines.append(f"| {cls} | {len(members)} | {len(healthy)} ({warned}) | "
                         f"{sum(1 for s in members if not s.kinds and s.borderline)} | {problems} |")
        return lines

    def details(self) -> str:
        """One line per run (development part only: the locked part is never read run by run)."""
        lines = [self.report.details()]
        for s in self.borderline:
            alarms = "; ".join(f"{a.kind}/{a.severity}@{a.step} {a.tag}" for a in self.alarms(s.name)) or "-"
            lines.append(f"{s.name} [borderline: {', '.join(s.borderline)}] alarms: {alarms}")
        return "\n".join(lines)


def timing_free(samples: list[Sample]) -> list[Sample]:
    """The runs whose files do not depend on timing: all but those whose shim writer dropped records."""
    return [s for s in samples if not writer_dropped_records(s.config, curves(s.config, s.path))]


def _early_only(report: Any, kind: str) -> int:
    """Positives of ``kind`` whose only alerts of it came before the labelled onset (less 5 % of the run): a
    miss that was not silence, so a dating question (rule or labeller) rather than a blind spot."""
    return sum(1 for r in report.results if kind in r.labelled.scenario.kinds and r.detections.get(kind) is None
               and any(a.kind == kind for a in r.premature))


def score_samples(root: Path, samples: list[Sample], runs: str | None = None) -> SampledReport:
    """tbmon's alerts on ``root`` (one-shot and replayed a step at a time), scored against the labels.

    ``runs``: score only the samples whose name matches this regular expression (a quick look at a few
    development runs while changing a rule)."""
    if runs is not None:
        samples = [s for s in samples if re.search(runs, s.name)]
    scored = [s for s in samples if s.kinds or not s.borderline]
    # Read only these runs: the root may hold other batches (a development directory holds every batch). The
    # borderline ones are read and analyzed too, though never scored: the table counts those warned (until
    # 2026-12-06 they were left unread, and that count was 0 whatever tbmon said about them).
    only = "^(" + "|".join(re.escape(s.name) for s in samples) + ")(/|$)"
    return SampledReport(samples, evaluate(root, scored, only))
