"""Per-layer gradient magnitudes, grouped by logged step, for the gradient rules.

Sources, per run: gradient histograms (RMS = sqrt(sum_squares / num), exact from the
HistogramProto) when the run's first logged gradient step has them (the choice waits
until that step is complete, so it does not depend on chunking), else per-parameter gradient-norm scalars
(``grad_norm/<p>``, Lightning's ``grad_2.0_norm/<p>``). Norms and RMS differ by √(size), so
a run is judged with one source only, and rules compare a layer with itself or ratios of
the same source (AUTOTRAINER compares first/last layer norms the same way).

Layers are ordered by first appearance in the stream, which is the order frameworks walk
``model.named_parameters()``. Some writers emit a step's tags sorted by name, which puts
``net.10`` before ``net.2``: when the appearance order is exactly the name order, the names
are sorted numerically instead (``net.2`` < ``net.10``). When
``*weight``/``*kernel`` parameters exist, only they are compared (bias gradients have their
own scale, and AUTOTRAINER compares kernels); PyTorch's recurrent ``weight_ih_l0``/``weight_hh_l0``
are weights too. ``bias_order`` gives the biases the same way (``exploding_gradients`` reads the
backward pass from them: a bias gradient is the back-propagated error itself, with no activation in it).
Histograms also give each layer's element count (``Groups.sizes``), so a rule can rebuild the
total gradient norm exactly.

A step's group of values is complete when every layer seen so far has reported at that step,
or when a point with a later step arrives (the first group always waits for that: only then
is the layer set known). Both depend only on the data, never on how it was chunked. A group
holds the layers that had appeared by its last point (by seq): a layer logged late joins from
its first step on and never changes how earlier steps are judged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
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
    seqs: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # seq of each group's last point
    sizes: tuple[float, ...] = ()  # element count per layer (histograms; NaN unknown)


Part = tuple[str, str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]
"""One gradient tag's new points: (layer, tag, seq, step, wall, value, is_histogram)."""


@lru_cache(maxsize=4096)
def _leaf(name: str) -> str:
    """The parameter's own name: ``rnn.weight_ih_l0`` -> ``weight_ih_l0``."""
    return re.split(r"[./]", name.lower())[-1]


@lru_cache(maxsize=4096)
def is_weight(name: str) -> bool:
    low = name.lower()
    # PyTorch recurrent layers: weight_ih_l0, weight_hh_l0, weight_hh_l0_reverse (and their biases apart).
    recurrent = re.fullmatch(r"weight_[ih]h_l\d+(_reverse)?", _leaf(name)) is not None
    return low.endswith(("weight", "kernel", "weight_orig")) or recurrent


@lru_cache(maxsize=4096)
def is_bias(name: str) -> bool:
    """``*.bias``, ``in_proj_bias``, recurrent ``bias_ih_l0``/``bias_hh_l0``; not a normalisation layer's
    shift only by name (``norm.bias`` is a bias too: its gradient is the back-propagated error as well)."""
    leaf = _leaf(name)
    return leaf.endswith("bias") or re.fullmatch(r"bias_[ih]h_l\d+(_reverse)?", leaf) is not None


def bias_of(weight: str) -> str:
    """The name the bias beside ``weight`` has (``net.3.weight`` -> ``net.3.bias``, ``rnn.weight_ih_l0`` ->
    ``rnn.bias_ih_l0``, ``attn.in_proj_weight`` -> ``attn.in_proj_bias``, Keras ``dense/kernel`` -> ``dense/bias``,
    spectral norm's ``weight_orig`` -> ``bias``), whether or not the model has one."""
    cut = max(weight.rfind("."), weight.rfind("/")) + 1
    head, leaf = weight[:cut], weight[cut:]
    for old, new in (("weight_orig", "bias"), ("kernel", "bias"), ("weight_", "bias_"), ("weight", "bias")):
        if old in leaf.lower():
            at = leaf.lower().rfind(old)
            return head + leaf[:at] + new + leaf[at + len(old):]
    return weight


