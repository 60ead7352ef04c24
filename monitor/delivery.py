"""At-least-once alert delivery: which sinks still owe which alerts, and when to try again.

A new alert is checkpointed with every sink (the output, each webhook, each ``--on-alert``
command) *pending* before any sink sees it; a sink's success clears it, a failure schedules a
retry with backoff. The pending sinks are saved with the alert, so a watcher killed between
the two (SIGKILL, a crash, a full disk) re-delivers on restart instead of going silent. The
price is a possible repeat after a kill, never a loss (Fluent Bit and Vector make the same
trade: acknowledge after the sink has it).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

OUTPUT = "output"
"""The sink id of the watcher's own output (terminal, stdout or ``-o FILE``)."""

RETRY_FIRST = 2.0
"""Seconds before the first retry of a failed delivery; doubled per failure up to ``RETRY_MAX``."""

RETRY_MAX = 300.0
"""A sink down for hours is retried every 5 minutes: soon enough after it recovers, quiet meanwhile."""

AlertId = tuple[str, tuple[str, str, str, int]]
"""``(logdir, alert.key())``: the identity of one alert across sessions."""


def sink_id(kind: str, target: str) -> str:
    """A stable id for a configured sink that does not store its target (webhook URLs carry secrets)."""
    return f"{kind}:{hashlib.sha256(target.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class Outcome:
    """How a sink answered one delivery. ``settled``: it has the alert, or refused it for good
    (an HTTP 4xx: retrying the same request cannot help; the sink said so once). Otherwise it is
    retried with backoff, and no sooner than ``retry_after`` seconds (an HTTP 429's Retry-After)."""

    settled: bool
    retry_after: float = 0.0


DELIVERED = Outcome(settled=True)
RETRY = Outcome(settled=False)


@dataclass
class _Owed:
    failures: int = 0
    next_try: float = 0.0
    in_flight: bool = False


class DeliveryLedger:
    """Pending deliveries per alert and sink; thread-safe (notifier threads report results)."""

    def __init__(self, sinks: Iterable[str], clock: Callable[[], float] = time.monotonic) -> None:
        self.sinks = list(sinks)
        self._clock = clock
        self._owed: dict[AlertId, dict[str, _Owed]] = {}
        self._lock = threading.Lock()
        self._changed = threading.Event()  # set on every change worth checkpointing or acting on

    def expect(self, alert_id: AlertId, sinks: Iterable[str] | None = None) -> None:
        """A new alert: every configured sink owes it (or only ``sinks``: an incident's update is not paged), due now."""
        self.restore(alert_id, self.sinks if sinks is None else sinks)

    def restore(self, alert_id: AlertId, pending: Iterable[str]) -> None:
        """An alert from the checkpoint: the pending sinks still configured owe it, due now."""
        owed = {sink: _Owed() for sink in pending if sink in self.sinks}
        with self._lock:
            if owed:
                self._owed[alert_id] = owed
        self._changed.set()

    def pending(self, alert_id: AlertId) -> list[str]:
        """The sinks that have not confirmed ``alert_id`` (saved with the alert)."""
        with self._lock:
            return sorted(self._owed.get(alert_id, {}))

    def take_due(self) -> list[tuple[AlertId, str]]:
        """Deliveries to attempt now (new, or failed and past their backoff); marked in flight."""
        now = self._clock()
        due = []
        with self._lock:
            for alert_id, owed in self._owed.items():
                for sink, entry in owed.items():
                    if not entry.in_flight and entry.next_try <= now:
                        entry.in_flight = True
                        due.append((alert_id, sink))
        return due

    def done(self, alert_id: AlertId, sink: str) -> None:
        with self._lock:
            owed = self._owed.get(alert_id, {})
            owed.pop(sink, None)
            if not owed:
                self._owed.pop(alert_id, None)
        self._changed.set()

    def failed(self, alert_id: AlertId, sink: str, retry_after: float = 0.0) -> None:
        """Retry later: after the backoff, and not before ``retry_after`` s (capped at ``RETRY_MAX``)."""
        with self._lock:
            entry = self._owed.get(alert_id, {}).get(sink)
            if entry is not None:
                entry.in_flight = False
                wait = max(min(RETRY_FIRST * 2**entry.failures, RETRY_MAX), min(retry_after, RETRY_MAX))
                entry.next_try = self._clock() + wait
                entry.failures += 1
        self._changed.set()

    def next_due_in(self) -> float | None:
        """Seconds until the next retry is due (0: now), or ``None`` when nothing waits for a retry."""
        with self._lock:
            times = [e.next_try for owed in self._owed.values() for e in owed.values() if not e.in_flight]
        return max(min(times) - self._clock(), 0.0) if times else None

    def outstanding(self) -> int:
        """Deliveries not yet confirmed (in flight or waiting for a retry)."""
        with self._lock:
            return sum(len(owed) for owed in self._owed.values())

    def wait_for_change(self, timeout: float | None) -> None:
        """Block until something changed or ``timeout`` passed; clears the flag."""
        self._changed.wait(timeout)
        self._changed.clear()

    def poke(self) -> None:
        """Wake a ``wait_for_change`` caller (shutdown)."""
        self._changed.set()
