"""The one-shot pandas frames of a logdir, with superseded points dropped.

A run that resumes from a checkpoint writes steps it already wrote. The reader's batches keep
the raw arrival-order stream (the analyzers reset a tag when its step goes back); the frames
keep TensorBoard's view, and this module is where that rule is applied. A point is superseded
by any later point of the same (run, tag) whose step is <= its step (so a duplicate step keeps
the last value, and a resume at step s drops the older points with step >= s), and by any
later ``SessionLog.START`` marker (torch's ``purge_step``) at step <= its step, in any tag of
the run. Applied only here, so a watcher's successive batches give the same frames as one
full read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from tbmon.analyzers.series import HistogramSeries, RunBatch, ScalarSeries

if TYPE_CHECKING:
    import pandas as pd

_NO_STEP = np.iinfo(np.int64).max
SCALAR_COLUMNS = ("run", "tag", "step", "wall_time", "value")


def kept_mask(
    seq: np.ndarray, step: np.ndarray, marker_seq: np.ndarray, marker_step: np.ndarray
) -> np.ndarray:
    """Which points of one (run, tag) stream survive (see module docstring).

    A point is dropped if a later point has step <= its step, or a later run-wide marker has
    step <= its step. Kept points therefore come out with strictly increasing steps.
    """
    n = step.shape[0]
    later_min = np.full(n, _NO_STEP, dtype=np.int64)
    if n > 1:
        later_min[:-1] = np.minimum.accumulate(step[:0:-1])[::-1]
    keep = step < later_min
    if marker_seq.size:
        order = np.argsort(marker_seq, kind="stable")
        m_seq, m_step = marker_seq[order], marker_step[order]
        suffix_min = np.append(np.minimum.accumulate(m_step[::-1])[::-1], _NO_STEP)
        keep &= step < suffix_min[np.searchsorted(m_seq, seq, side="right")]
    return keep


def frames(
    batches: list[RunBatch], markers: dict[str, tuple[np.ndarray, np.ndarray]], *, buckets: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The contract's long-form frames, built column by column with categorical run/tag.

    ``batches`` may hold several batches per run (e.g. a watcher's polls, in order): the
    pieces of each (run, tag) are joined before superseded points are dropped. ``buckets``:
    the batches were read with ``histograms="full"``; otherwise the ``bucket_limits`` and
    ``bucket_counts`` columns are there (the same columns in both modes) but hold None.
    """
    import pandas as pd

    s_parts = kept_parts(batches, markers, "scalars")
    h_parts = kept_parts(batches, markers, "histograms")

    def keys(parts: list) -> dict[str, Any]:
        runs = sorted({p[0] for p in parts})
        tags = sorted({p[1] for p in parts})
        run_code = {r: i for i, r in enumerate(runs)}
        tag_code = {t: i for i, t in enumerate(tags)}
        counts = [int(p[2].sum()) for p in parts]
        run_codes = np.repeat(np.array([run_code[p[0]] for p in parts], dtype=np.int32), counts)
        tag_codes = np.repeat(np.array([tag_code[p[1]] for p in parts], dtype=np.int32), counts)
        return {"run": _categorical(run_codes, runs), "tag": _categorical(tag_codes, tags)}

    def column(parts: list, name: str, dtype: Any) -> np.ndarray:
        # Filled in place: no per-tag copies held alongside the result.
        out = np.empty(sum(int(p[2].sum()) for p in parts), dtype=dtype)
        at = 0
        for p in parts:
            kept = np.compress(p[2], getattr(p[3], name))
            out[at : at + kept.shape[0]] = kept
            at += kept.shape[0]
        return out

    scalars = pd.DataFrame(
        {
            **keys(s_parts),
            "step": column(s_parts, "step", np.int64),
            "wall_time": column(s_parts, "wall_time", np.float64),
            "value": column(s_parts, "value", np.float64),
        },
        copy=False,
    )
    hist_cols: dict[str, Any] = {**keys(h_parts), "step": column(h_parts, "step", np.int64)}
    for name in ("wall_time", "min", "max", "num", "sum", "sum_squares"):
        hist_cols[name] = column(h_parts, name, np.float64)
    for name in ("bucket_limits", "bucket_counts"):
        picked = [arr for p in h_parts for arr, k in zip(getattr(p[3], name), p[2].tolist()) if k] if buckets else []
        col = np.empty(len(hist_cols["step"]), dtype=object)  # None where no buckets were kept
        col[:] = picked if picked else None
        hist_cols[name] = col
    histograms = pd.DataFrame(hist_cols, copy=False)
    return scalars, histograms


