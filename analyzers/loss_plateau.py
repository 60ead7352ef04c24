"""`loss_plateau` (info): the training loss has stopped improving, with a learning-rate hint.

The run's first training-loss tag is cut into blocks of ``block`` consecutive finite points
(aligned on the tag's point count, so chunking cannot move them), each summarised by its median,
a level minibatch noise barely moves. An epoch-level tag (named ``*epoch*``: Keras ``epoch_loss``,
Lightning ``train_loss_epoch``) is already a mean over an epoch, one point each, so its blocks are
``epoch_block`` points: 50-point blocks would leave it unjudged for 400 epochs. Levels are kept in
at most ``2 × levels`` entries: when the list is full, neighbours merge and each entry spans twice as
many points, so memory stays bounded and the comparison scales with the run. After each new
entry, the median of the last ``window`` entries is compared with the median of the ``window``
before them (each side 1/8 to 1/4 of the run so far, at least ``window × block`` points): less than
``min_delta`` relative improvement, without a climb of more than ``max_rise`` (divergence's
business), is a plateau. Window medians rather than
each block against the best one: a noisy run that still improves (batch-8 SGD, block levels
jumping ±20 %) must not look flat, nor a flat run with noisy blocks look like progress; windows
that grow with the run keep a slow power-law decline from looking flat at every step count.

A stretch in which the run has not learned at all since its start (not 10 % below its start level,
as ``not_learning`` measures it with the same ``Tracker``) gets no note: that is ``not_learning``'s
warning, and a run must not get both for one stretch. Runs that rule cannot judge (a log that
begins mid-training, a loss that is not positive at its start) are noted as before.

One info note per plateau, dated where the earlier window ends (the last point progress was still
visible); another only once the loss has come down by ``renote_drop`` since the last note. The
hint reads the learning rate when the run logs it: a loss that has hardly moved from its first
level suggests too low a rate or vanishing gradients; a decayed rate means the schedule has
little left to give; an unchanged rate may need lowering.
"""

from __future__ import annotations

from math import isfinite
from statistics import median
from typing import Any, ClassVar

import numpy as np

from tbmon.analyzers.alerts import Alert
from tbmon.analyzers.base import BaseRule, RunView, ScalarContext, releases_contexts
from tbmon.analyzers.not_learning import NotLearning, Tracker
from tbmon.analyzers.numbers import fmt_number
from tbmon.analyzers.series import ScalarSeries
from tbmon.analyzers.signals import LEARNING_RATE, TRAIN_LOSS, epoch_level

KIND = "loss_plateau"
INFO = 0
HOLDS = 1  # episode level while the plateau lasts (the alert itself is info)


