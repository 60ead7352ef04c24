"""The rule protocol, the per-run view rules receive, and the bookkeeping every rule shares.

A rule is instantiated once per run (or once per train/validation experiment for rules with
``scope = "experiment"``). The engine hands it ``RunView``s: the run's new points, already
classified into signals and already cut at restarts (the engine calls ``reset(tag)`` when a
tag's steps go back). Rules are pure: no I/O, no printing, no clock.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from math import inf, isfinite
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import numpy as np

from tbmon.analyzers.alerts import SEVERITIES, Alert
from tbmon.analyzers.series import HistogramSeries, ScalarSeries, StepLevels
from tbmon.analyzers.signals import Match
from tbmon.analyzers.windows import EpisodeState, episode_events, episode_point, episode_points, episode_quiet


class Tagged(NamedTuple):
    """One tag's new points with the meaning the signal matcher gave the tag (a tuple: the engine
    builds one per tag and feed, and a frozen dataclass cost ~4x more to build on a live feed)."""

    match: Match
    series: ScalarSeries | HistogramSeries

    @property
    def tag(self) -> str:
        return self.series.tag


@dataclass(frozen=True, slots=True)
class RunView:
    """What a rule sees of one batch: classified series, and the run its alerts belong to."""

    run: str
    scalars: tuple[Tagged, ...] = ()
    histograms: tuple[Tagged, ...] = ()
    # A Keras train run's view: its validation sibling's epoch-level loss so far (the sibling is a run of
    # its own, fed in its own batches, and read before this one: ``monitor.reader``'s run order).
    sibling_validation: StepLevels | None = None
    # signal → its items, built once: rules ask for a signal many times per batch, and on a live
    # feed of a few points the scan itself was a fair share of the cost (issue 14).
    _by_signal: dict[str, tuple[Tagged, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def signal(self, name: str) -> Iterator[Tagged]:
        if not self._by_signal and (self.scalars or self.histograms):
            grouped: dict[str, list[Tagged]] = {}
            for item in self.scalars + self.histograms:
                grouped.setdefault(item.match.signal, []).append(item)
            self._by_signal.update({k: tuple(v) for k, v in grouped.items()})
        return iter(self._by_signal.get(name, ()))


@runtime_checkable
class Rule(Protocol):
    """What the engine needs from a rule (built-in or from entry-point group ``tbmon.rules``)."""

    name: ClassVar[str]  # config key, e.g. "divergence"
    scope: ClassVar[str]  # "run", or "experiment" to see Keras train/validation siblings together
    defaults: ClassVar[Mapping[str, Any]]  # parameter defaults (config may override, same types)

    def __init__(self, run: str, params: Mapping[str, Any]) -> None: ...

    def feed(self, view: RunView) -> list[Alert]: ...

    def reset(self, tag: str) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def episodes(self) -> list[dict[str, Any]]: ...


class BaseRule:
    """Shared bookkeeping: parameters, per-tag state, and de-duplicated episodes.

    Subclasses keep their per-tag numeric state in ``self.tags[tag]`` (JSON-ready dicts):
    ``reset(tag)`` drops it on a restart, while ``self._episodes`` survives the restart, so
    the overlap after a resume neither false-alarms nor re-raises the same episode.
    """

    name: ClassVar[str] = ""
    scope: ClassVar[str] = "run"
    defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, run: str, params: Mapping[str, Any]) -> None:
        self.run = run
        self.p = {**self.defaults, **params}
        self.tags: dict[str, dict[str, Any]] = {}
        self._episodes: dict[str, EpisodeState] = {}

    def reset(self, tag: str) -> None:
        self.tags.pop(tag, None)

    def state_dict(self) -> dict[str, Any]:
        return {"tags": self.tags, "episodes": {k: e.to_json() for k, e in self._episodes.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tags = {tag: dict(s) for tag, s in state.get("tags", {}).items()}
        self._episodes = {k: EpisodeState.from_json(v) for k, v in state.get("episodes", {}).items()}

    def episodes(self) -> list[dict[str, Any]]:
        """The latest episode per (kind, tag): how often its condition held, until which step."""
        out = []
        for key, e in self._episodes.items():
            if e.first_step >= 0:
                kind, tag = key.split("|", 1)
                out.append({"kind": kind, "tag": tag, "count": e.count, "last_step": e.last_step, "open": e.open})
        return out

    def episode_open(self, kind: str, tag: str) -> bool:
        """Whether this (kind, tag) has an alerted episode that has not ended yet."""
        episode = self._episodes.get(f"{kind}|{tag}")
        return episode is not None and episode.open

    def events(self, kind: str, tag: str, levels: np.ndarray, steps: np.ndarray, rearm: int) -> np.ndarray:
        """Indices where an alert is due for this (kind, tag) (see ``windows.episode_events``)."""
        return episode_events(levels, steps, self._episode(kind, tag), rearm)

    def event(self, kind: str, tag: str, level: int, step: int, rearm: int) -> bool:
        """Whether one point is due an alert: ``events`` for a rule that judges a point at a time."""
        return episode_point(level, step, self._episode(kind, tag), rearm)

    def quiet(self, kind: str, tag: str, points: int, rearm: int) -> None:
        """``points`` points of this (kind, tag) where nothing holds: ``events`` on all-zero levels."""
        episode_quiet(self._episode(kind, tag), points, rearm)

    def _episode(self, kind: str, tag: str) -> EpisodeState:
        """This (kind, tag)'s episode, made on first use (not built per call: a live feed asks often)."""
        key = f"{kind}|{tag}"
        episode = self._episodes.get(key)
        if episode is None:
            episode = self._episodes[key] = EpisodeState()
        return episode

    def merged_events(
        self, kind: str, tag: str, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], rearm: int
    ) -> list[tuple[int, int]]:
        """Due alerts of ONE episode shared by several tags, their points merged by ``seq``.

        For "a NaN in the loss, the grad norm and the validation loss is one alert, not three".
        ``parts`` holds ``(seq, step, level)`` arrays per tag; returns ``(which part, which point)``
        for each alert due.
        """
        if parts and all(len(seq) == 1 for seq, _, _ in parts):  # a live feed: one point per tag, in Python
            levels = [int(level[0]) for _, _, level in parts]
            episode = self._episode(kind, tag)
            if max(levels) <= 0:  # nothing holds (nearly always): only the quiet count moves
                episode_quiet(episode, len(levels), rearm)
                return []
            order = sorted(range(len(parts)), key=lambda k: int(parts[k][0][0]))
            due = episode_points([levels[k] for k in order], [int(parts[k][1][0]) for k in order], episode, rearm)
            return [(order[j], 0) for j in due]
        order = np.argsort(np.concatenate([seq for seq, _, _ in parts]), kind="stable")
        steps = np.concatenate([step for _, step, _ in parts])[order]
        levels = np.concatenate([level for _, _, level in parts])[order]
        owner = np.concatenate([np.full(len(seq), k) for k, (seq, _, _) in enumerate(parts)])[order]
        index = np.concatenate([np.arange(len(seq)) for seq, _, _ in parts])[order]
        return [(int(owner[j]), int(index[j])) for j in self.events(kind, tag, levels, steps, rearm)]

    def alert(
        self,
        *,
        kind: str,
        level: int,
        step: int,
        wall_time: float,
        tag: str,
        message: str,
        evidence: dict[str, Any],
    ) -> Alert:
        """``level`` indexes ``SEVERITIES`` (0 info, 1 warning, 2 critical)."""
        return Alert(
            run=self.run,
            kind=kind,
            severity=SEVERITIES[level],
            step=int(step),
            wall_time=float(wall_time),
            tag=tag,
            message=message,
            evidence=evidence,
        )


