"""Vectorised numeric helpers shared by the rules.

Every helper here takes the carried-over state of one tag plus a new chunk and returns
results that do not depend on where the stream was cut into chunks: a window over "the
previous N values" is always computed over the concatenation of the kept history and the
chunk. That is what makes the rules chunk-invariant without a per-point Python loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import isfinite

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

MAD_TO_SIGMA = 1.4826
"""MAD × 1.4826 estimates σ for normal data (the usual consistency constant)."""

_ROWS_PER_BLOCK = 8192  # bounds the temporary (rows × window) matrix to ~8 MB


def small_median(values: list[float]) -> float:
    """``np.median`` of a short list without NaN (the same float: the middle value, or the mean of
    the middle two), in plain Python: on a live feed's few values numpy's set-up costs ~10x more."""
    ordered = sorted(values)
    half = len(ordered) // 2
    return ordered[half] if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) / 2


def median_with(history: list[float], value: float, window: int) -> float:
    """``trailing_median`` of ONE new value in plain Python: the median of it and up to ``window - 1``
    values before it (no NaN among them)."""
    return small_median((history[-(window - 1) :] if window > 1 else []) + [value])


def trailing_window_stats(
    history: np.ndarray,
    values: np.ndarray,
    window: int,
    min_history: int,
    *,
    offset: int,
    stride: int = 1,
    last: list[float] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Median and MAD of the ``window`` values before each new value's block of ``stride``.

    The value with absolute index ``a`` (``offset`` = how many values the tag had before this
    chunk) is compared with the ``window`` values before ``a - a % stride``: one median per block
    instead of one per value, which divides the cost by ``stride``, and since blocks are aligned
    on the absolute index the answer does not depend on chunking. ``history`` must hold the last
    ``window + stride`` values. Rows with fewer than ``min_history`` values before their block
    get NaN (not enough evidence yet).

    Also returns ``[start, median, MAD]`` of the chunk's last block, to pass back as ``last``
    with the next chunk: a block's window is fixed once its start is reached, so a chunk that
    begins in that block reuses it (a live feed of one value per poll would otherwise recompute
    the same window ``stride`` times). It is plain JSON data, fit for a tag's state; without it
    the block is recomputed, to the same result.
    """
    n = values.shape[0]
    if n == 0:
        return np.full(0, np.nan), np.full(0, np.nan), last or []
    if n == 1 and last and last[0] == offset - offset % stride:  # a live point inside a known block
        return np.array([last[1]]), np.array([last[2]]), last
    first = offset // stride  # block k holds the absolute indices [k * stride, (k + 1) * stride)
    count = (offset + n - 1) // stride - first + 1
    starts = (first + np.arange(count)) * stride
    blk_med = np.full(count, np.nan)
    blk_mad = np.full(count, np.nan)
    todo = np.arange(count)
    if last and last[0] == starts[0]:
        blk_med[0], blk_mad[0] = last[1], last[2]
        todo = todo[1:]
    if todo.size:
        hist = history[-(window + stride) :]
        data = np.concatenate([hist, values])
        data_abs0 = offset - hist.shape[0]  # absolute index of data[0]
        full = todo[starts[todo] >= window]
        if full.size:
            view = sliding_window_view(data, window)  # view[k] = data[k:k+window]
            for lo in range(0, full.size, _ROWS_PER_BLOCK):
                rows = full[lo : lo + _ROWS_PER_BLOCK]
                win = view[starts[rows] - window - data_abs0]
                med = np.median(win, axis=1)
                blk_med[rows] = med
                blk_mad[rows] = np.median(np.abs(win - med[:, None]), axis=1)
        # Partial windows (only in a tag's first `window` values): few blocks, a loop is fine.
        for row in todo[(starts[todo] >= min_history) & (starts[todo] < window)]:
            win = data[: starts[row] - data_abs0]
            med = float(np.median(win))
            blk_med[row] = med
            blk_mad[row] = float(np.median(np.abs(win - med)))
    inverse = (offset + np.arange(n)) // stride - first
    return blk_med[inverse], blk_mad[inverse], [int(starts[-1]), float(blk_med[-1]), float(blk_mad[-1])]