class LayerGroups:
    """Turns a run's gradient points into complete per-step groups; state is JSON-ready."""

    def __init__(self) -> None:
        self.source: str | None = None
        self.layers: list[str] = []  # first-appearance order
        self.tags: list[str] = []
        self.layer_seq: list[int] = []  # seq of each layer's first point (ascending)
        self.pending: list[list[float]] = []  # [step, wall, layer index, value, seq] of the open group
        self.closed = False  # whether a group has closed yet (then the layer set is known)
        self.undecided: list[list[Any]] = []  # [seq, step, wall, value, layer, tag, is_histogram] before a source is chosen
        self.sizes: dict[str, float] = {}  # layer -> element count, from its histograms

    def state(self) -> dict[str, Any]:
        return {"source": self.source, "layers": self.layers, "tags": self.tags, "layer_seq": self.layer_seq,
                "pending": self.pending, "closed": self.closed, "undecided": self.undecided, "sizes": self.sizes}

    def load(self, data: dict[str, Any]) -> None:
        self.source, self.layers, self.tags, self.pending = data["source"], data["layers"], data["tags"], data["pending"]
        self.closed, self.undecided, self.layer_seq = data["closed"], data["undecided"], data["layer_seq"]
        self.sizes = dict(data.get("sizes", {}))

    def waiting_seq(self) -> float:
        """The smallest seq of a gradient point not yet in a returned group (inf: none waits). A point of
        another tag below it comes before every group still to come, in any chunking."""
        rows = [r[4] for r in self.pending] + [r[0] for r in self.undecided]
        return float(min(rows)) if rows else float("inf")

    def waiting_points(self) -> np.ndarray:
        """The sorted distinct seqs of the gradient points not yet in a returned group."""
        rows = [r[4] for r in self.pending] + [r[0] for r in self.undecided]
        return np.unique(np.asarray(rows, dtype=np.int64)) if rows else np.zeros(0, dtype=np.int64)

    def update(self, view: RunView) -> list[Groups]:
        """The groups this view completed, split where the layer set grew: each ``Groups`` holds
        only the layers that had appeared by its points (by seq), so a layer that shows up late
        does not change how earlier steps are judged, however the stream was chunked."""
        parts = self._parts(view)
        for item in view.signal(GRAD_HISTOGRAM):
            s = item.series
            if len(s) and np.isfinite(s.num[-1]):  # a parameter's element count does not change
                self.sizes[item.match.param or s.tag] = float(s.num[-1])
        others = _points(view, {p[1] for p in parts})  # every point of a non-gradient tag
        if self.source is None:
            parts = self._decide(parts, others)
        if not self.source:
            return []
        dropped = [p for p in parts if p[6] != (self.source == HIST)]  # the other source's points count as others
        parts = [p for p in parts if p[6] == (self.source == HIST)]
        if not parts and not self.pending:
            return []
        other_seq = np.concatenate([others[0], *[p[2] for p in dropped]])
        other_step = np.concatenate([others[1], *[p[3] for p in dropped]])
        parts.sort(key=lambda p: int(p[2][0]))  # layers in order of first appearance
        seq, step, wall, layer, value = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)], [np.zeros(0)], \
            [np.zeros(0, dtype=np.int64)], [np.zeros(0)]
        for name, tag, q, st, w, v, _ in parts:
            if name not in self.layers:
                self.layers.append(name)
                self.tags.append(tag)
                self.layer_seq.append(int(q[0]))
            seq.append(q), step.append(st), wall.append(w), value.append(v)
            layer.append(np.full(q.size, self.layers.index(name)))
        order = np.argsort(np.concatenate(seq), kind="stable")
        st, wt, ly, vl, sq = (np.concatenate(a)[order] for a in (step, wall, layer, value, seq))
        if self.pending:
            old = np.asarray(self.pending, dtype=float)
            st, sq = np.concatenate([old[:, 0].astype(np.int64), st]), np.concatenate([old[:, 4].astype(np.int64), sq])
            wt, ly, vl = np.concatenate([old[:, 1], wt]), np.concatenate([old[:, 2].astype(np.int64), ly]), np.concatenate([old[:, 3], vl])
        # A group ends where the step changes, or where another tag has moved on to a later step (the
        # writer has left that step: a log that ends right after it, e.g. a writer that died on an
        # overflow, still gets its last group judged). The last group stays open unless one of those
        # happened after it or every known layer has reported in it (the layer set is known once the
        # first group has closed).
        moved = np.zeros(st.size + 1, dtype=bool)  # moved[i]: another tag showed a later step just before point i
        if other_seq.size:
            at = np.searchsorted(sq, other_seq)
            later = (at >= 1) & (other_step > st[np.clip(at - 1, 0, None)])
            moved[at[later]] = True
        change = np.flatnonzero((np.diff(st) != 0) | moved[1:-1]) + 1
        last_start = int(change[-1]) if change.size else 0
        if moved[-1] or ((self.closed or change.size) and np.unique(ly[last_start:]).size == len(self.layers)):
            change, last_start = np.concatenate([change, [st.size]]), st.size
        self.pending = np.column_stack([st[last_start:], wt[last_start:], ly[last_start:], vl[last_start:],
                                        sq[last_start:]]).tolist()
        if last_start == 0:
            return []
        self.closed = True
        st, wt, ly, vl, sq = st[:last_start], wt[:last_start], ly[:last_start], vl[:last_start], sq[:last_start]
        starts = np.concatenate([[0], change[change < last_start]])
        gid = np.cumsum(np.isin(np.arange(st.size), starts)) - 1
        values = np.full((starts.size, len(self.layers)), np.nan)
        values[gid, ly] = vl  # a layer logged twice at one step keeps its last value
        # Steps that went back (a resume) start fresh groups; they are ordinary groups here.
        last_seq = np.maximum.reduceat(sq, starts)
        known = np.searchsorted(np.asarray(self.layer_seq), last_seq, side="right")
        cuts = np.flatnonzero(np.diff(known)) + 1
        out = []
        for a, b in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [known.size]])):
            k = int(known[a])
            sizes = tuple(self.sizes.get(name, float("nan")) for name in self.layers[:k])
            out.append(Groups(st[starts][a:b], wt[starts][a:b], values[a:b, :k], tuple(self.layers[:k]),
                              tuple(self.tags[:k]), self.source or "", last_seq[a:b].astype(np.int64), sizes))
        return out

    def _parts(self, view: RunView) -> list[Part]:
        """Per gradient tag of either source: ``(layer, tag, seq, step, wall, value, is_histogram)``;
        the value is the RMS for histograms (exact: sqrt(sum_squares / num)), else the norm."""
        out: list[Part] = []
        for item in view.signal(GRAD_HISTOGRAM):
            s = item.series
            if len(s):
                assert isinstance(s, HistogramSeries)
                with np.errstate(invalid="ignore", divide="ignore"):
                    rms = np.sqrt(s.sum_squares / s.num)
                out.append((item.match.param or s.tag, s.tag, s.seq, s.step, s.wall_time, rms, True))
        for item in view.signal(GRAD_NORM):
            s = item.series
            if len(s) and item.match.param is not None:
                out.append((item.match.param, s.tag, s.seq, s.step, s.wall_time, s.value, False))
        return out

    def _decide(self, parts: list[Part], others: tuple[np.ndarray, np.ndarray]) -> list[Part]:
        """Choose the source once the run's first logged step is complete (a later step arrived, in a
        gradient tag or any other): histograms if that step has any, else norms. Choosing on the first
        batch would depend on where a watcher's chunk happened to cut that step. Until then its points
        wait here."""
        if not parts and not self.undecided:
            return []
        seq = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
        step = np.concatenate([p[3] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
        hist = np.concatenate([np.full(p[2].size, p[6]) for p in parts]) if parts else np.zeros(0, dtype=bool)
        first_step = self.undecided[0][1] if self.undecided else int(step[np.argmin(seq)])
        later = step != first_step
        other_seq, other_step = others
        if self.undecided:
            beyond = other_step > first_step
        else:  # only points after the first gradient point can end its step
            beyond = (other_step > first_step) & (other_seq > seq.min())
        if not later.any() and not beyond.any():  # still only the first step: kept as rows
            self.undecided = sorted(self.undecided + [
                [int(q), int(st), float(w), float(v), p[0], p[1], p[6]]
                for p in parts for q, st, w, v in zip(p[2], p[3], p[4], p[5])])
            return []
        cut = min(seq[later].min() if later.any() else np.iinfo(np.int64).max,
                  other_seq[beyond].min() if beyond.any() else np.iinfo(np.int64).max)
        first_has_hist = any(r[6] for r in self.undecided) or bool(hist[(seq < cut)].any())
        self.source = HIST if first_has_hist else NORM
        waiting = [(r[4], r[5], np.array([r[0]]), np.array([r[1]]), np.array([r[2]]), np.array([r[3]]), r[6])
                   for r in self.undecided]
        self.undecided = []
        return waiting + parts


def _points(view: RunView, skip: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(seq, step)`` of the view's points outside the tags in ``skip`` (in no particular order)."""
    items = [i.series for i in view.scalars + view.histograms if i.tag not in skip and len(i.series)]
    if not items:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate([s.seq for s in items]), np.concatenate([s.step for s in items])


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def _input_first(names: list[str]) -> list[int]:
    order = list(range(len(names)))
    if len(names) > 2 and names == sorted(names):  # written in name order: model order is lost
        order.sort(key=lambda k: _natural_key(names[k]))
    return order


def model_order(names: list[str]) -> list[int]:
    """Indices of ``names`` (first-appearance order), input side first; weights only when there are any."""
    order = _input_first(names)
    weights = [k for k in order if is_weight(names[k])]
    return weights or order


def bias_order(names: list[str]) -> list[int]:
    """Indices of the biases among ``names``, input side first (empty when there are none)."""
    return [k for k in _input_first(names) if is_bias(names[k])]


def compared_layers(groups: Groups) -> list[int]:
    """Indices of the layers to compare, input side first: weights when there are any, else all."""
    return model_order(list(groups.layers))
