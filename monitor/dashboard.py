"""The live terminal view of ``tbmon watch``: a header, one row per run, and an alert feed.

``Board`` is plain data fed by the watch loop (batches, alerts, notices); ``Board.render()``
snapshots it under a lock into Rich renderables, which ``rich.live.Live`` redraws ~4 times a
second from its own thread. Nothing here reads files or decides what is an alert.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rich import box
from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tbmon.analyzers.alerts import Alert, severity_rank
from tbmon.analyzers.incidents import Incident
from tbmon.analyzers.series import RunBatch
from tbmon.analyzers.numbers import fmt_number
from tbmon.monitor.run_labels import common_prefix, fit_labels
from tbmon.monitor.sanitize import clock_time, rich_text, visible
from tbmon.monitor.sparkline import sparkline
from tbmon.monitor.wording import plural

SPARK_POINTS = 240  # recent loss values kept per run; the sparkline averages them into its width
SPARK_WIDTH = 24
TREND_NARROW = 12  # the sparkline's width on a narrow terminal, before the column goes
RATE_WINDOW = 64  # (wall_time, step) pairs the steps/s rate is measured over
FEED_LINES = 8
MISSING = "—"
IDLE_AFTER = 120.0
"""Seconds without a new record before a healthy run shows as idle (grey): twice tensorboardX's
default 120 s flush would be too late to tell, a finished or hung run is what this flags."""

STATUS_STYLE = {"ok": "green", "info": "green", "warning": "yellow", "critical": "bold red", "idle": "bright_black"}
SEVERITY_STYLE = {"info": "cyan", "warning": "yellow", "critical": "bold red"}

COLUMNS = (
    ("run", "left"),
    ("step", "right"),
    ("steps/s", "right"),
    ("loss", "right"),
    ("best", "right"),
    ("trend", "left"),
    ("val loss", "right"),
    ("grad", "right"),
    ("status", "left"),
    ("incidents", "right"),
)
NARROWING = ("best", "steps/s", "grad", TREND_NARROW, "val loss", "trend", "incidents")
"""How the table gives way on a narrow terminal, step by step until the run names get
``RUN_ROOM`` cells: these columns go in this order (a number narrows the trend to it); run,
step, loss and status always stay."""
RUN_ROOM = 24
TABLE_EDGES, COLUMN_GAP = 2, 3  # cells around the table and between its columns (SIMPLE_HEAD, no pad at the edges)
SAVED_TREND_DIGITS = 6  # significant digits of the saved trend: enough for the sparkline, half the bytes

Classifier = Callable[[str, str | None], str | None]
"""``(tag, role)`` → ``"train_loss"``, ``"val_loss"``, ``"grad_norm"`` or ``None`` (the analyzers' tag patterns)."""


@dataclass
class RunRow:
    """What the table shows for one run, updated incrementally from its batches."""

    label: str
    step: int | None = None
    last_wall_time: float | None = None
    loss_tag: str | None = None
    loss: float | None = None
    best_loss: float | None = None
    recent_loss: deque[float] = field(default_factory=lambda: deque(maxlen=SPARK_POINTS))
    val_loss: float | None = None
    grad_norm: float | None = None
    progress: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=RATE_WINDOW))
    alerts: list[Alert] = field(default_factory=list)
    incidents: set[str] = field(default_factory=set)

    def rate(self) -> float | None:
        """Steps per second of writer time over the last few arrivals (None until measurable)."""
        if len(self.progress) < 2:
            return None
        (t0, s0), (t1, s1) = self.progress[0], self.progress[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 and s1 >= s0 else None

    def saved(self) -> dict[str, Any]:
        """The row's values for the state file (bounded: at most ``SPARK_POINTS`` + ``RATE_WINDOW`` numbers)."""
        return {
            "step": self.step,
            "last_wall_time": self.last_wall_time,
            "loss_tag": self.loss_tag,
            "loss": self.loss,
            "best_loss": self.best_loss,
            "trend": [float(f"{v:.{SAVED_TREND_DIGITS}g}") for v in self.recent_loss],
            "val_loss": self.val_loss,
            "grad_norm": self.grad_norm,
            "progress": [[wall, step] for wall, step in self.progress],
        }

    def restore(self, saved: dict[str, Any]) -> None:
        """Values from :meth:`saved`; raises ``TypeError``/``ValueError``/``KeyError`` on a damaged entry."""
        self.step = _optional(int, saved["step"])
        self.last_wall_time = _optional(float, saved["last_wall_time"])
        self.loss_tag = _optional(str, saved["loss_tag"])
        self.loss = _optional(float, saved["loss"])
        self.best_loss = _optional(float, saved["best_loss"])
        self.recent_loss.extend(float(v) for v in saved["trend"])
        self.val_loss = _optional(float, saved["val_loss"])
        self.grad_norm = _optional(float, saved["grad_norm"])
        self.progress.extend((float(wall), int(step)) for wall, step in saved["progress"])

    def status(self, now: float) -> str:
        worst = max((severity_rank(a.severity) for a in self.alerts), default=-1)
        if worst >= severity_rank("critical"):
            return "critical"
        if worst >= severity_rank("warning"):
            return "warning"
        if self.last_wall_time is not None and now - self.last_wall_time > IDLE_AFTER:
            return "idle"
        return "ok"


@dataclass
class FeedItem:
    when: float
    text: Text
    incident: str | None = None  # an incident's line is replaced by its next update, not repeated


class Board:
    """Everything the dashboard shows; safe to update from the watch thread while Rich renders."""

    def __init__(self, logdirs: list[str], classify: Classifier) -> None:
        self.logdirs = logdirs
        self.backend = "starting"
        self.files_tracked = 0
        self.problems = 0
        self._classify = classify
        self._rows: dict[tuple[str, str], RunRow] = {}
        self._feed: deque[FeedItem] = deque(maxlen=FEED_LINES)
        self._lock = threading.Lock()

    def _label(self, logdir: str, run: str) -> str:
        if len(self.logdirs) == 1:
            return run
        return f"{logdir.rstrip('/').rsplit('/', 1)[-1]}:{run}"

    def _row(self, logdir: str, run: str) -> RunRow:
        key = (logdir, run)
        if key not in self._rows:
            self._rows[key] = RunRow(self._label(logdir, run))
        return self._rows[key]

    def observe(self, logdir: str, batch: RunBatch) -> None:
        """Fold one batch of new points into its run's row."""
        with self._lock:
            row = self._row(logdir, batch.run)
            for series in (*batch.scalars, *batch.histograms):
                if len(series):
                    self._advance(row, series.step, series.wall_time)
            for series in batch.scalars:
                signal = self._classify(series.tag, batch.role)
                if signal == "train_loss" and row.loss_tag in (None, series.tag) and len(series):
                    row.loss_tag = series.tag
                    values = series.value.astype(float)
                    row.recent_loss.extend(values.tolist())
                    row.loss = float(values[-1])
                    finite = values[np.isfinite(values)]
                    if finite.size:
                        low = float(finite.min())
                        row.best_loss = low if row.best_loss is None else min(row.best_loss, low)
                elif signal == "val_loss" and len(series):
                    row.val_loss = float(series.value[-1])
                elif signal == "grad_norm" and len(series):
                    row.grad_norm = float(series.value[-1])

    @staticmethod
    def _advance(row: RunRow, steps: np.ndarray, walls: np.ndarray) -> None:
        """Track the newest step and (wall_time, step) pairs for the rate; restarts are not progress."""
        last_step = int(steps.max())
        if row.step is not None and last_step < row.step:
            return
        row.step = last_step
        finite = np.isfinite(walls)
        if not finite.any():
            return
        for wall, step in ((walls[finite][0], steps[finite][0]), (walls[finite][-1], steps[finite][-1])):
            if not row.progress or (wall > row.progress[-1][0] and step >= row.progress[-1][1]):
                row.progress.append((float(wall), int(step)))
        wall = float(walls[finite].max())
        row.last_wall_time = wall if row.last_wall_time is None else max(row.last_wall_time, wall)

    def add_run(self, logdir: str, run: str) -> None:
        with self._lock:
            self._row(logdir, run)

    def remove_run(self, logdir: str, run: str) -> None:
        with self._lock:
            self._rows.pop((logdir, run), None)
            removed = rich_text(f"run removed: {self._label(logdir, run)}", "bright_black")
            self._feed.appendleft(FeedItem(time.time(), removed))

    def resume(self, logdir: str, runs: Iterable[tuple[str, int | None, float | None]], saved: dict[str, Any]) -> int:
        """Rows for the runs a resumed reader knows, as ``(run, last_step, last_wall_time)``, with the values in ``saved``.

        ``saved`` is :meth:`saved`'s entry for ``logdir``; a run missing from it or damaged keeps
        the reader's step and fills its other cells as new points arrive. Returns the rows restored.
        """
        restored = 0
        with self._lock:
            for run, last_step, last_wall in runs:
                row = self._row(logdir, run)
                row.step, row.last_wall_time = last_step, last_wall
                entry = saved.get(run) if isinstance(saved, dict) else None
                if isinstance(entry, dict):
                    try:
                        row.restore(entry)
                        restored += 1
                    except (TypeError, ValueError, KeyError):
                        self._rows[(logdir, run)] = RunRow(
                            row.label, step=last_step, last_wall_time=last_wall, alerts=row.alerts, incidents=row.incidents
                        )
        return restored

    def saved(self) -> dict[str, dict[str, Any]]:
        """Per logdir, per run: the values :meth:`resume` puts back after a restart."""
        with self._lock:
            out: dict[str, dict[str, Any]] = {}
            for (logdir, run), row in self._rows.items():
                out.setdefault(logdir, {})[run] = row.saved()
            return out

    def add_alert(self, logdir: str, alert: Alert, incident: Incident, *, replayed: bool = False) -> None:
        """Count ``alert`` on its run and show its ``incident`` (as it stands) in the feed, in place of the
        incident's earlier line; one ``replayed`` from state shows at its own time."""
        with self._lock:
            row = self._row(logdir, alert.run)
            row.alerts.append(alert)
            row.incidents.add(incident.id)
            key = f"{logdir}\0{incident.id}"
            for item in [i for i in self._feed if i.incident == key]:
                self._feed.remove(item)
            when = alert.wall_time if replayed else time.time()
            self._feed.appendleft(FeedItem(when, _incident_text(self._label(logdir, alert.run), alert, incident), key))

    def add_notice(self, message: str, style: str = "bright_black") -> None:
        with self._lock:
            self._feed.appendleft(FeedItem(time.time(), rich_text(message, style)))

    def render(self, height: int | None = None, width: int | None = None) -> RenderableType:
        """A snapshot: header, runs table (worst first, cut to ``height`` lines, fit to ``width``), alert feed."""
        with self._lock:
            now = time.time()
            rows = sorted(self._rows.values(), key=lambda r: _row_order(r, now))
            header = self._header(len(rows), width)
            feed = [Text.assemble(f"{clock_time(i.when)} ", i.text) for i in self._feed]
            prefix = common_prefix([row.label for row in rows])
            under = []
            if prefix:  # fit without its final "/", so that the last directory is the tail kept
                shown_prefix = _fit_one(f"runs under {visible(prefix[:-1])}", None if width is None else width - 1)
                under = [rich_text(f"{shown_prefix}/", "bright_black")]
            budget = None if height is None else max(3, height - 7 - max(len(feed), 1) - len(under))
            table = _runs_table(rows, now, budget, width, prefix)
        return Group(header, *under, table, Text("alerts (latest first)", "bold"), *(feed or [Text("  none yet", "bright_black")]))

    def _header(self, runs: int, width: int | None) -> Text:
        """One line: the logdirs lose their middle on a narrow terminal, the counters stay."""
        problems_style = "bold red" if self.problems else "green"
        counters = Text.assemble(
            "  •  ",
            (self.backend, "cyan"),
            f"  •  {plural(runs, 'run')}, {plural(self.files_tracked, 'file')}  •  ",
            (plural(self.problems, "read problem"), problems_style),
        )
        room = None if width is None else max(8, width - cell_len("tbmon watch ") - counters.cell_len)
        logdirs = _fit_one(visible(", ".join(self.logdirs)), room)
        return Text.assemble(("tbmon watch ", "bold"), logdirs, counters)


def _row_order(row: RunRow, now: float) -> tuple[int, str]:
    rank = {"critical": 0, "warning": 1, "ok": 2, "idle": 3}[row.status(now)]
    return rank, row.label


def _runs_table(rows: list[RunRow], now: float, budget: int | None, width: int | None, prefix: str) -> Table:
    """The runs, their names without ``prefix`` (shown once above the table) and the columns that fit ``width``."""
    shown = rows if budget is None or len(rows) <= budget else rows[: budget - 1]
    cells = [_cells(row, now) for row in shown]
    labels = [visible(row.label[len(prefix):]) for row in shown]
    if len(shown) < len(rows):
        cells.append({})
        labels.append(f"… {len(rows) - len(shown)} more runs")
    points = max((len(row.recent_loss) for row in shown), default=0)
    columns, trend_width, run_width = _fit_columns(width, labels, cells, points)
    table = Table(box=box.SIMPLE_HEAD, expand=False, pad_edge=False, header_style="bold")
    for name, justify in COLUMNS:
        if name in columns:
            table.add_column(name, justify=justify, no_wrap=True)
    for label, row_cells, row in zip(fit_labels(labels, run_width), cells, [*shown, None]):
        trend = sparkline(list(row.recent_loss), trend_width) if row is not None and row.recent_loss else ""
        values = {**row_cells, "run": Text(label), "trend": trend}
        table.add_row(*(values.get(name, "") for name in columns))
    return table


def _cells(row: RunRow, now: float) -> dict[str, RenderableType]:
    """One row's cells but the run name and the trend (their width depends on the terminal's)."""
    status = row.status(now)
    rate = row.rate()
    return {
        "step": MISSING if row.step is None else str(row.step),
        "steps/s": MISSING if rate is None else f"{rate:.3g}",
        "loss": Text(fmt_number(row.loss, MISSING), "" if row.loss is None or math.isfinite(row.loss) else "bold red"),
        "best": fmt_number(row.best_loss, MISSING),
        "val loss": fmt_number(row.val_loss, MISSING),
        "grad": _grad_cell(row),
        "status": Text(status, STATUS_STYLE[status]),
        "incidents": _incidents_cell(row),
    }


def _fit_columns(
    width: int | None, labels: list[str], cells: list[dict[str, RenderableType]], points: int
) -> tuple[list[str], int, int]:
    """``(columns shown, trend width, run name width)`` for a terminal ``width`` cells wide (None: no limit).

    Columns give way in ``NARROWING`` order until the names get ``RUN_ROOM`` cells (or all
    they need); run, step, loss and status always stay, the names taking whatever is left.
    """
    widths = {name: max([cell_len(name), *(cell_len(_plain(c[name])) for c in cells if name in c)]) for name, _ in COLUMNS}
    names_need = max([cell_len("run"), *(cell_len(label) for label in labels)])
    columns, trend = [name for name, _ in COLUMNS], SPARK_WIDTH
    if width is None:
        return columns, trend, names_need

    def room() -> int:
        shown_trend = max(cell_len("trend"), min(trend, points))  # a sparkline is one cell per point, up to its width
        others = sum(shown_trend if name == "trend" else widths[name] for name in columns if name != "run")
        return width - TABLE_EDGES - COLUMN_GAP * (len(columns) - 1) - others

    for step in NARROWING:
        if room() >= min(names_need, RUN_ROOM):
            break
        if isinstance(step, int):
            trend = min(trend, step)
        else:
            columns.remove(step)
    return columns, trend, max(cell_len("run"), min(names_need, room()))


def _fit_one(text: str, width: int | None) -> str:
    """``text`` in ``width`` cells, its middle elided (a path keeps its start and its end)."""
    return text if width is None else fit_labels([text], max(1, width))[0]


def _plain(cell: RenderableType) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def _optional(kind: Callable[[Any], Any], value: Any) -> Any:
    return None if value is None else kind(value)


def _grad_cell(row: RunRow) -> Text:
    """The last gradient norm, overridden by the name of an active gradient alert."""
    kinds = [a.kind for a in row.alerts if "gradient" in a.kind]
    if kinds:
        return Text(kinds[-1].replace("_gradients", ""), "bold red")
    return Text(fmt_number(row.grad_norm, MISSING))


def _incidents_cell(row: RunRow) -> str:
    """``1 (5 alerts)``: the run's incidents, and how many alerts they gathered when that is more."""
    if not row.alerts:
        return ""
    count = len(row.incidents)
    return str(count) if len(row.alerts) == count else f"{count} ({plural(len(row.alerts), 'alert')})"


def _incident_text(label: str, alert: Alert, incident: Incident) -> Text:
    """The feed line of ``incident``: its worst severity, its alerts when several, and the latest one."""
    where = f"{f' {alert.tag}' if alert.tag else ''} step {alert.step}: {alert.message}"
    if incident.alerts == 1:
        head, body = visible(f" {alert.kind}"), visible(f" {label}{where}")
    else:
        head = visible(f" {incident.family} incident")
        body = visible(
            f" {label} since step {incident.first_step}, {incident.alerts} alerts ({incident.kinds_text()}); "
            f"latest {alert.kind}{where}"
        )
    return Text.assemble((f"{incident.severity.upper():8}", SEVERITY_STYLE.get(incident.severity, "")), (head, "bold"), body)