def window_stats_point(
    history: Callable[[], list[float]], window: int, min_history: int, *, offset: int, stride: int,
    last: list[float] | None,
) -> list[float]:
    """``trailing_window_stats`` for ONE value (absolute index ``offset``) in plain Python: its
    block's ``[start, median, MAD]``, the ``last`` to keep. ``last`` itself when the value lies in
    that block (7 values of 8 at stride 8); else ``history()`` (the values before it, at least the last
    ``window + stride``, all of them while fewer) gives the window: sorting 128 floats in Python costs
    less than numpy's two medians of one row. Same floats (``small_median``); a window holding a
    non-finite value goes through numpy, whose NaN handling differs."""
    start = offset - offset % stride
    if last and last[0] == start:
        return last
    values = history()
    end = len(values) - (offset - start)  # the block's start in ``values``
    if start < min(window, min_history):  # (a full window counts whatever ``min_history`` says)
        return [start, float("nan"), float("nan")]
    win = values[end - window : end] if start >= window else values[:end]
    med = small_median(win)
    mad = small_median([abs(v - med) for v in win])
    if not (isfinite(med) and isfinite(mad)):
        # (the new value itself is in no window of its block: any stands in for it)
        return trailing_window_stats(np.asarray(values, dtype=float), np.zeros(1), window, min_history,
                                     offset=offset, stride=stride)[2]
    return [start, med, mad]


def trailing_median(history: np.ndarray, values: np.ndarray, window: int) -> np.ndarray:
    """Median of each new value together with up to ``window - 1`` values before it (no NaN among them)."""
    n = values.shape[0]
    if n == 0:
        return np.empty(0)
    if n == 1:  # a live feed's usual chunk: its one window, in plain Python (values hold no NaN)
        return np.array([median_with(history[-(window - 1) :].tolist() if window > 1 else [], float(values[0]), window)])
    data = np.concatenate([history[-(window - 1) :] if window > 1 else history[:0], values])
    offset = data.shape[0] - n
    out = np.empty(n)
    ends = offset + np.arange(n) + 1  # exclusive end of each row's window in ``data``
    full = np.flatnonzero(ends >= window)
    if full.size:
        view = sliding_window_view(data, window)
        for lo in range(0, full.size, _ROWS_PER_BLOCK):
            rows = full[lo : lo + _ROWS_PER_BLOCK]
            out[rows] = np.median(view[ends[rows] - window], axis=1)
    for row in np.flatnonzero(ends < window):
        out[row] = float(np.median(data[: ends[row]]))
    return out


def first_gap(first_step: int, steps: np.ndarray) -> tuple[int | None, int]:
    """A tag's logging interval: the first positive step difference from its first point's step among
    ``steps`` (a repeated step is no interval), and the index in ``steps`` where it became known
    (``steps.size``, with ``None``, while it is not)."""
    later = np.flatnonzero(steps > first_step)
    if not later.size:
        return None, int(steps.size)
    return int(steps[later[0]]) - first_step, int(later[0])


def running_min(previous: float, values: np.ndarray) -> np.ndarray:
    """Running minimum seeded with ``previous`` (use +inf for none)."""
    return np.minimum.accumulate(np.concatenate([[previous], values]))[1:]


@dataclass(slots=True)
class Streak:
    """A run of consecutive True conditions that may span chunks, with where it began."""

    length: int = 0
    start_step: int = -1
    start_wall: float = float("nan")
    start_value: float = float("nan")

    def to_json(self) -> list[float]:
        return [self.length, self.start_step, self.start_wall, self.start_value]

    @classmethod
    def from_json(cls, data: list[float]) -> Streak:
        return cls(int(data[0]), int(data[1]), float(data[2]), float(data[3]))


