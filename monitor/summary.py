"""Per-run and per-experiment summaries of one logdir: the numbers `tbmon report` prints.

Built once from a ``ReadResult`` and the alerts, then handed to every output format, so the
table, JSON, CSV, Markdown and HTML always agree. Values keep the difference between
"missing" (``None``: the run never logged a loss) and "not a number" (``nan``: it logged a
NaN loss, i.e. it diverged); formats print the two differently.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from tbmon.analyzers.alerts import Alert, json_safe, severity_rank
from tbmon.analyzers.config import AnalyzerConfig
from tbmon.analyzers.incidents import AlertKey, Assignment, Incident, group_alerts
from tbmon.monitor.frames import kept_parts
from tbmon.monitor.wording import plural
from tbmon.analyzers.signals import GRAD_HISTOGRAM, GRAD_NORM, HISTOGRAM_SIGNALS, TRAIN_LOSS, VAL_LOSS, SignalMatcher
from tbmon.monitor.sparkline import sparkline

if TYPE_CHECKING:
    from tbmon.monitor.event_file import ReadProblem
    from tbmon.monitor.reader import ReadResult, RunInfo

STATUS_OK = "ok"
TREND_WIDTH = 16


def signal_tags(matcher: SignalMatcher, signal: str, role: str | None, tags: Iterable[str]) -> list[str]:
    """The tags (of a run with ``role``) that carry ``signal``, by the analyzers' own configurable patterns."""
    histogram = signal in HISTOGRAM_SIGNALS
    out = []
    for tag in tags:
        match = matcher.classify(tag, histogram=histogram, role=role)
        if match is not None and match.signal == signal:
            out.append(tag)
    return out


@dataclass(frozen=True, slots=True)
class LossSummary:
    """One loss tag of one run: its last value and its best (lowest finite) value."""

    tag: str
    last: float
    last_step: int
    best: float | None  # None when no point is finite
    best_step: int | None
    points: int
    non_finite: int
    trend: str = ""  # sparkline of the whole curve: computed here, where the points are (a merged report has none)


@dataclass(frozen=True, slots=True)
class RunHealth:
    """How reading a run's event files went, in numbers a person can judge at a glance."""

    files: int
    records: int
    bytes_read: int
    problems: dict[str, int]  # problem kind -> count

    def describe(self) -> str:
        """E.g. ``2 files, 1 corrupt record skipped`` or ``1 file, 120 records``."""
        text = f"{plural(self.files, 'file')}"
        if not self.problems:
            return f"{text}, {plural(self.records, 'record')}"
        parts = [_describe_problem(kind, count) for kind, count in sorted(self.problems.items())]
        return f"{text}, " + ", ".join(parts)


@dataclass(frozen=True, slots=True)
class RunSummary:
    run: str
    experiment_dir: str | None
    role: str | None
    first_step: int | None
    last_step: int | None
    first_wall_time: float | None
    last_wall_time: float | None
    scalar_tags: tuple[str, ...]
    histogram_tags: tuple[str, ...]
    points: int
    train_loss: LossSummary | None
    val_loss: LossSummary | None
    health: RunHealth
    restarts: int
    status: str
    alert_counts: dict[str, int] = field(default_factory=dict)  # severity -> count

    @property
    def alert_count(self) -> int:
        return sum(self.alert_counts.values())

    @property
    def wall_span(self) -> float | None:
        if self.first_wall_time is None or self.last_wall_time is None:
            return None
        span = self.last_wall_time - self.first_wall_time
        return span if math.isfinite(span) else None

    def to_dict(self) -> dict[str, Any]:
        """The contract's run object (first six keys) plus tbmon's extra fields; JSON-safe."""
        train, val = self.train_loss, self.val_loss
        return json_safe(
            {
                "run": self.run,
                "first_step": self.first_step,
                "last_step": self.last_step,
                "scalar_tags": list(self.scalar_tags),
                "histogram_tags": list(self.histogram_tags),
                "status": self.status,
                "experiment_dir": self.experiment_dir,
                "role": self.role,
                "points": self.points,
                "first_wall_time": self.first_wall_time,
                "last_wall_time": self.last_wall_time,
                "train_loss_tag": train.tag if train else None,
                "last_train_loss": train.last if train else None,
                "best_train_loss": train.best if train else None,
                "best_train_loss_step": train.best_step if train else None,
                "val_loss_tag": val.tag if val else None,
                "last_val_loss": val.last if val else None,
                "best_val_loss": val.best if val else None,
                "best_val_loss_step": val.best_step if val else None,
                "files": self.health.files,
                "records": self.health.records,
                "bytes_read": self.health.bytes_read,
                "read_problems": dict(self.health.problems),
                "restarts": self.restarts,
                "alert_count": self.alert_count,
                "alert_counts": dict(self.alert_counts),
            }
        )