_NO_SEQ, _NO_VALUES = np.zeros(0, dtype=np.int64), np.zeros(0)  # no batch arrays (shared: never written)
_NO_SEQ.flags.writeable = _NO_VALUES.flags.writeable = False


def warm_restart(before: Any, peak_before: Any, lr: Any, factor: float) -> Any:
    """A warm restart of the learning rate (element-wise on arrays): the lr now over ``factor`` x the one
    before, which was at most 1 / ``factor`` of the peak so far, and back to no more than ``factor`` x
    that peak (NaN: never). A restart returns to the schedule's peak; a jump far past it is a fault, not
    a schedule, and a warm-up's first rise (from a peak of its own) is none."""
    return (lr > factor * before) & (factor * before <= peak_before) & (lr <= factor * peak_before)


class ScalarContext:
    """The latest value of one context signal (e.g. learning rate) as of any point of the run.

    Rules use it to say *why* something probably happened ("after lr warm-up reached 3e-2").
    It follows the first tag of the signal it sees, and answers by ``seq``, so the answer
    does not depend on how the stream was chunked.
    """

    def __init__(self) -> None:
        self.tag: str | None = None
        self.last: float = float("nan")
        self.last_step: int = -1
        self.peak: float = float("nan")
        self.first: float = float("nan")
        self.release()  # the batch's arrays: none yet
        self._prev = (float("nan"), -1, float("nan"))
        # Rises (a point above the one before): a warm-up ramps over many, a manual change jumps in one.
        self.rises, self.last_rise_step = 0, -1
        self._prev_rises = (0, -1)

    def update(self, items: Iterator[Tagged]) -> None:
        """Take this batch's points of the signal; call before ``at``."""
        self._prev = (self.last, self.last_step, self.peak)
        self._prev_rises = (self.rises, self.last_rise_step)
        self._seq, self._one = _NO_SEQ, None
        for item in items:
            if self.tag is None:
                self.tag = item.tag
            if item.tag != self.tag or len(item.series) == 0:
                continue
            s = item.series
            self._seq, self._steps = s.seq, s.step
            self._values = s.value
            if len(s) == 1:  # a live feed's usual chunk: the same figures without numpy's set-up
                self._take_one(int(s.seq[0]), float(s.value[0]), int(s.step[0]))
                continue
            self._one = None
            seed = -np.inf if np.isnan(self.peak) else self.peak
            self._peaks = np.fmax.accumulate(np.concatenate([[seed], np.where(np.isfinite(s.value), s.value, -np.inf)]))[1:]
            rose = s.value > np.concatenate([[self.last], s.value[:-1]])  # NaN compares False
            self._rises = self.rises + np.cumsum(rose)
            self._rise_steps = np.maximum.accumulate(np.where(rose, s.step, self.last_rise_step))
            self.rises, self.last_rise_step = int(self._rises[-1]), int(self._rise_steps[-1])
            if np.isnan(self.first):
                self.first = float(s.value[0])
            self.last, self.last_step = float(s.value[-1]), int(s.step[-1])
            self.peak = float(self._peaks[-1]) if np.isfinite(self._peaks[-1]) else self.peak

    def _take_one(self, seq: int, value: float, step: int) -> None:
        """``update`` for a one-point series (same results as its vectorised path), kept as Python
        numbers for ``at``: ``(seq, value, step, peak, rises, rise step)``."""
        seed = -inf if self.peak != self.peak else self.peak  # (NaN: none yet)
        peak = max(seed, value) if isfinite(value) else seed
        rose = value > self.last  # NaN compares False
        if rose:
            self.rises, self.last_rise_step = self.rises + 1, step
        self._one = (seq, value, step, peak if isfinite(peak) else float("nan"), self.rises, self.last_rise_step)
        if self.first != self.first:
            self.first = value
        self.last, self.last_step = value, step
        self.peak = peak if isfinite(peak) else self.peak

    def at(self, seq: int) -> tuple[float, int, float]:
        """``(value, step, peak so far)`` of the latest point with ``seq`` at or before ``seq``."""
        if self._one is not None:
            return self._one[1:4] if seq >= self._one[0] else self._prev
        i = int(np.searchsorted(self._seq, seq, side="right")) - 1
        if i < 0:
            return self._prev
        peak = float(self._peaks[i])
        return float(self._values[i]), int(self._steps[i]), peak if np.isfinite(peak) else float("nan")

    def at_many(self, seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``at(seq)``'s value and peak so far for each of these seqs, in one call (a batch of evaluations)."""
        if self._one is not None:
            later = seqs >= self._one[0]
            return np.where(later, self._one[1], self._prev[0]), np.where(later, self._one[3], self._prev[2])
        i = np.searchsorted(self._seq, seqs, side="right") - 1
        if not self._values.size:
            return np.full(seqs.shape, self._prev[0]), np.full(seqs.shape, self._prev[2])
        j = np.maximum(i, 0)
        peaks = np.where(np.isfinite(self._peaks[j]), self._peaks[j], np.nan)
        return np.where(i >= 0, self._values[j], self._prev[0]), np.where(i >= 0, peaks, self._prev[2])

    def rises_at(self, seq: int) -> tuple[int, int]:
        """``(rises so far, step of the latest rise)`` as of ``seq``: how the value got to its peak."""
        if self._one is not None:
            return self._one[4:6] if seq >= self._one[0] else self._prev_rises
        i = int(np.searchsorted(self._seq, seq, side="right")) - 1
        return self._prev_rises if i < 0 else (int(self._rises[i]), int(self._rise_steps[i]))

    def release(self) -> None:
        """Drop this batch's arrays (kept only for ``at`` lookups during the batch): an idle run's
        context is then a few numbers, not a copy of its last batch (a catch-up batch is its whole history)."""
        self._seq = self._steps = self._rise_steps = self._rises = _NO_SEQ
        self._values = self._peaks = _NO_VALUES
        self._one: tuple[int, float, int, float, int, int] | None = None

    def state(self) -> list[Any]:
        return [self.tag, self.last, self.last_step, self.peak, self.first, self.rises, self.last_rise_step]

    def load(self, data: list[Any]) -> None:
        self.tag = data[0]
        self.last, self.last_step, self.peak, self.first = float(data[1]), int(data[2]), float(data[3]), float(data[4])
        self._prev = (self.last, self.last_step, self.peak)
        if len(data) > 5:  # saved before rises were counted: none known
            self.rises, self.last_rise_step = int(data[5]), int(data[6])
        self._prev_rises = (self.rises, self.last_rise_step)


def releases_contexts(feed: Callable[[Any, RunView], list[Alert]]) -> Callable[[Any, RunView], list[Alert]]:
    """Decorate a rule's ``feed``: afterwards its ``ScalarContext``s release the batch's arrays, so
    the memory a rule keeps per run does not depend on how big its last batch was."""

    @functools.wraps(feed)
    def feed_then_release(rule: Any, view: RunView) -> list[Alert]:
        try:
            return feed(rule, view)
        finally:
            for value in vars(rule).values():
                if isinstance(value, ScalarContext):
                    value.release()

    return feed_then_release