def streak_update(
    cond: np.ndarray, streak: Streak, steps: np.ndarray, walls: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Length of the True-run ending at each point, and where that run began.

    Returns ``(run_len, start)``: ``start[i]`` is the chunk index of the run's first point,
    or ``-1`` when the run began in an earlier chunk (its step, wall time and value are in
    ``streak`` as it was before this call: read them first). Updates ``streak`` in place.
    """
    n = cond.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if n == 1:  # a live feed's usual chunk: the same answer without the vectorised set-up
        return _streak_one(bool(cond[0]), streak, steps, walls, values)
    c = cond.astype(bool)
    idx = np.arange(n)
    last_false = np.maximum.accumulate(np.where(~c, idx, -1))
    carried = (last_false < 0) & (streak.length > 0)
    run_len = np.where(c, idx - last_false, 0) + np.where(carried & c, streak.length, 0)
    start = np.where(carried, -1, last_false + 1)
    if not c[-1]:
        streak.start_step = -1
    elif not carried[-1]:
        j = int(start[-1])
        streak.start_step, streak.start_wall, streak.start_value = int(steps[j]), float(walls[j]), float(values[j])
    streak.length = int(run_len[-1])
    return run_len, start


def continued_streak(start: np.ndarray, cont: np.ndarray, values: np.ndarray, streak: Streak, steps: np.ndarray,
                     walls: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, float, float]]:
    """Runs that ``start`` begins and ``cont`` (a weaker condition, or a non-finite loss) continues but never begins.

    Returns ``(run_len, first, carried)`` like ``streak_update``: the run's length at each point, the
    chunk index where it began (-1: in an earlier chunk, whose step, wall time and value are ``carried``).
    Updates ``streak`` in place. With ``cont`` equal to ``start`` it is ``streak_update``."""
    n = start.size
    carried = (streak.start_step, streak.start_wall, streak.start_value)
    cont = cont | start
    if not cont.any() or (streak.length == 0 and not start.any()):  # nothing begins or goes on (the usual case)
        if n:
            streak.length, streak.start_step = 0, -1
        return np.zeros(n, dtype=np.int64), np.full(n, -1, dtype=np.int64), carried
    idx = np.arange(n)
    last_break = np.maximum.accumulate(np.where(~cont, idx, -1))
    last_start = np.maximum.accumulate(np.where(start, idx, -1))
    ongoing = (last_break < 0) & (streak.length > 0)
    eff = start | (cont & ((last_start > last_break) | ongoing))
    run_len, first = streak_update(eff, streak, steps, walls, values)
    return run_len, first, carried


def streak_due(run_len: np.ndarray, overflow: np.ndarray, patience: int | np.ndarray) -> np.ndarray:
    """Where a streak is long enough to alert: ``patience`` points (per point, if an array), or a condition
    point followed by an overflow (a non-finite loss or norm: the run broke while the condition held, so it
    held to the end)."""
    return (run_len >= patience) | (overflow & (run_len >= 2))


def due_starts(due: np.ndarray) -> np.ndarray:
    """The points where ``due`` turns on within this chunk (a streak due since an earlier chunk has had its alert)."""
    return np.flatnonzero(due & ~np.concatenate([[False], due[:-1]]))


def _streak_one(
    holds: bool, streak: Streak, steps: np.ndarray, walls: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``streak_update`` for one point."""
    state = streak.to_json()
    length, carried = streak_point(holds, state, int(steps[0]), float(walls[0]), float(values[0]))
    streak.length, streak.start_step, streak.start_wall, streak.start_value = state
    if not holds:
        return np.zeros(1, dtype=np.int64), np.ones(1, dtype=np.int64)
    return np.array([length], dtype=np.int64), np.array([-1 if carried else 0], dtype=np.int64)


def streak_point(holds: bool, state: list[float], step: int, wall: float, value: float) -> tuple[int, bool]:
    """One point of a streak kept as its JSON list (``Streak.to_json()``), updated in place, in plain
    Python: a live feed's point without a dataclass or an array. Returns the run's length at this
    point and whether it began in an earlier point (its start is then the one ``state`` already held)."""
    if not holds:
        state[0], state[1] = 0, -1
        return 0, False
    carried = state[0] > 0
    if not carried:
        state[1], state[2], state[3] = step, wall, value
    state[0] = int(state[0]) + 1
    return state[0], carried


@dataclass(slots=True)
class EpisodeState:
    """One (kind, tag) episode: open after an alert, closed after ``rearm`` quiet points.

    ``level`` is the highest severity already alerted in the open episode: a persisting
    condition stays silent, an escalation (warning → critical) is reported once.
    """

    open: bool = False
    level: int = 0
    quiet: int = 0  # consecutive points without the condition since it last held
    count: int = 0  # points where the condition held in the current episode
    first_step: int = -1
    last_step: int = -1

    def to_json(self) -> list[int]:
        return [int(self.open), self.level, self.quiet, self.count, self.first_step, self.last_step]

    @classmethod
    def from_json(cls, data: list[int]) -> EpisodeState:
        return cls(bool(data[0]), *(int(v) for v in data[1:]))


def episode_events(levels: np.ndarray, steps: np.ndarray, episode: EpisodeState, rearm: int) -> np.ndarray:
    """Indices that deserve an alert: a new episode, or a higher level within the open one.

    ``levels`` is 0 where the condition does not hold, else its severity (1, 2, ...). A
    condition that holds again within ``rearm`` points of the last time it held is the same
    episode, so a NaN every step, or a flapping threshold, yields one alert. Updates in place.
    """
    n = levels.shape[0]
    if n == 1 and levels.dtype.kind in "biu":  # a live feed's usual chunk
        due = episode_point(int(levels[0]), int(steps[0]), episode, rearm)
        return np.zeros(1 if due else 0, dtype=np.int64)
    hits = np.flatnonzero(levels > 0)
    if hits.size == 0:
        episode_quiet(episode, n, rearm)
        return hits
    gaps = np.empty(hits.size, dtype=np.int64)
    gaps[0] = episode.quiet + hits[0]
    gaps[1:] = np.diff(hits) - 1
    new = gaps >= rearm
    if not episode.open:
        new[0] = True
    eid = np.cumsum(new)  # 0 = the episode carried over from earlier chunks
    hit_levels = levels[hits].astype(np.int64)
    keyed = eid * 1000 + hit_levels  # running max per episode via one accumulate
    # The carried-over episode (eid 0) starts at the level it already alerted, so a lower
    # level in this chunk neither lowers it nor lets the next higher one re-alert.
    prior = episode.level if (episode.open and not new[0]) else -1
    acc = np.maximum.accumulate(np.concatenate([[prior], keyed]))
    before, acc = acc[:-1], acc[1:]
    events = hits[keyed > before]
    starts = np.flatnonzero(new)
    if starts.size:
        episode.first_step = int(steps[hits[starts[-1]]])
        episode.count = int(hits.size - starts[-1])
    else:
        episode.count += int(hits.size)
    episode.level = int(acc[-1] - eid[-1] * 1000)
    episode.open = True
    episode.last_step = int(steps[hits[-1]])
    episode.quiet = int(n - 1 - hits[-1])
    if episode.quiet >= rearm:
        episode.open = False
    return events


def episode_point(level: int, step: int, episode: EpisodeState, rearm: int) -> bool:
    """``episode_events`` for one point, without numpy: whether it deserves an alert.

    For rules judged one point at a time (overfitting, once per evaluation), where five
    one-element arrays per call cost more than the rule itself. Updates ``episode`` in place
    exactly as ``episode_events`` would.
    """
    if level <= 0:
        episode_quiet(episode, 1, rearm)
        return False
    new = episode.quiet >= rearm or not episode.open
    due = new or level > episode.level
    if new:
        episode.first_step, episode.count, episode.level = int(step), 1, int(level)
    else:
        episode.count += 1
        episode.level = max(episode.level, int(level))
    episode.open, episode.last_step, episode.quiet = True, int(step), 0
    if rearm <= 0:
        episode.open = False
    return due


def episode_points(levels: list[int], steps: list[int], episode: EpisodeState, rearm: int) -> list[int]:
    """``episode_events`` over a few points in plain Python (``episode_point`` per point that holds;
    the quiet ones between only add to the quiet count): the indices due an alert. ``steps`` is read
    only where a level holds."""
    due: list[int] = []
    quiet = 0
    for i, level in enumerate(levels):
        if level <= 0:
            quiet += 1
            continue
        if quiet:
            episode_quiet(episode, quiet, rearm)
            quiet = 0
        if episode_point(level, steps[i], episode, rearm):
            due.append(i)
    if quiet:
        episode_quiet(episode, quiet, rearm)
    return due


def episode_quiet(episode: EpisodeState, points: int, rearm: int) -> None:
    """``points`` points without the condition (``episode_events`` on all-zero levels): the episode
    closes once ``rearm`` of them in a row have passed."""
    episode.quiet += points
    if episode.quiet >= rearm:
        episode.open = False