@dataclass(frozen=True, slots=True)
class ExperimentSummary:
    """A Keras-style experiment: sibling ``train``/``validation`` runs under one directory."""

    experiment_dir: str
    runs: tuple[str, ...]
    train_loss: LossSummary | None
    val_loss: LossSummary | None
    status: str
    alert_count: int

    def to_dict(self) -> dict[str, Any]:
        train, val = self.train_loss, self.val_loss
        return json_safe(
            {
                "experiment_dir": self.experiment_dir,
                "runs": list(self.runs),
                "status": self.status,
                "alert_count": self.alert_count,
                "train_loss_tag": train.tag if train else None,
                "best_train_loss": train.best if train else None,
                "val_loss_tag": val.tag if val else None,
                "best_val_loss": val.best if val else None,
                "best_val_loss_step": val.best_step if val else None,
            }
        )


def status_of(alerts: Iterable[Alert]) -> str:
    """The worst severity among warning/critical alerts, ``ok`` when there is none (info is ok)."""
    worst = max((severity_rank(a.severity) for a in alerts), default=-1)
    return "critical" if worst >= severity_rank("critical") else "warning" if worst >= severity_rank("warning") else STATUS_OK


def summarize_runs(
    result: ReadResult, alerts: Sequence[Alert], matcher: SignalMatcher, index: ScalarIndex | None = None
) -> list[RunSummary]:
    """One summary per run of ``result`` (a ``tbmon.monitor.read`` result), in run order.

    An alert reported on a Keras experiment directory (it needs both siblings) counts for
    both its ``train`` and ``validation`` runs.
    """
    index = ScalarIndex.of(result) if index is None else index
    alerts_by_run: dict[str, list[Alert]] = {}
    for alert in alerts:
        alerts_by_run.setdefault(alert.run, []).append(alert)
    summaries = []
    for info in result.runs:
        own = alerts_by_run.get(info.run, [])
        if info.experiment_dir is not None and info.experiment_dir != info.run:
            own = own + alerts_by_run.get(info.experiment_dir, [])
        counts: dict[str, int] = {}
        for alert in own:
            counts[alert.severity] = counts.get(alert.severity, 0) + 1
        summaries.append(
            RunSummary(
                run=info.run,
                experiment_dir=info.experiment_dir,
                role=info.role,
                first_step=_opt_int(info.first_step),
                last_step=_opt_int(info.last_step),
                first_wall_time=_opt_float(info.first_wall_time),
                last_wall_time=_opt_float(info.last_wall_time),
                scalar_tags=tuple(info.scalar_tags),
                histogram_tags=tuple(info.histogram_tags),
                points=int(info.points),
                train_loss=_loss(index, matcher, TRAIN_LOSS, info),
                val_loss=_loss(index, matcher, VAL_LOSS, info),
                health=_health(info),
                restarts=len(info.restarts),
                status=status_of(own),
                alert_counts=counts,
            )
        )
    return summaries


