"""The overfitting rule's per-evaluation figures for a whole batch at once, in numpy (issue 14).

The rule judges each evaluation the moment training reaches its step, one at a time, so that
its bounded training buffer holds the same points whatever the chunking. With ``val/loss``
logged every step that walk cost ~7 µs per evaluation. Most of what it computes does not
depend on the walk's outcome: each evaluation's training level (a median of the training
points since the previous evaluation, at least the last ``min_points``), the smoothed
validation loss (a median of the last ``width`` evaluations) and the running best (a prefix
minimum of the smoothed loss). This module computes those for the batch, and marks the
evaluations where nothing can happen but bookkeeping (judged before the next one arrives, and
the rise or the train/validation gap too small to count), so the rule steps one at a time only
through the others. Pure: no state is changed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import sqrt

import numpy as np

from tbmon.analyzers.windows import MAD_TO_SIGMA, small_median

_BLOCK_CELLS = 1 << 20  # bounds the padded (rows x width) matrix of one median block to ~8 MB
NO_STEP = int(np.iinfo(np.int64).min)  # ``max_step`` / ``prev_step`` when there is none yet
_EXACT_GROUPS = 16  # window lengths sorted apart up to this many distinct ones (else by power of two)
_FEW_ROWS = 8  # windows of one length taken one by one in Python below this many


def window_medians(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``median(values[s : s + n])`` for each ``(s, n)``, ``n >= 1``, without NaN in ``values``.

    The same float as ``windows.small_median`` (the middle value, or ``(a + b) / 2`` of the middle
    two). Windows of one length are sorted together (windows of 3, the smoothing default, by
    ``min``/``max``); with many lengths, windows are grouped by length rounded up to a power of two
    and padded with +inf. Either way a batch costs a few sorts, not one numpy call per window.
    """
    out = np.empty(starts.shape[0])
    if not lengths.size:
        return out
    low, high = int(lengths.min()), int(lengths.max())  # (counted only over a short span of lengths)
    exact = np.flatnonzero(np.bincount(lengths - low)) + low if high - low < 4 * _EXACT_GROUPS else None
    if exact is None or exact.size > _EXACT_GROUPS:
        return _padded_medians(values, starts, lengths, out)
    for n in exact.tolist():
        rows = np.flatnonzero(lengths == n) if exact.size > 1 else np.arange(lengths.size)
        first = starts[rows]
        if rows.size < _FEW_ROWS:  # (a run's first evaluations): numpy's set-up would cost more
            for row, start in zip(rows.tolist(), first.tolist()):
                out[row] = small_median(values[start : start + n].tolist())
            continue
        if n == 3:
            a, b, c = values[first], values[first + 1], values[first + 2]
            out[rows] = np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
            continue
        for part in np.array_split(np.arange(rows.size), max(1, rows.size * n // _BLOCK_CELLS)):
            block = values[first[part, None] + np.arange(n)]
            block.sort(axis=1)
            out[rows[part]] = block[:, n // 2] if n % 2 else (block[:, n // 2 - 1] + block[:, n // 2]) / 2
    return out


def _padded_medians(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``window_medians`` for windows of many lengths: by power-of-two classes, padded with +inf."""
    classes = np.left_shift(1, np.ceil(np.log2(lengths)).astype(np.int64))
    last = values.shape[0] - 1
    for size in np.unique(classes).tolist():
        rows = np.flatnonzero(classes == size)
        columns = np.arange(size)
        for block in np.array_split(rows, max(1, rows.size * size // _BLOCK_CELLS)):
            out[block] = _row_medians(values[np.minimum(starts[block, None] + columns, last)], lengths[block])
    return out


def _row_medians(rows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The median of each row's first ``lengths`` entries (the rest padded out with +inf), as
    ``small_median`` finds it; sorts ``rows`` in place."""
    rows[np.arange(rows.shape[1]) >= lengths[:, None]] = np.inf
    rows.sort(axis=1)
    picked = np.arange(rows.shape[0])
    low, high = rows[picked, (lengths - 1) // 2], rows[picked, lengths // 2]
    return np.where(lengths % 2 == 1, low, (low + high) / 2)


@dataclass(frozen=True)
class EvalPlan:
    """Per evaluation of the batch (in ``seq`` order): what judging it would compute."""

    cut: np.ndarray  # batch training points added when it is judged
    level: np.ndarray  # training level it is compared with (NaN: no training point at or before it)
    clean: np.ndarray  # bool: judged before the next evaluation arrives (on arrival, or by the next training point)
    routine: np.ndarray  # bool: clean, after a full smoothing window
    candidate: np.ndarray  # bool: risen enough above the best and above the training level to count
    short_up: np.ndarray  # bool: its smoothed loss above the best by ``min_rise``
    long_up: np.ndarray  # bool: the median of the last ``long_evals`` (all since the best) above it by ``min_rise``
    long: np.ndarray  # that median (+inf: fewer kept)
    new_best: np.ndarray  # bool: its smoothed loss is a new best
    kept: np.ndarray  # validation values of the kept evaluations (the rule's ``evals``, then the batch's)
    kept_step: np.ndarray  # and their steps
    position: np.ndarray  # each evaluation's index in ``kept`` (where it is kept)
    smooth: np.ndarray  # its smoothed validation loss (+inf: window not full yet)


def plan_evaluations(
    *,
    buffer_steps: list[int],
    buffer_values: list[float],
    max_step: int,
    train_seq: np.ndarray,
    train_step: np.ndarray,
    train_value: np.ndarray,
    limit_seq: float,
    eval_seq: np.ndarray,
    eval_step: np.ndarray,
    eval_value: np.ndarray,
    prev_step: int,
    kept_values: list[float],
    kept_steps: list[int],
    best: float,
    best_step: int,
    params: dict,
    min_points: int,
    max_points: int,
    max_kept: int,
    max_pending: int,
    long_evals: int,
) -> EvalPlan | None:
    """What the rule's walk computes for each evaluation, given the state it starts from.

    ``buffer_*``: the rule's training buffer (finite points, step order); ``train_*``: the batch's
    training points up to its first non-finite one, which arrives at ``limit_seq`` (+inf: none;
    the walk judges what comes after it, this plan leaves that out); ``kept_values``: validation
    values of the evaluations the rule keeps (``evals``), ``kept_steps`` their steps; ``best``: the smoothed best so far
    (+inf: none yet), dated at ``best_step``; ``prev_step``: the last judged evaluation's step, ``max_step`` the
    training tag's highest step added (``NO_STEP``: none). Training points are indexed in the buffer
    followed by the batch ("global"); the buffer the walk holds when it judges an evaluation is
    the last ``max_points`` of those added so far (its trims only drop points no window reaches).
    ``None`` when there is no training point yet, when training steps repeat (a point logged
    after an evaluation at its step would reach the walk later than the plan assumes), or when
    more than ``max_pending`` evaluations would wait for training (the walk then drops some).
    """
    width = params["smooth_evals"]
    held = len(buffer_steps)
    steps = np.concatenate([np.asarray(buffer_steps, dtype=np.int64), train_step])
    values = np.concatenate([np.asarray(buffer_values, dtype=np.float64), train_value])
    if not steps.size or (steps.size > 1 and not (np.diff(steps) > 0).all()):
        return None
    # Training points added before the evaluation arrives; the newest step among them.
    arrived = held + np.searchsorted(train_seq, eval_seq, side="left")
    newest = np.where(arrived > held, steps[np.maximum(arrived - 1, 0)], max_step)
    immediate = np.maximum(newest, max_step) >= eval_step
    # Otherwise it waits until the first training point at or past its step is added.
    first_past = np.searchsorted(steps, eval_step, side="left")
    # Judged in this plan: before the batch's first non-finite training point (``limit_seq``) arrives.
    judged = (immediate & (eval_seq < limit_seq)) | (~immediate & (first_past < steps.shape[0]))  # (a prefix)
    cut = np.where(immediate, arrived, first_past + 1)  # training points added when it is judged
    # Evaluations waiting when one arrives (itself included): more than ``max_pending`` and the walk
    # drops the oldest, which this plan does not model. Those it leaves out may all be waiting.
    order = np.arange(eval_step.shape[0])
    done = np.minimum(np.searchsorted(cut[judged], arrived, side="right"), order)
    if np.count_nonzero(~judged) + int((order + 1 - done)[judged].max(initial=0)) > max_pending:
        return None
    start = np.maximum(cut - max_points, 0)  # the buffer's first point then (MAX_TRAIN_POINTS)
    upto = np.maximum(np.minimum(cut, np.searchsorted(steps, eval_step, side="right")) - start, 0)
    previous = np.concatenate([np.array([prev_step], dtype=np.int64), eval_step[:-1]])
    since = np.minimum(np.maximum(np.searchsorted(steps, previous, side="right") - start, 0), upto)
    short = upto - since < min_points
    since = np.where(short, np.maximum(upto - min_points, 0), since)
    level = np.full(eval_step.shape[0], np.nan)
    has_level = judged & (upto > 0)
    level[has_level] = window_medians(values, (start + since)[has_level], (upto - since)[has_level])

    # The evaluations the rule keeps (judged, with a training level), after the ones it kept already.
    kept = np.concatenate([np.asarray(kept_values, dtype=np.float64), eval_value[has_level]])
    kept_step = np.concatenate([np.asarray(kept_steps, dtype=np.int64), eval_step[has_level]])
    position = len(kept_values) + np.cumsum(has_level) - 1  # in ``kept`` (for the kept ones)
    full = has_level & (np.minimum(position + 1, max_kept) >= width)
    first = np.maximum(position - width + 1, 0)
    smooth = np.full(eval_step.shape[0], np.inf)
    smooth[full] = window_medians(kept, first[full], (position - first + 1)[full])
    best_after = np.minimum.accumulate(np.concatenate([[best], smooth]))
    new_best = full & (smooth < best_after[:-1])
    best_after = best_after[1:]
    # The step the best is dated at (its window's lowest evaluation, the first if tied), and the median of the last
    # ``long_evals`` kept evaluations where every one of them is at or after it (of at most ``max_kept`` kept).
    low_at = np.full(eval_step.shape[0], best_step, dtype=np.int64)
    if (nb := np.flatnonzero(new_best)).size:
        first_of = position[nb] - width + 1
        low_at[nb] = kept_step[first_of + np.argmin(kept[first_of[:, None] + np.arange(width)], axis=1)]
    latest = np.maximum.accumulate(np.where(new_best, np.arange(eval_step.shape[0]), -1))
    dated = np.where(latest >= 0, low_at[np.maximum(latest, 0)], best_step)
    since = np.maximum(np.searchsorted(kept_step, dated, side="left"), position + 1 - max_kept)
    wide = has_level & (long_evals > 0) & (position + 1 - since >= long_evals)
    long = np.full(eval_step.shape[0], np.inf)
    long[wide] = window_medians(kept, position[wide] - long_evals + 1, np.full(int(wide.sum()), long_evals))
    with np.errstate(invalid="ignore"):
        bar = params["min_rise"] * np.abs(best_after)
        short_up, long_up = smooth - best_after > bar, wide & (long - best_after > bar)
        gap = eval_value - level > params["min_gap"] * np.abs(level)
    # Judged before the next evaluation arrives (on arrival, or by the next training point): the walk
    # never has two waiting, and can be taken up again right after it.
    clean = judged & (cut <= np.append(arrived[1:], np.iinfo(np.int64).max))
    return EvalPlan(cut=cut - held, level=level, clean=clean, routine=clean & full,
                    candidate=(short_up | long_up) & gap, short_up=short_up, long_up=long_up, long=long,
                    new_best=new_best, kept=kept, kept_step=kept_step, position=position, smooth=smooth)


def window_mads(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The median absolute deviation from the median of each window ``values[s : s + n]``, ``n >= 1``: the
    same float as ``small_median`` of the deviations from ``small_median`` (the overfitting rule's noise)."""
    out = np.empty(starts.shape[0])
    if not starts.size:
        return out
    centre = window_medians(values, starts, lengths)
    columns = np.arange(int(lengths.max()))
    last = values.shape[0] - 1
    for block in np.array_split(np.arange(starts.shape[0]), max(1, starts.shape[0] * columns.size // _BLOCK_CELLS)):
        spread = np.abs(values[np.minimum(starts[block, None] + columns, last)] - centre[block, None])
        out[block] = _row_medians(spread, lengths[block])
    return out


def noise_at(kept: np.ndarray, position: np.ndarray, window: int, since: int, min_since: int) -> np.ndarray:
    """The evaluation-to-evaluation noise of the ``window`` kept values ending at each ``position`` (all at
    least ``window - 1``), as ``Overfitting._counts`` finds it, float for float: the robust σ of the window's
    second differences, or that of the first differences from position ``since`` (the best's) on where there
    are at least ``min_since`` of those values and it is smaller."""
    first = np.diff(kept)
    width = np.full(position.shape[0], window - 2)
    noise = MAD_TO_SIGMA * window_mads(np.diff(first), position - (window - 1), width) / sqrt(6.0)
    start = np.maximum(since, position - (window - 1))
    recent = position - start + 1 >= min_since
    steady = MAD_TO_SIGMA * window_mads(first, start[recent], (position - start)[recent]) / sqrt(2.0)
    noise[recent] = np.minimum(noise[recent], steady)
    return noise