class LossPlateau(BaseRule):
    name: ClassVar[str] = "loss_plateau"
    defaults: ClassVar[dict[str, Any]] = {
        "block": 50,
        "epoch_block": 3,
        "window": 4,
        "levels": 16,
        "renote_drop": 0.1,
        "min_delta": 0.01,
        "max_rise": 0.1,
        "decayed_lr": 0.5,
        "barely_moved": 0.9,
    }

    def __init__(self, run: str, params: dict[str, Any]) -> None:
        super().__init__(run, params)
        self.lr = ScalarContext()
        self.followed: str | None = None
        # not_learning's view of the same loss: a stretch in which the run has not learned yet is that
        # rule's (a warning), so it gets no plateau note as well.
        self.start = Tracker(dict(NotLearning.defaults))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "lr": self.lr.state(), "followed": self.followed, "start": self.start.state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.lr.load(state["lr"])
        self.followed = state["followed"]
        self.start.load(state["start"])

    def reset(self, tag: str) -> None:
        super().reset(tag)
        if tag == self.followed:
            self.start.reset()

    @releases_contexts
    def feed(self, view: RunView) -> list[Alert]:
        self.lr.update(view.signal(LEARNING_RATE))
        losses = [i.series for i in view.signal(TRAIN_LOSS) if len(i.series)]
        if self.followed is None and losses:
            self.followed = min(losses, key=lambda s: int(s.seq[0])).tag
        return [a for s in losses if s.tag == self.followed for a in self._judge(s)]

    def _judge(self, s: ScalarSeries) -> list[Alert]:
        p = self.p
        st = self.tags.get(s.tag)
        if st is None:
            st = self.tags[s.tag] = {
                "pending": [], "levels": [], "span": 1, "carry": [0.0, 0], "first": None, "noted": None,
                "block": p["epoch_block"] if epoch_level(s.tag) else p["block"]}
        size = st["block"]
        inside = len(s) == 1 and len(st["pending"]) + 1 < size  # a live feed's point inside a block
        if not (inside and self.start.count_one(float(s.value[0]))):
            start = self.start.update(s)
        if inside:  # kept until its block is complete, nothing more
            if isfinite(s.value[0]):
                st["pending"] = st["pending"] + [float(s.value[0])]
            return []
        ok = np.flatnonzero(np.isfinite(s.value))
        values = np.concatenate([np.asarray(st["pending"], dtype=float), s.value[ok]])
        n_blocks = values.size // size
        ends = ok[size - len(st["pending"]) - 1 :: size][:n_blocks]  # each block's last point in `s`
        st["pending"] = values[n_blocks * size :].tolist()
        if n_blocks == 0:
            return []
        medians = np.median(values[: n_blocks * size].reshape(n_blocks, size), axis=1)
        alerts = []
        for m, e in zip(medians.tolist(), ends.tolist(), strict=True):
            st["first"] = m if st["first"] is None else st["first"]
            st["carry"] = [st["carry"][0] + m, st["carry"][1] + 1]
            if st["carry"][1] < st["span"]:
                continue
            self._add_level(st, st["carry"][0] / st["span"], int(s.step[e]), float(s.wall_time[e]))
            st["carry"] = [0.0, 0]
            f = self._plateau(st)
            if f is not None and start["unlearned"][np.searchsorted(start["index"], e)]:
                f = None  # the run has not learned since its start: that stretch is not_learning's
            # A new note only once the loss has come down by `renote_drop` since the last one, so a
            # slow power-law decline whose windows hover around `min_delta` gets one note, not one per wobble.
            fresh = f is not None and (st["noted"] is None or f["now"] < (1 - p["renote_drop"]) * st["noted"])
            holds = f is not None and (self.episode_open(KIND, s.tag) or fresh)
            due = self.events(KIND, s.tag, np.array([int(holds)]), np.array([int(s.step[e])]), 1).size
            if due and f is not None:
                st["noted"] = f["now"]
                alerts.append(self._alert(s, e, f))
        return alerts

    def _add_level(self, st: dict[str, Any], level: float, step: int, wall: float) -> None:
        """Append a level; at ``2 × levels`` entries merge neighbours, so each entry spans twice the points."""
        st["levels"].append([level, step, wall])
        if len(st["levels"]) == 2 * self.p["levels"]:
            pairs = zip(st["levels"][::2], st["levels"][1::2], strict=True)
            st["levels"] = [[(a[0] + b[0]) / 2, b[1], b[2]] for a, b in pairs]
            st["span"] *= 2

    def _plateau(self, st: dict[str, Any]) -> dict[str, Any] | None:
        p, w, levels = self.p, self.p["window"], st["levels"]
        if len(levels) < 2 * w:
            return None
        before = median(x[0] for x in levels[-2 * w : -w])
        now = median(x[0] for x in levels[-w:])
        if not before - p["min_delta"] * abs(before) < now <= before + p["max_rise"] * abs(before):
            return None
        points = w * st["span"] * st["block"]
        return {"before": before, "now": now, "since": levels[-w - 1], "first": st["first"], "points": points}

    def _alert(self, s: ScalarSeries, end: int, f: dict[str, Any]) -> Alert:
        _, since_step, since_wall = f["since"]
        step = int(s.step[end])
        lr, _, peak = self.lr.at(int(s.seq[end]))
        points = f["points"]
        message = (
            f"{s.tag} has stopped improving since about step {since_step}: its level (median) over the {points} points "
            f"up to step {step} is {fmt_number(f['now'])}, against {fmt_number(f['before'])} over the {points} before "
            f"(not {self.p['min_delta']:.0%} better); {self._hint(f['now'], f['first'], lr, peak)}"
        )
        return self.alert(
            kind=KIND, level=INFO, step=since_step, wall_time=since_wall, tag=s.tag, message=message,
            evidence={"level_before": f["before"], "level": f["now"], "first_level": f["first"], "noticed_step": step,
                      "learning_rate": lr, "peak_learning_rate": peak},
        )

    def _hint(self, now: float, first: float, lr: float, peak: float) -> str:
        at_lr = "" if not np.isfinite(lr) else f" (lr {fmt_number(lr)})"
        if first - now <= (1 - self.p["barely_moved"]) * abs(first):  # fell less than 10 %, also for a negative loss
            return (f"it has hardly moved from its first level {fmt_number(first)}: the learning rate may be too low"
                    f"{at_lr}, or the gradients vanish (log gradient histograms or norms to tell)")
        if np.isfinite(lr) and np.isfinite(peak) and peak > 0 and lr <= self.p["decayed_lr"] * peak:
            return (f"lr has already decayed to {fmt_number(lr)} ({lr / peak:.0%} of its peak {fmt_number(peak)}), so the "
                    "rest of the schedule is unlikely to add much: stopping here saves compute if this level is good "
                    "enough")
        if np.isfinite(lr):
            return (f"lr is {fmt_number(lr)}: a lower lr or a decay schedule (e.g. ReduceLROnPlateau) often resumes "
                    "progress; if it does not, capacity or data is the limit")
        return "if this level is good enough, stopping saves compute; if not, try a lower learning rate or a decay schedule"