class ScalarIndex:
    """Every (run, tag)'s points as the scalars frame holds them (superseded points dropped, in
    arrival order), taken from the batches: a report never builds the pandas frames (issue 14)."""

    def __init__(self, series: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]) -> None:
        self._series = series

    @classmethod
    def of(cls, result: ReadResult) -> ScalarIndex:
        parts = kept_parts(result.batches, result.markers, "scalars")
        return cls({(run, tag): (s.step[keep], s.value[keep]) for run, tag, keep, s in parts})

    def count(self, run: str, tag: str) -> int:
        return len(self._series.get((run, tag), _NO_POINTS)[0])

    def series(self, run: str, tag: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one tag in arrival order (superseded points already dropped by the reader)."""
        return self._series.get((run, tag), _NO_POINTS)


_NO_POINTS = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))


def _loss(index: ScalarIndex, matcher: SignalMatcher, signal: str, info: RunInfo) -> LossSummary | None:
    """The run's ``signal`` loss; when several tags match, the one with the most points
    (Lightning logs ``train_loss_step`` and ``train_loss_epoch``: the per-step one is the curve)."""
    tags = [t for t in signal_tags(matcher, signal, info.role, info.scalar_tags) if index.count(info.run, t)]
    if not tags:
        return None
    tag = max(tags, key=lambda t: index.count(info.run, t))
    steps, values = index.series(info.run, tag)
    return _loss_summary(tag, steps, values)


def summarize_experiments(runs: Sequence[RunSummary], alerts: Sequence[Alert]) -> list[ExperimentSummary]:
    """Pair runs sharing an ``experiment_dir``: train loss from the train run, val loss from the validation run."""
    groups: dict[str, list[RunSummary]] = {}
    for summary in runs:
        if summary.experiment_dir is not None:
            groups.setdefault(summary.experiment_dir, []).append(summary)
    out = []
    for experiment_dir, members in sorted(groups.items()):
        if len(members) < 2:
            continue  # a lone `train` directory pairs with nothing
        names = {m.run for m in members} | {experiment_dir}
        own = [a for a in alerts if a.run in names]
        out.append(
            ExperimentSummary(
                experiment_dir=experiment_dir,
                runs=tuple(m.run for m in members),
                train_loss=_first(m.train_loss for m in members if m.role == "train"),
                val_loss=_first(m.val_loss for m in members if m.role == "validation"),
                status=status_of(own),
                alert_count=len(own),
            )
        )
    return out


def _loss_summary(tag: str, steps: np.ndarray, values: np.ndarray) -> LossSummary:
    """Last value = the last one written (arrival order), best = lowest finite value and its step."""
    finite = np.isfinite(values)
    best = best_step = None
    if finite.any():
        position = int(np.argmin(np.where(finite, values, np.inf)))
        best, best_step = float(values[position]), int(steps[position])
    return LossSummary(
        tag=tag,
        last=float(values[-1]),
        last_step=int(steps[-1]),
        best=best,
        best_step=best_step,
        points=int(values.shape[0]),
        non_finite=int((~finite).sum()),
        trend=_trend(values),
    )


def _trend(values: np.ndarray) -> str:
    """The loss as a sparkline (``×`` where it was NaN/Inf), on a log scale when the plots use one."""
    finite = values[np.isfinite(values)]
    if log_scale_fits(values) and (finite > 0).all():
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.log10(values)
    return sparkline(values.tolist(), TREND_WIDTH)


def _health(info: RunInfo) -> RunHealth:
    problems: dict[str, int] = {}
    for file in info.files:
        for kind, count in file.problems.items():
            if count:
                problems[kind] = problems.get(kind, 0) + int(count)
    return RunHealth(
        files=len(info.files),
        records=sum(int(f.records) for f in info.files),
        bytes_read=sum(int(f.bytes_read) for f in info.files),
        problems=problems,
    )


# How a reader problem kind reads in a sentence; unknown kinds print as "<count> <kind>".
_PROBLEM_WORDS = {
    "bad_data_crc": ("corrupt record skipped", "corrupt records skipped"),
    "bad_length_crc": ("corrupt region skipped", "corrupt regions skipped"),
    "too_large": ("oversized record skipped", "oversized records skipped"),
    "bad_proto": ("undecodable record skipped", "undecodable records skipped"),
    "torn_record": ("torn record skipped", "torn records skipped"),
    "truncated": ("file ends in an incomplete record", "files end in an incomplete record"),
    "not_event_file": ("file is not an event file", "files are not event files"),
    "rewritten": ("file rewritten", "files rewritten"),
    "deleted": ("file deleted while reading", "files deleted while reading"),
    "unreadable": ("file unreadable", "files unreadable"),
}


def _describe_problem(kind: str, count: int) -> str:
    one, many = _PROBLEM_WORDS.get(kind, (kind.replace("_", " "), kind.replace("_", " ")))
    return f"{count} {one if count == 1 else many}"


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _first(items: Iterable[LossSummary | None]) -> LossSummary | None:
    return next((item for item in items if item is not None), None)


@dataclass(frozen=True)
class LogdirReport:
    """Everything every output format needs about one logdir."""

    logdir: str
    runs: tuple[RunSummary, ...]
    experiments: tuple[ExperimentSummary, ...]
    alerts: tuple[Alert, ...]
    problems: tuple[ReadProblem, ...]
    result: ReadResult | None  # for plots; None in a report merged from parts (``fleet``: the parts draw)
    matcher: SignalMatcher
    index: ScalarIndex | None
    infos: tuple[RunInfo, ...] = ()  # the reader's run facts (tags, files): hints and "nothing to judge"

    @property
    def status(self) -> str:
        return status_of(self.alerts)

    @cached_property
    def _grouped(self) -> tuple[dict[AlertKey, Assignment], list[Incident]]:
        return group_alerts(self.alerts)

    def incident_of(self, alert: Alert) -> str:
        """The id of the incident ``alert`` belongs to (``analyzers.incidents``: the same as `watch` gives it)."""
        return self._grouped[0][alert.key()].incident

    def incidents(self) -> list[tuple[Incident, list[Alert]]]:
        """Each incident with its alerts (in the report's alert order), worst incident first, then by run and step."""
        members: dict[str, list[Alert]] = {}
        for alert in self.alerts:
            members.setdefault(self.incident_of(alert), []).append(alert)
        ordered = sorted(self._grouped[1], key=lambda i: (-severity_rank(i.severity), i.run, i.first_step, i.family))
        return [(incident, members[incident.id]) for incident in ordered]

    def to_dict(self, version: str) -> dict[str, Any]:
        """The contract's JSON object, plus ``experiments``, ``read_problems`` and each alert's ``incident``."""
        return {
            "tbmon_version": version,
            "logdir": self.logdir,
            "runs": [r.to_dict() for r in self.runs],
            "alerts": [{**a.to_dict(), "incident": self.incident_of(a)} for a in self.alerts],
            "experiments": [e.to_dict() for e in self.experiments],
            "read_problems": [problem_dict(p) for p in self.problems],
        }


def alert_order(alert: Alert) -> tuple:
    """The report's alert order: worst first, then by run, step, kind and tag."""
    return (-severity_rank(alert.severity), alert.run, alert.step, alert.kind, alert.tag)


def build_report(result: ReadResult, alerts: Sequence[Alert], config: AnalyzerConfig) -> LogdirReport:
    """Summaries of ``result``; alerts sorted worst first, then by run and step."""
    ordered = tuple(sorted(alerts, key=alert_order))
    index = ScalarIndex.of(result)
    matcher = SignalMatcher(config.patterns)
    runs = summarize_runs(result, ordered, matcher, index)
    return LogdirReport(
        logdir=str(result.logdir),
        runs=tuple(runs),
        experiments=tuple(summarize_experiments(runs, ordered)),
        alerts=ordered,
        problems=tuple(result.problems),
        result=result,
        matcher=matcher,
        index=index,
        infos=tuple(result.runs),
    )


Curve = tuple[str, np.ndarray, np.ndarray]  # (label, steps, values)

LOG_SCALE_RATIO = 10.0
"""Show values on a log scale when the positive ones span more than one decade (and none is
negative): on a linear scale a loss that falls from 2.3 to 0.05, or gradients that blow up
to 1e18, flatten everything else into a line on the floor."""


def log_scale_fits(values: np.ndarray) -> bool:
    """True when ``values`` (NaN/Inf ignored) are never negative and span more than a decade."""
    finite = values[np.isfinite(values)]
    positive = finite[finite > 0]
    return bool(positive.size) and not (finite < 0).any() and positive.max() / positive.min() > LOG_SCALE_RATIO


def loss_series(report: LogdirReport, run: RunSummary) -> list[Curve]:
    """The run's training and validation loss curves (the tags its summary chose).

    A Keras ``train``/``validation`` run borrows the missing curve from its sibling, so
    each figure shows the gap between the two losses that overfitting is about.
    """
    siblings = [r for r in report.runs if run.experiment_dir is not None and r.experiment_dir == run.experiment_dir]
    out = []
    for label, pick in (("train", lambda r: r.train_loss), ("validation", lambda r: r.val_loss)):
        owner = run if pick(run) is not None else next((r for r in siblings if pick(r) is not None), None)
        if owner is not None:
            loss = pick(owner)
            steps, values = report.index.series(owner.run, loss.tag)
            where = "" if owner is run else f" ({owner.run})"
            out.append((f"{label}: {loss.tag}{where}", steps, values))
    return out


def gradient_series(report: LogdirReport, run: RunSummary) -> list[Curve]:
    """Per-layer gradient size over steps: logged gradient-norm scalars if any, else the RMS
    ``sqrt(sum_squares / num)`` of gradient histograms (NaN/Inf propagate, so they show)."""
    norm_tags = signal_tags(report.matcher, GRAD_NORM, run.role, run.scalar_tags)
    curves = [(tag, *report.index.series(run.run, tag)) for tag in norm_tags]
    curves = [c for c in curves if c[1].size]
    if curves:
        return curves
    hist_tags = set(signal_tags(report.matcher, GRAD_HISTOGRAM, run.role, run.histogram_tags))
    frame = report.result.histograms
    if not hist_tags or not len(frame):
        return []
    rows = frame[(frame["run"] == run.run) & frame["tag"].isin(hist_tags)]
    out = []
    for tag, group in rows.groupby("tag", sort=True, observed=True):
        num = group["num"].to_numpy(dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            rms = np.sqrt(group["sum_squares"].to_numpy(dtype=np.float64) / num)
        out.append((f"{tag} (RMS)", group["step"].to_numpy(dtype=np.int64), rms))
    return out


def problem_dict(problem: ReadProblem) -> dict[str, Any]:
    return json_safe(
        {
            "path": str(problem.path),
            "offset": problem.offset,
            "kind": problem.kind,
            "message": problem.message,
            "skipped_bytes": problem.skipped_bytes,
            "count": problem.count,
        }
    )
