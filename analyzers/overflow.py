"""Non-finite training losses as points among a run's gradient groups: the gradient rules' overflow.

Why: a run that overflows often stops logging gradients at once. tensorboardX's ``add_histogram``
raises on values it cannot bin, so the writer dies on the overflow and only the loss, logged every
step, shows it (a norm writer goes on logging NaN, which the histogram source does not read). A
condition that held at the last gradient log can then never show at a second one, and a rule that
waits for ``patience`` consecutive logs says nothing about a run that held it until it broke:
a 30-layer ReLU MLP vanishing from initialisation (first/last layer RMS ratio 1.5e-12) logs one
gradient histogram, at step 0, and its loss is NaN from step 2 on; a 6-conv ReLU net at 2.2x He
explodes the same way. So ``exploding_gradients`` and ``vanishing_gradients`` let a non-finite
training loss logged after a gradient group *continue* a streak (with ``windows.continued_streak``
and ``windows.streak_due``), never begin one: NaN says nothing about which condition held.

What is kept here must not depend on how the stream was chunked (``tbmon watch`` feeds a point at a
time, ``tbmon report`` the whole run):

* a batch's non-finite losses with no gradient point between them count once (the first);
* a non-finite loss takes its place among the groups only once no gradient point before it is still
  waiting for its group to close (``LayerGroups.waiting_seq``: a later batch could otherwise order
  them differently); until then it is deferred, the deferred ones collapsed to one per gap between
  waiting gradient points, so the state stays bounded while the loss is NaN and the gradient writer
  is silent;
* the ready ones are merged with the groups in seq order as *virtual* points; a run of them with no
  group in between is one point, across batches too (``nan_run``), and none counts before the run's
  first group (``seen``, the caller's).

State (``state``/``load``) is JSON-ready: ``deferred`` and ``nan_run``.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import isfinite
from typing import Any

import numpy as np

from tbmon.analyzers.base import RunView
from tbmon.analyzers.layers import Groups, LayerGroups
from tbmon.analyzers.signals import GRAD_HISTOGRAM, GRAD_NORM, TRAIN_LOSS

Loss = list[float]
"""A non-finite training-loss point: ``[seq, step, wall]``."""


def train_loss(view: RunView) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The batch's training-loss points, every train-loss tag merged by seq: ``(seq, step, wall, value)``."""
    series = [item.series for item in view.signal(TRAIN_LOSS) if len(item.series)]
    if not series:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)
    if len(series) == 1:  # the usual case: one tag, already in seq order
        return series[0].seq, series[0].step, series[0].wall_time, series[0].value
    q = np.concatenate([s.seq for s in series])
    order = np.argsort(q, kind="stable")
    st, wt, v = (np.concatenate([getattr(s, f) for s in series])[order] for f in ("step", "wall_time", "value"))
    return q[order], st, wt, v


def nonfinite_losses(view: RunView, seq: np.ndarray, step: np.ndarray, wall: np.ndarray, value: np.ndarray
                     ) -> list[Loss]:
    """The non-finite points among ``train_loss(view)``, a run of them with no gradient point of the
    batch between them kept once (its first)."""
    if value.size == 1:  # a live feed's point: the same answer without numpy's set-up
        return [] if isfinite(value[0]) else [[int(seq[0]), int(step[0]), float(wall[0])]]
    bad = np.flatnonzero(~np.isfinite(value))
    if bad.size > 1:
        grads = [i.series.seq for i in (*view.signal(GRAD_NORM), *view.signal(GRAD_HISTOGRAM)) if len(i.series)]
        gap = np.searchsorted(np.sort(np.concatenate(grads)), seq[bad]) if grads else np.zeros(bad.size)
        bad = bad[np.concatenate([[True], gap[1:] != gap[:-1]])]
    return [[int(seq[i]), int(step[i]), float(wall[i])] for i in bad]


