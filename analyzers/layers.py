"""Per-layer gradient magnitudes, grouped by logged step, for the gradient rules.

Sources, per run: gradient histograms (RMS = sqrt(sum_squares / num), exact from the
HistogramProto) when the run logs them, else per-parameter gradient-norm scalars
(``grad_norm/<p>``, Lightning's ``grad_2.0_norm/<p>``). Norms and RMS differ by √(size), so
a run is judged with one source only, and rules compare a layer with itself or ratios of
the same source (AUTOTRAINER compares first/last layer norms the same way).

Layers are ordered by first appearance in the stream, which is the order frameworks walk
``model.named_parameters()``. Some writers emit a step's tags sorted by name, which puts
``net.10`` before ``net.2``: when the appearance order is exactly the name order, the names
are sorted numerically instead (``net.2`` < ``net.10``). When
``*weight``/``*kernel`` parameters exist, only they are compared (bias gradients have their
own scale, and AUTOTRAINER compares kernels).

A step's group of values is complete when every layer seen so far has reported at that step,
or when a point with a later step arrives (the first group always waits for that: only then
is the layer set known). Both depend only on the data, never on how it was chunked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from tbmon.analyzers.base import RunView
from tbmon.analyzers.series import HistogramSeries
from tbmon.analyzers.signals import GRAD_HISTOGRAM, GRAD_NORM

HIST, NORM = "histogram_rms", "norm"


@dataclass(frozen=True, slots=True)
class Groups:
    """Complete step groups: ``values[g, k]`` is layer ``layers[k]`` at ``steps[g]`` (NaN: not logged)."""

    steps: np.ndarray
    walls: np.ndarray
    values: np.ndarray
    layers: tuple[str, ...]
    tags: tuple[str, ...]
    source: str


def is_weight(name: str) -> bool:
    low = name.lower()
    return low.endswith(("weight", "kernel", "weight_orig"))


class LayerGroups:
    """Turns a run's gradient points into complete per-step groups; state is JSON-ready."""

    def __init__(self) -> None:
        self.source: str | None = None
        self.layers: list[str] = []  # first-appearance order
        self.tags: list[str] = []
        self.pending: list[list[float]] = []  # [step, wall, layer index, value] of the open group
        self.closed = False  # whether a group has closed yet (then the layer set is known)

    def state(self) -> dict[str, Any]:
        return {"source": self.source, "layers": self.layers, "tags": self.tags, "pending": self.pending,
                "closed": self.closed}

    def load(self, data: dict[str, Any]) -> None:
        self.source, self.layers, self.tags, self.pending = data["source"], data["layers"], data["tags"], data["pending"]
        self.closed = data["closed"]

    def update(self, view: RunView) -> Groups | None:
        items = self._items(view)
        if not items:
            return None
        seq, step, wall, layer, value = [], [], [], [], []
        for item in items:
            s = item.series
            param = item.match.param or s.tag
            if param not in self.layers:
                self.layers.append(param)
                self.tags.append(s.tag)
            k = self.layers.index(param)
            if isinstance(s, HistogramSeries):
                with np.errstate(invalid="ignore", divide="ignore"):
                    v = np.sqrt(s.sum_squares / s.num)
            else:
                v = s.value
            seq.append(s.seq), step.append(s.step), wall.append(s.wall_time)
            layer.append(np.full(len(s), k)), value.append(v)
        order = np.argsort(np.concatenate(seq), kind="stable")
        st, wt, ly, vl = (np.concatenate(a)[order] for a in (step, wall, layer, value))
        if self.pending:
            old = np.asarray(self.pending, dtype=float)
            st = np.concatenate([old[:, 0].astype(np.int64), st])
            wt, ly, vl = np.concatenate([old[:, 1], wt]), np.concatenate([old[:, 2].astype(np.int64), ly]), np.concatenate([old[:, 3], vl])
        # A group ends where the step changes. The last group stays open unless every known
        # layer has reported in it (the layer set is known once the first group has closed).
        change = np.flatnonzero(np.diff(st) != 0) + 1
        last_start = int(change[-1]) if change.size else 0
        if (self.closed or change.size) and np.unique(ly[last_start:]).size == len(self.layers):
            change, last_start = np.concatenate([change, [st.size]]), st.size
        self.pending = np.column_stack([st[last_start:], wt[last_start:], ly[last_start:], vl[last_start:]]).tolist()
        if last_start == 0:
            return None
        self.closed = True
        st, wt, ly, vl = st[:last_start], wt[:last_start], ly[:last_start], vl[:last_start]
        starts = np.concatenate([[0], change[change < last_start]])
        gid = np.cumsum(np.isin(np.arange(st.size), starts)) - 1
        values = np.full((starts.size, len(self.layers)), np.nan)
        values[gid, ly] = vl  # a layer logged twice at one step keeps its last value
        # Steps that went back (a resume) start fresh groups; they are ordinary groups here.
        return Groups(st[starts], wt[starts], values, tuple(self.layers), tuple(self.tags), self.source or "")

    def _items(self, view: RunView) -> list[Any]:
        hists = [i for i in view.signal(GRAD_HISTOGRAM) if len(i.series)]
        norms = [i for i in view.signal(GRAD_NORM) if len(i.series) and i.match.param is not None]
        if self.source is None:
            self.source = HIST if hists else (NORM if norms else None)
        return hists if self.source == HIST else norms if self.source == NORM else []


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def model_order(names: list[str]) -> list[int]:
    """Indices of ``names`` (first-appearance order), input side first; weights only when there are any."""
    order = list(range(len(names)))
    if len(names) > 2 and names == sorted(names):  # written in name order: model order is lost
        order.sort(key=lambda k: _natural_key(names[k]))
    weights = [k for k in order if is_weight(names[k])]
    return weights or order


def compared_layers(groups: Groups) -> list[int]:
    """Indices of the layers to compare, input side first: weights when there are any, else all."""
    return model_order(list(groups.layers))
