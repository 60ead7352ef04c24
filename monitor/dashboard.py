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
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tbmon.analyzers.alerts import Alert, severity_rank
from tbmon.analyzers.series import RunBatch
from tbmon.analyzers.numbers import fmt_number
from tbmon.monitor.sanitize import rich_text, visible
from tbmon.monitor.sparkline import sparkline
from tbmon.monitor.wording import plural

SPARK_POINTS = 240  # recent loss values kept per run; the sparkline averages them into its width
SPARK_WIDTH = 24
RATE_WINDOW = 64  # (wall_time, step) pairs the steps/s rate is measured over
FEED_LINES = 8
MISSING = "—"
IDLE_AFTER = 120.0
"""Seconds without a new record before a healthy run shows as idle (grey): twice tensorboardX's
default 120 s flush would be too late to tell, a finished or hung run is what this flags."""

STATUS_STYLE = {"ok": "green", "info": "green", "warning": "yellow", "critical": "bold red", "idle": "bright_black"}
SEVERITY_STYLE = {"info": "cyan", "warning": "yellow", "critical": "bold red"}

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

    def rate(self) -> float | None:
        """Steps per second of writer time over the last few arrivals (None until measurable)."""
        if len(self.progress) < 2:
            return None
        (t0, s0), (t1, s1) = self.progress[0], self.progress[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 and s1 >= s0 else None

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

    def add_alert(self, logdir: str, alert: Alert, *, replayed: bool = False) -> None:
        """Count ``alert`` on its run; show it in the feed unless it is an old one restored from state."""
        with self._lock:
            self._row(logdir, alert.run).alerts.append(alert)
            if not replayed:
                self._feed.appendleft(FeedItem(time.time(), _alert_text(self._label(logdir, alert.run), alert)))

    def add_notice(self, message: str, style: str = "bright_black") -> None:
        with self._lock:
            self._feed.appendleft(FeedItem(time.time(), rich_text(message, style)))

    def render(self, height: int | None = None) -> RenderableType:
        """A snapshot: header, runs table (worst first, cut to ``height`` lines), alert feed."""
        with self._lock:
            now = time.time()
            rows = sorted(self._rows.values(), key=lambda r: _row_order(r, now))
            header = self._header(len(rows))
            feed = [Text.assemble(time.strftime("%H:%M:%S ", time.localtime(i.when)), i.text) for i in self._feed]
            budget = None if height is None else max(3, height - 7 - max(len(feed), 1))
            table = _runs_table(rows, now, budget)
        return Group(header, table, Text("alerts (latest first)", "bold"), *(feed or [Text("  none yet", "bright_black")]))

    def _header(self, runs: int) -> Text:
        problems_style = "bold red" if self.problems else "green"
        return Text.assemble(
            ("tbmon watch ", "bold"),
            visible(", ".join(self.logdirs)),
            "  •  ",
            (self.backend, "cyan"),
            f"  •  {plural(runs, 'run')}, {plural(self.files_tracked, 'file')}  •  ",
            (plural(self.problems, "read problem"), problems_style),
        )


def _row_order(row: RunRow, now: float) -> tuple[int, str]:
    rank = {"critical": 0, "warning": 1, "ok": 2, "idle": 3}[row.status(now)]
    return rank, row.label


def _runs_table(rows: list[RunRow], now: float, budget: int | None) -> Table:
    table = Table(box=box.SIMPLE_HEAD, expand=False, pad_edge=False, header_style="bold")
    for name, justify in (
        ("run", "left"),
        ("step", "right"),
        ("steps/s", "right"),
        ("loss", "right"),
        ("best", "right"),
        ("trend", "left"),
        ("val loss", "right"),
        ("grad", "right"),
        ("status", "left"),
        ("alerts", "right"),
    ):
        table.add_column(name, justify=justify, no_wrap=True)
    shown = rows if budget is None or len(rows) <= budget else rows[: budget - 1]
    for row in shown:
        status = row.status(now)
        rate = row.rate()
        table.add_row(
            rich_text(row.label),
            MISSING if row.step is None else str(row.step),
            MISSING if rate is None else f"{rate:.3g}",
            Text(fmt_number(row.loss, MISSING), "" if row.loss is None or math.isfinite(row.loss) else "bold red"),
            fmt_number(row.best_loss, MISSING),
            sparkline(list(row.recent_loss), SPARK_WIDTH) if row.recent_loss else "",
            fmt_number(row.val_loss, MISSING),
            _grad_cell(row),
            Text(status, STATUS_STYLE[status]),
            str(len(row.alerts)) if row.alerts else "",
        )
    if len(shown) < len(rows):
        table.add_row(f"… {len(rows) - len(shown)} more runs", *[""] * 9)
    return table


def _grad_cell(row: RunRow) -> Text:
    """The last gradient norm, overridden by the name of an active gradient alert."""
    kinds = [a.kind for a in row.alerts if "gradient" in a.kind]
    if kinds:
        return Text(kinds[-1].replace("_gradients", ""), "bold red")
    return Text(fmt_number(row.grad_norm, MISSING))


def _alert_text(label: str, alert: Alert) -> Text:
    return Text.assemble(
        (f"{alert.severity.upper():8}", SEVERITY_STYLE.get(alert.severity, "")),
        (visible(f" {alert.kind}"), "bold"),
        visible(f" {label}{f' {alert.tag}' if alert.tag else ''} step {alert.step}: {alert.message}"),
    )
