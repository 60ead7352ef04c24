"""The in-process guard: tbmon's analyzers on what the shim has just written, on its writer thread.

Why it reads its own file back instead of analysing the values in memory: ``tbmon report``
and ``tbmon watch`` judge what is *in the event file* (float32 scalars, the histogram as
framed, the reader's ordering), so reading the bytes the writer has just flushed with the
very reader they use (``LogdirReader.poll([path])``) and feeding the same ``Engine`` is what
makes the guard raise exactly the alerts a later ``tbmon report`` prints, with no second
decoder to keep in step. The bytes are still in the page cache. A pass costs a few ms (the
engine's per-batch work over every tag), so it runs at most every ``CHECK_EVERY_SECS``, and at
once after a non-finite value, a ``flush()`` or ``close()``; never on the training thread.

Each alert is also written into the event file as a TensorBoard text summary
(``tbmon/alerts``, at the alert's step), so whoever opens the run in TensorBoard sees why it
stopped; the reader skips text, so the analysis never sees its own notes.

Nothing here may break training or the writer: the first error is stored, reported once by
the shim, and the guard turns itself off (the event file keeps being written).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from tbmon.analyzers import AnalyzerConfig, Engine
from tbmon.analyzers.alerts import Alert
from tbmon.monitor.reader import LogdirReader

AlertHandler = Callable[[Alert], None]
# Hands a record to the writer: (step, build) with build() -> (summary values, urgent).
NoteWriter = Callable[[int, Callable[[], tuple[list[Any], bool]]], None]
NOTE_TAG = "tbmon/alerts"
# Between two ordinary passes: bounds the guard to a few ms of CPU every 2 s whatever the step
# rate; non-finite values (divergence), flush() and close() are analysed at once.
CHECK_EVERY_SECS = 2.0


class Guard:
    """Follows one event file and runs the analyzers on every new piece of it."""

    def __init__(
        self, logdir: str, config: AnalyzerConfig | None, on_alert: AlertHandler | None, note: NoteWriter
    ) -> None:
        if config is None:
            from tbmon.monitor.config import load_config  # the same [tool.tbmon] table `tbmon report` reads

            config = load_config(None)
        self.path: str | None = None
        self.error: BaseException | None = None
        self._reader = LogdirReader(logdir)
        self._engine = Engine(config)
        self._on_alert = on_alert
        self._note = note
        self._alerts: list[Alert] = []
        self._lock = threading.Lock()
        self._last_check = -math.inf

    def follow(self, path: str | None) -> None:
        """The event file to analyse (absolute: the training script may change directory)."""
        self.path = None if path is None else os.path.abspath(path)

    @property
    def alerts(self) -> list[Alert]:
        """Every alert raised so far, oldest first (a copy: safe to read from any thread)."""
        with self._lock:
            return list(self._alerts)

    def check(self, urgent: bool = True) -> None:
        """Analyse what the file gained since the last pass (writer thread, after a flush)."""
        if self.error is not None or self.path is None:
            return
        now = time.monotonic()
        if not urgent and now - self._last_check < CHECK_EVERY_SECS:
            return
        self._last_check = now
        try:
            new: list[Alert] = []
            for batch in self._reader.poll([self.path]).batches:
                new += self._engine.feed(batch)
            with self._lock:
                self._alerts += new
            for alert in new:
                self._note(alert.step, _note_builder(alert))
                if self._on_alert is not None:
                    self._on_alert(alert)
        except Exception as exc:  # noqa: BLE001 - never break training or the writer
            self.error = exc


def _note_builder(alert: Alert) -> Callable[[], tuple[list[Any], bool]]:
    def build() -> tuple[list[Any], bool]:
        from tensorboardX.summary import text  # the shim already depends on tensorboardX

        line = f"**{alert.severity.upper()} {alert.kind}** ({alert.tag}, step {alert.step}): {alert.message}"
        return list(text(NOTE_TAG, line).value), False

    return build
