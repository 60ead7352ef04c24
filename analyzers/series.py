"""The columnar data the reader hands to the analyzers (and to `tbmon watch`).

Points travel as chunks of numpy arrays per (run, tag), never as one Python object per
event, so a report over ten million events stays fast and small. Within a run every point
carries a ``seq`` number: its position in the run's arrival order (event files in name
order, records in file order, values in event order). Rules that combine tags (train vs
validation loss, layers against each other) merge chunks by ``seq``, which is what makes
feeding one big batch and many small ones give the same alerts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class ScalarSeries:
    """New points of one scalar tag of one run, in arrival order."""

    tag: str
    seq: np.ndarray  # int64, strictly increasing within a run
    step: np.ndarray  # int64
    wall_time: np.ndarray  # float64, may hold NaN (data, not an error)
    value: np.ndarray  # float64, may hold NaN/Inf (data, not an error)

    def __len__(self) -> int:
        return len(self.seq)  # (a live feed asks ~100 times per feed: the cheapest form)


@dataclass(frozen=True, slots=True)
class HistogramSeries:
    """New points of one histogram tag of one run, in arrival order.

    ``bucket_limits[i]``/``bucket_counts[i]`` are the right edges and counts of point ``i``
    (TensorBoard's HistogramProto convention: the left edge of bucket k is limit k-1; the
    first bucket's left edge is ``min``). TF2 ``[k,3]`` tensors are normalised to this form.
    """

    tag: str
    seq: np.ndarray  # int64
    step: np.ndarray  # int64
    wall_time: np.ndarray  # float64
    min: np.ndarray  # float64
    max: np.ndarray  # float64
    num: np.ndarray  # float64 (element count)
    sum: np.ndarray  # float64
    sum_squares: np.ndarray  # float64
    bucket_limits: tuple[np.ndarray, ...]
    bucket_counts: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return len(self.seq)  # (a live feed asks ~100 times per feed: the cheapest form)


@dataclass(frozen=True, slots=True)
class StepLevels:
    """One loss of a sibling run, by ``step``: the two runs of a Keras train/validation pair have separate
    ``seq`` spaces, and their epoch-level losses share only the epoch number as their step."""

    tag: str
    step: np.ndarray  # int64, increasing
    value: np.ndarray  # float64, finite

    @classmethod
    def empty(cls, tag: str) -> StepLevels:
        return cls(tag, np.zeros(0, dtype=np.int64), np.zeros(0))

    def at_or_before(self, step: np.ndarray) -> np.ndarray:
        """For each of these steps: the value logged at it or the latest before it (NaN when none was)."""
        i = np.searchsorted(self.step, step, side="right") - 1
        return np.where(i >= 0, self.value[np.maximum(i, 0)], np.nan) if self.value.size else np.full(i.shape, np.nan)

    def extended(self, step: np.ndarray, value: np.ndarray, kept: int) -> StepLevels:
        """These levels with new points appended (a resume's overlap replacing the points it rewrites),
        the last ``kept`` of them."""
        if not step.size:
            return self
        older = self.step < step[0]
        return StepLevels(self.tag, np.concatenate([self.step[older], step])[-kept:],
                          np.concatenate([self.value[older], value])[-kept:])


@dataclass(frozen=True, slots=True)
class RunBatch:
    """Everything new for one run since the previous batch, chunked per tag.

    ``run`` is the run directory relative to the logdir (``.`` for the logdir itself).
    ``experiment_dir`` is the directory that pairs Keras-style ``train``/``validation``
    sibling runs (``None`` when the run stands alone); ``role`` is ``"train"``,
    ``"validation"`` or ``None`` accordingly.
    """

    run: str
    scalars: tuple[ScalarSeries, ...] = ()
    histograms: tuple[HistogramSeries, ...] = ()
    experiment_dir: str | None = None
    role: str | None = None
    # Steps at which the writer declared a restart (SessionLog.START / purge_step).
    session_starts: tuple[int, ...] = field(default=())

    def is_empty(self) -> bool:
        return not self.scalars and not self.histograms and not self.session_starts


def seq_slice(series: ScalarSeries | HistogramSeries, lo: int, hi: int) -> ScalarSeries | HistogramSeries:
    """The points of ``series`` with ``lo <= seq < hi`` (the series itself when that is all of it)."""
    a, b = np.searchsorted(series.seq, [lo, hi], side="left")
    if a == 0 and b == len(series):
        return series
    fields = {f.name: getattr(series, f.name)[a:b] for f in dataclasses.fields(series) if f.name != "tag"}
    return dataclasses.replace(series, **fields)
