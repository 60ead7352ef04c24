"""Analyzer state of runs whose directories are gone, dropped so a long watch does not keep it.

A watcher beside a sweep sees thousands of runs come and go; each run's rules keep a few KB of
windows and episodes. Once the reader reports a run removed, nothing will feed it again (a
directory re-created under the same name is read as a new run), so its state is only weight:
in memory and in every checkpoint. The engine's public state round trip drops it, batched
(at most once per ``every`` seconds), since that round trip costs as much as a checkpoint.
"""

from __future__ import annotations

from tbmon.analyzers import Engine


class GoneRuns:
    """Runs removed per logdir, until ``prune`` has taken them out of their logdir's engine."""

    def __init__(self, every: float) -> None:
        self.every = every
        self._gone: dict[str, set[str]] = {}
        self._last_prune = float("-inf")

    def add(self, logdir: str, run: str) -> None:
        self._gone.setdefault(logdir, set()).add(run)

    def prune(self, engines: dict[str, Engine], now: float) -> int:
        """Replace each engine that has gone runs by one without them; returns how many runs were dropped."""
        if not self._gone or now - self._last_prune < self.every:
            return 0
        self._last_prune = now
        dropped = 0
        for logdir, runs in self._gone.items():
            engine = engines.get(logdir)
            if engine is not None:
                engines[logdir], count = without_runs(engine, runs)
                dropped += count
        self._gone = {}
        return dropped


def without_runs(engine: Engine, runs: set[str]) -> tuple[Engine, int]:
    """A copy of ``engine`` without the rule state of ``runs``, and how many of them it held."""
    state = engine.state_dict()
    held = [owner for owner in state["rules"] if owner in runs]
    if not held:
        return engine, 0
    state["rules"] = {owner: rules for owner, rules in state["rules"].items() if owner not in runs}
    state["last_step"] = {run: tags for run, tags in state["last_step"].items() if run not in runs}
    fresh = Engine(engine.config)
    fresh.load_state_dict(state)
    return fresh, len(held)