def kept_parts(
    batches: list[RunBatch], markers: dict[str, tuple[np.ndarray, np.ndarray]], kind: str
) -> list[tuple[str, str, np.ndarray, Any]]:
    """``(run, tag, kept mask, joined series)`` of every (run, tag) of ``kind`` (``"scalars"`` or
    ``"histograms"``), sorted by run and tag: the frames' rows, before any frame is built."""
    empty = (np.empty(0, np.int64), np.empty(0, np.int64))
    join: Callable = join_scalars if kind == "scalars" else join_histograms
    pieces: dict[tuple[str, str], list[Any]] = {}
    for batch in batches:
        for s in getattr(batch, kind):
            pieces.setdefault((batch.run, s.tag), []).append(s)
    parts = []
    for run, tag in sorted(pieces):
        series = join(pieces.pop((run, tag)))
        m_seq, m_step = markers.get(run, empty)
        parts.append((run, tag, kept_mask(series.seq, series.step, m_seq, m_step), series))
    return parts


def _categorical(codes: np.ndarray, names: list[str]) -> pd.Categorical:
    """Codes over ``names``. A name that is not UTF-8 (a directory's bytes, surrogate-escaped) cannot
    be an Arrow string, pandas' default text type once pyarrow is installed: such names stay Python objects."""
    import pandas as pd

    try:
        return pd.Categorical.from_codes(codes, categories=names)
    except UnicodeEncodeError:
        return pd.Categorical.from_codes(codes, categories=pd.Index(names, dtype=object))


def join_scalars(parts: list[ScalarSeries]) -> ScalarSeries:
    """One series from a tag's pieces in arrival order (a poll's batch and the frames both join)."""
    if len(parts) == 1:
        return parts[0]
    return ScalarSeries(
        parts[0].tag,
        *(np.concatenate([getattr(p, name) for p in parts]) for name in ("seq", "step", "wall_time", "value")),
    )


def join_histograms(parts: list[HistogramSeries]) -> HistogramSeries:
    """The histogram twin of :func:`join_scalars`."""
    if len(parts) == 1:
        return parts[0]
    arrays = ("seq", "step", "wall_time", "min", "max", "num", "sum", "sum_squares")
    return HistogramSeries(
        parts[0].tag,
        *(np.concatenate([getattr(p, name) for p in parts]) for name in arrays),
        tuple(a for p in parts for a in p.bucket_limits),
        tuple(a for p in parts for a in p.bucket_counts),
    )


__all__ = ["SCALAR_COLUMNS", "frames", "join_histograms", "join_scalars", "kept_mask", "kept_parts"]


def wide_scalars(scalars: pd.DataFrame) -> pd.DataFrame:
    """tbparse's ``pivot=True`` view: one row per (run, step), one column per tag, NaN where a
    tag has no point at that step (steps are unique per run and tag once superseded points go)."""
    import pandas as pd

    if scalars.empty:
        return pd.DataFrame({"run": pd.Series(dtype=object), "step": pd.Series(dtype=np.int64)})
    wide = scalars.pivot(index=["run", "step"], columns="tag", values="value").reset_index()
    wide["run"] = wide["run"].astype(str)
    wide.columns = [str(c) for c in wide.columns]
    return wide