def nonfinite_train_losses(view: RunView) -> list[Loss]:
    """``nonfinite_losses`` of ``train_loss(view)``, for a rule that needs no more of the loss."""
    items = tuple(view.signal(TRAIN_LOSS))
    if not items:
        return []
    if len(items) == 1 and len(s := items[0].series) == 1:  # a live feed's point, in plain Python
        return [] if isfinite(s.value[0]) else [[int(s.seq[0]), int(s.step[0]), float(s.wall_time[0])]]
    return nonfinite_losses(view, *train_loss(view))


@dataclass(frozen=True, slots=True)
class Merged:
    """One batch's groups (each at its last point) and ready non-finite losses, in seq order."""

    steps: np.ndarray
    walls: np.ndarray
    seqs: np.ndarray
    virtual: np.ndarray  # a non-finite loss, not a group
    where: dict[int, np.ndarray]  # id(group) -> its groups' indices here

    def __len__(self) -> int:
        return int(self.steps.size)


class Overflow:
    """The non-finite training losses of one run, waiting and merged among its gradient groups."""

    def __init__(self) -> None:
        self.deferred: list[Loss] = []  # non-finite losses behind waiting gradient points
        self.nan_run = False  # the merged item sequence ended in a non-finite loss

    def state(self) -> dict[str, Any]:
        return {"deferred": self.deferred, "nan_run": self.nan_run}

    def load(self, data: dict[str, Any]) -> None:
        self.deferred = [list(r) for r in data.get("deferred", [])]
        self.nan_run = bool(data.get("nan_run", False))

    def ready(self, bad: list[Loss], layers: LayerGroups) -> list[Loss]:
        """Of the deferred and this batch's non-finite losses (call after ``layers.update``), those no
        waiting gradient point precedes; the others are deferred, one per gap between waiting points."""
        losses = self.deferred + bad
        if not losses:  # the usual case: a finite loss, nothing deferred
            return []
        settled = layers.waiting_seq()
        ready = [row for row in losses if row[0] < settled]
        later = [row for row in losses if row[0] >= settled]
        self.deferred = _collapse(later, layers.waiting_points()) if later else []
        return ready

    def saw_groups(self) -> None:
        """Groups came with no ready loss (what ``merge`` of them alone would do): a later loss begins a new run."""
        self.nan_run = False

    def merge(self, groups: list[Groups], ready: list[Loss], seen: bool) -> Merged:
        """The groups' points and the ready losses in seq order; a run of losses with no group in between
        once, and none before the run's first group (``seen``: one came in an earlier batch)."""
        raw: list[tuple[int, Groups | None, int, Loss | None]] = [
            (int(q), g, j, None) for g in groups for j, q in enumerate(g.seqs)]
        raw += [(int(r[0]), None, -1, r) for r in ready]
        raw.sort(key=lambda t: t[0])
        items, nan_run = [], self.nan_run
        for item in raw:
            if item[1] is not None:
                items.append(item)
                seen, nan_run = True, False
            elif seen and not nan_run:
                items.append(item)
                nan_run = True
        self.nan_run = nan_run
        steps = np.array([int(g.steps[j]) if g is not None else int(r[1]) for _, g, j, r in items], dtype=np.int64)
        walls = np.array([float(g.walls[j]) if g is not None else float(r[2]) for _, g, j, r in items], dtype=float)
        seqs = np.array([q for q, _, _, _ in items], dtype=np.int64)
        virtual = np.array([g is None for _, g, _, _ in items], dtype=bool)
        where = {id(g): np.flatnonzero([h is g for _, h, _, _ in items]) for g in groups}
        return Merged(steps, walls, seqs, virtual, where)


def _collapse(rows: list[Loss], waiting: np.ndarray) -> list[Loss]:
    """Waiting non-finite losses, one per gap between waiting gradient points (a run of them continues
    a streak once, however long)."""
    rows = sorted(rows)
    gap = np.searchsorted(waiting, [r[0] for r in rows])
    return [rows[0]] + [r for k, r in enumerate(rows[1:], 1) if gap[k] != gap[k - 1]]
