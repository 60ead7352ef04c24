"""Say once per run when its tags leave rules blind: a training loss, but no validation loss and
no gradient signal, so overfitting and the gradient rules never judge it and the report only
shows "—". The hint names the tags seen and the config line that maps one of them.

Judged from the reader's cumulative run facts (``RunInfo``), so `report` and `watch` (also a
watcher restarted from its state file) decide alike. A Keras ``train``/``validation`` pair is
one experiment: the validation loss of one sibling counts for the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tbmon.analyzers.signals import (
    GRAD_NONFINITE,
    GRAD_NORM,
    GRAD_ZERO_FRAC,
    TRAIN_LOSS,
    VAL_LOSS,
    SignalMatcher,
)

if TYPE_CHECKING:
    from tbmon.monitor.reader import RunInfo

GRADIENT_SIGNALS = frozenset({GRAD_NORM, GRAD_ZERO_FRAC, GRAD_NONFINITE})

LIVE_MIN_POINTS = 200
"""A live watch judges a run once it has this many points: validation often comes only every few
hundred steps, and a hint before the first evaluation would be wrong."""

MAX_TAGS_LISTED = 8


@dataclass
class _Job:
    """One run, or a Keras experiment (its train and validation sibling runs)."""

    name: str
    train_tags: set[str] = field(default_factory=set)
    unmatched: set[str] = field(default_factory=set)
    tags: set[str] = field(default_factory=set)
    judgeable: bool = False  # a validation loss or gradient signal was found
    points: int = 0


class MissingSignalHints:
    """Hints for the runs of one logdir that the overfitting and gradient rules cannot judge; each
    run hinted once."""

    def __init__(self, patterns: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self._matcher = SignalMatcher(patterns)
        self._done: set[str] = set()  # hinted, or found judgeable: tags only ever get added

    def new_hints(self, runs: Iterable[RunInfo], *, final: bool) -> list[str]:
        """Hints not given before; ``final`` (a one-shot read) judges runs of any length."""
        out = []
        for job in self._jobs(runs):
            if job.judgeable:
                self._done.add(job.name)
            if job.name in self._done or not job.train_tags or (not final and job.points < LIVE_MIN_POINTS):
                continue
            self._done.add(job.name)
            out.append(hint_text(job.name, sorted(job.train_tags), sorted(job.tags), sorted(job.unmatched)))
        return out

    def _jobs(self, runs: Iterable[RunInfo]) -> list[_Job]:
        jobs: dict[str, _Job] = {}
        for run in runs:
            name = run.experiment_dir if run.role is not None and run.experiment_dir else run.run
            if name in self._done:
                continue
            job = jobs.setdefault(name, _Job(name))
            job.points += run.points
            job.tags.update(run.scalar_tags, run.histogram_tags)
            for tag in run.scalar_tags:
                match = self._matcher.classify(tag, histogram=False, role=run.role)
                if match is None:
                    job.unmatched.add(tag)
                elif match.signal == TRAIN_LOSS:
                    job.train_tags.add(tag)
                elif match.signal == VAL_LOSS or match.signal in GRADIENT_SIGNALS:
                    job.judgeable = True
            if any(self._matcher.classify(t, histogram=True, role=run.role) for t in run.histogram_tags):
                job.judgeable = True  # gradient histograms are the only histograms the rules read
        return list(jobs.values())


def hint_text(run: str, train_tags: Sequence[str], tags: Sequence[str], unmatched: Sequence[str]) -> str:
    """One line: what is missing, what it costs, the tags seen, and the config line to fix it."""
    more = len(tags) - MAX_TAGS_LISTED
    listed = ", ".join(tags[:MAX_TAGS_LISTED]) + (f" (+{more} more)" if more > 0 else "")
    lossy = [t for t in unmatched if "loss" in t.lower()]
    candidate = (lossy or list(unmatched) or ["<your validation loss tag>"])[0]
    return (
        f"run {run!r} logs a training loss ({', '.join(train_tags)}) but no validation loss or gradient "
        f"signal tbmon recognises, so overfitting and gradient problems cannot be judged; tags seen: {listed}. "
        f"If one is the validation loss, map it in pyproject.toml or --config: "
        f"[tool.tbmon.extra_tags] val_loss = [\"{candidate}\"]"
    )
