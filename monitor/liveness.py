"""Which watched runs have gone quiet: the one check that needs the clock, so it lives in `watch`.

A job that hangs (a deadlocked data loader, a stuck collective) or is killed (OOM killer, pre-emption)
stops writing without a word, and nothing in its curves says so. The watcher notices the silence: a
run that grew while it was watched and has written nothing for ``factor`` × its usual gap between
arrivals (at least ``minimum`` seconds) is reported once, until it writes again. A run that simply
finished looks the same from its files, so the report is an info note that says both.

Only runs seen growing count (two arrivals or more): the runs found at start-up are history, and a
watcher started on a logdir of finished runs must not report each of them.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

GAPS_KEPT = 32
"""Arrival gaps remembered per run; their median is the run's usual gap (flushes come in bursts)."""


@dataclass
class _Run:
    last_arrival: float
    last_step: int
    last_wall: float
    arrivals: int = 1
    gaps: deque[float] = field(default_factory=lambda: deque(maxlen=GAPS_KEPT))
    reported: bool = False


@dataclass(frozen=True)
class QuietRun:
    logdir: str
    run: str
    last_step: int
    last_wall: float
    quiet_seconds: float
    usual_gap: float


class Liveness:
    """Arrival times per (logdir, run), and the runs whose silence has outgrown their rhythm."""

    def __init__(self, minimum: float, factor: float = 10.0) -> None:
        self.minimum = minimum
        self.factor = factor
        self._runs: dict[tuple[str, str], _Run] = {}

    def arrived(self, logdir: str, run: str, step: int, wall: float, now: float) -> None:
        """New points of ``run`` reached the watcher at monotonic time ``now``."""
        seen = self._runs.get((logdir, run))
        if seen is None:
            self._runs[(logdir, run)] = _Run(now, step, wall)
            return
        seen.gaps.append(now - seen.last_arrival)
        seen.last_arrival, seen.arrivals, seen.reported = now, seen.arrivals + 1, False
        seen.last_step, seen.last_wall = max(seen.last_step, step), max(seen.last_wall, wall)

    def forget(self, logdir: str, run: str) -> None:
        self._runs.pop((logdir, run), None)

    def newly_quiet(self, now: float) -> list[QuietRun]:
        """Runs that grew while watched and are now silent for longer than their threshold; each once."""
        found = []
        for (logdir, run), seen in self._runs.items():
            if seen.reported or seen.arrivals < 2:
                continue
            usual = statistics.median(seen.gaps)
            quiet = now - seen.last_arrival
            if quiet > max(self.minimum, self.factor * usual):
                seen.reported = True
                found.append(QuietRun(logdir, run, seen.last_step, seen.last_wall, quiet, usual))
        return found
