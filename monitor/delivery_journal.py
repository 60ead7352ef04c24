"""Deliveries confirmed since the last checkpoint, appended one line each beside the state file.

A checkpoint writes every run's analyzer state (13 MB for 200 runs) with an fsync, too much to
repeat for each confirmed delivery; without a record, a watcher killed before its next
checkpoint would deliver again everything it delivered since the last one. One appended JSON
line per confirmation (``STATE.delivered``) is cheap, survives SIGKILL (it is in the page cache
when ``write`` returns), and is emptied by every checkpoint, which holds the same facts. Lines
are facts of the form "this sink has this alert", so applying a line twice, or to a newer
checkpoint, changes nothing. A torn or foreign line is skipped: at worst an alert is repeated.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from tbmon.monitor.delivery import AlertId

READ_LIMIT = 16 << 20
"""Bytes of journal read at start: far beyond alerts x sinks between two checkpoints; more is damage."""


class DeliveryJournal:
    """Append-only record of ``(alert, sink)`` confirmations; thread-safe."""

    def __init__(self, state_path: Path) -> None:
        self.path = state_path.with_name(state_path.name + ".delivered")
        self._fd: int | None = None
        self._lock = threading.Lock()

    def record(self, alert_id: AlertId, sink: str) -> None:
        """Append one confirmation; a failure is ignored (the next checkpoint records it anyway)."""
        logdir, (run, kind, tag, step) = alert_id
        line = json.dumps([logdir, run, kind, tag, int(step), sink], ensure_ascii=True) + "\n"
        with self._lock:
            try:
                if self._fd is None:
                    self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
                os.write(self._fd, line.encode())
            except OSError:
                pass

    def clear(self) -> None:
        """Empty the journal once a checkpoint holds what it said."""
        with self._lock:
            try:
                if self._fd is not None:
                    os.ftruncate(self._fd, 0)
                else:
                    self.path.unlink(missing_ok=True)
            except OSError:
                pass

    def read(self) -> set[tuple[AlertId, str]]:
        """The confirmations on disk (from a watcher that stopped before its next checkpoint)."""
        try:
            with open(self.path, "rb") as handle:
                text = handle.read(READ_LIMIT).decode("utf-8", "replace")
        except OSError:
            return set()
        confirmed = set()
        for line in text.splitlines():
            try:
                logdir, run, kind, tag, step, sink = json.loads(line)
            except (ValueError, TypeError):
                continue
            if all(isinstance(v, str) for v in (logdir, run, kind, tag, sink)) and isinstance(step, int):
                confirmed.add(((logdir, (run, kind, tag, step)), sink))
        return confirmed

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
