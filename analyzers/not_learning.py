"""`not_learning` (warning; info first when no cause is visible): the training loss has not improved
since the run began.

SageMaker Debugger's ``LossNotDecreasing`` and the Keras/Lightning plateau callbacks, for a run that
never learned at all: a 16-layer tanh MLP at default init whose first layer gets ~1e-6 of gradient,
SGD at lr 1e-6, a learning rate so high that the loss leaps and falls back to the untrained model's
loss. The run's first training-loss tag (by ``seq``) is followed:

* **Start level**: the median of the first ``start_points`` = 3 finite points; the first point alone
  (the untrained model's loss) when that median is already ``min_drop`` below it (a run that
  converged within its first logged points must be measured from before it did) or more than
  ``leap`` = 2 × above it (the loss leapt in its first steps: lr far too high).
* **Level**: the median of the last ``smooth`` = 9 finite points (divergence's smoothing window).
  The run has **learned**, for good, once its level is below the start by ``min_drop`` = 10 % plus
  ``learned_sigma`` = 3 standard errors of that median (1.25 σ/√9, σ the point-to-point noise over the
  last ``noise_window`` = 50 points: 1.4826 × MAD of first differences / √2), so minibatch noise never
  reads as learning. Measured (lowest 9-point level / start): cross-entropy runs that never learned
  0.94-1.0, a never-learning batch-32 regression 0.83 (its noise; the margin is 17 % there); every
  healthy run < 0.6.
* **Alert** at the first point where the run has not learned, its level is at most ``1 + max_rise`` =
  1.5 × the start (higher is a blow-up: divergence's ``blowup_fraction`` 0.5), the relative point
  noise is at most ``max_noise`` = 0.1 (a level cannot be called "within 10 %" when single points
  scatter more: RL-like objectives, small-batch regression), at least ``min_points`` = 10 points exist
  (the 9-point median is whole), and the run has had time, counted in steps since its first point
  (epoch-level tags, ``*epoch*`` such as Keras ``epoch_loss``, count points: their steps are epochs):

  - a **warning** after ``min_steps`` = 300 steps (``min_epochs`` = 10) when the logs show a cause
    (below): healthy runs with such a sign had all learned by step 64 (a 16-layer tanh net under Adam
    starts with vanishing gradients and learns); an early leap waits ``note_steps`` like no cause,
    since Adam's moments can settle (a sampled run that leapt sat at the untrained loss until ~750);
  - without a visible cause, an **info** note after ``note_steps`` = 1,000 (``note_epochs`` = 20) and
    a warning after ``late_steps`` = 4,000 (``late_epochs`` = 80): a late start is as likely. A GRU on
    a memory task sat at chance for 50-3,580 steps before it learned (24 seeds, median ~700), a deep
    tanh MLP for 416.
* One episode per run, dated at the loss's first point (the condition "not better than at the start"
  held from the start; ``noticed_step`` in the evidence says when it was seen).

Not judged, to keep healthy runs quiet:

* a log that does not begin at the start of training: a run resumed from a checkpoint into a new
  directory (steps from 10,000) has a flat loss because it learned before the log began. The first
  step must be at most ``origin_gaps`` = 2 logging intervals (its first step gap). A resume that
  appends to the same run (steps go back) keeps the original start;
* a loss that is not positive at its start (ELBO, negative log-likelihood of continuous data): its
  zero is arbitrary, so "10 % below the start" means nothing.

The likely cause, from what the run logs (evidence as of the alerting point, by ``seq``): the loss
leapt to ≥ ``leap`` × its start before falling back (lr far too high); the first weight layer's
gradient below ``grad_ratio`` × the last layer's (median of the last 5 logged steps; per-layer
magnitudes from ``layers.py``), vanishing_gradients' own bar (1e-3, AUTOTRAINER's β1) so the two rules
cannot disagree on what a vanishing gradient is. It was 1e-2 (never-learning deep tanh/sigmoid nets sat
at 1e-14 to 1e-3 throughout; healthy and slow-starting runs ≥ 0.04 once they learn) until the twentieth
development batch's s14682: a 12-layer tanh MLP under SGD with momentum at 0.0037 sat at chance for
1,150 of its 2,302 steps, then learned (2.3 -> 1.0), and was warned at step 300. Between 1e-3 and 1e-2
a late start and a run that never learns look alike (four of those on the development part, 0.0015-0.0067);
above 1e-3 the run gets the no-cause path (an info note after ``note_steps``); a learning rate whose highest logged value so far is ≤ ``low_lr`` = 1e-5 (the set rate, not a
schedule's annealed tail: a healthy warm-restart run annealed to 9e-6 was blamed on it; SGD at 1e-6 never
moved; Adam at 1e-5 took 2,600 steps to gain 10 %); every logged gradient exactly zero; weights that
barely move: the trainer shim's update ratios, per step and median over the weight tensors, never above
``min_update`` = 1e-5 so far (``update_size.py``; the slowest healthy shim-written development run reached
4.2e-5 by step 300, while 30 of 112 never-learners stayed below 1e-5: a learning rate too low for its
optimizer and model, which no fixed lr bar can say); otherwise data, labels or a bug.

``loss_plateau`` leaves such a stretch to this rule: it does not note a plateau while the run has
not learned (same start and level, ``Tracker`` below), so a run never gets both for one stretch.
"""

from __future__ import annotations

from math import isfinite
from statistics import median
from typing import Any, ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tbmon.analyzers.alerts import Alert
from tbmon.analyzers.base import BaseRule, RunView, ScalarContext, releases_contexts
from tbmon.analyzers.layers import HIST, Groups, LayerGroups, compared_layers
from tbmon.analyzers.numbers import fmt_number
from tbmon.analyzers.series import ScalarSeries
from tbmon.analyzers.signals import GRAD_HISTOGRAM, GRAD_NORM, LEARNING_RATE, TRAIN_LOSS, epoch_level
from tbmon.analyzers.update_size import UpdateSize
from tbmon.analyzers.vanishing_gradients import VanishingGradients
from tbmon.analyzers.windows import MAD_TO_SIGMA, first_gap

KIND = "not_learning"
WARNING = 1
NEVER = 2**62  # rearm: one warning per run
GRAD_KEEP = 5  # logged gradient steps kept for the vanishing-gradient hint


class Tracker:
    """Start level, smoothed level and "has it learned yet" of one loss tag; state is JSON-ready.

    ``update(series)`` returns per finite point of the chunk whether the run is still unlearned
    as of that point, depending only on points up to it (so on no chunking). ``loss_plateau`` keeps
    one too, to leave never-learned stretches to ``not_learning``.
    """

    def __init__(self, p: dict[str, Any]) -> None:
        self.p = p
        self.first: list[float] | None = None  # [step, wall, value] of the first finite point
        self.head: list[float] = []  # the first `start_points` finite values
        self.gap: int | None = None  # first positive step difference after the first point
        self.start: float | None = None
        self.leapt = False  # the first points' median was > leap × the first point
        self.learned = False
        self.count = 0  # finite points so far
        self.peak = float("-inf")  # highest level once the start is known
        self.hist: list[float] = []  # last `smooth - 1` finite values (dropped on a restart)

    def state(self) -> dict[str, Any]:
        return {"first": self.first, "head": self.head, "gap": self.gap, "start": self.start, "leapt": self.leapt,
                "learned": self.learned, "count": self.count, "peak": self.peak, "hist": self.hist}

    def load(self, data: dict[str, Any]) -> None:
        self.first, self.head, self.gap, self.start = data["first"], data["head"], data["gap"], data["start"]
        self.leapt, self.learned, self.count = data["leapt"], data["learned"], data["count"]
        self.peak, self.hist = float(data["peak"]), data["hist"]

    def reset(self) -> None:
        """A restart (steps went back): the start stays, the smoothing window starts afresh."""
        self.hist = []

    def origin(self) -> bool | None:
        """Whether the log begins at the start of training (None: not known yet)."""
        if self.first is None or self.gap is None:
            return None
        return self.first[0] <= self.p["origin_gaps"] * self.gap

    def judgeable(self) -> bool:
        """The start is known, positive, and the log begins at the start of training."""
        return bool(self.origin()) and self.start is not None and self.start > 0

    def count_one(self, value: float) -> bool:
        """``update`` for one point (a live feed's) once the run has learned for good, where it only
        counts finite points: whether that applied (False: call ``update``)."""
        if not (self.learned and self.gap is not None):
            return False
        self.count += isfinite(value)
        return True

    def update(self, s: ScalarSeries) -> dict[str, Any]:
        """Per finite point of ``s``: ``index`` (position in ``s``), ``level``, ``count``, ``unlearned``
        (the run has not learned as of this point; False when it cannot be judged), and ``noise``, a
        function giving the relative point noise at chosen points (computed only where a rule needs it)."""
        p = self.p
        ok = np.flatnonzero(np.isfinite(s.value))
        v, steps = s.value[ok], s.step[ok]
        n = v.size
        if self.learned and self.gap is not None:  # for good: nothing left to judge (a healthy run, cheaply)
            self.count += n
            return {"index": ok, "level": np.full(n, np.nan), "count": self.count - n + 1 + np.arange(n),
                    "unlearned": np.zeros(n, dtype=bool), "noise": lambda at: np.full(len(at), np.inf),
                    "peak": np.full(n, self.peak)}
        if self.first is None and n:
            self.first = [int(steps[0]), float(s.wall_time[ok[0]]), float(v[0])]
        gap_from = 0  # the first point of this chunk at which the first step gap (so the origin) is known
        if self.gap is None and n:
            self.gap, gap_from = first_gap(int(self.first[0]), steps)
        count = self.count + 1 + np.arange(n)
        k = p["start_points"]
        take = max(0, min(k - len(self.head), n))
        self.head += v[:take].tolist()
        if self.start is None and len(self.head) == k:
            first, med = self.head[0], float(np.median(self.head))
            self.leapt = first > 0 and med > p["leap"] * first
            fell = med < (1 - p["min_drop"]) * first  # already learning within the first points
            self.start = first if self.leapt or fell else med
        data = np.concatenate([np.asarray(self.hist, dtype=float), v])
        ends = data.size - n + np.arange(n) + 1  # exclusive end of each point's window in `data`
        level = _trailing_median(data, ends, p["smooth"])

        def noise(at: np.ndarray) -> np.ndarray:
            return _relative_noise(data, ends[at], level[at], p["noise_window"])

        unlearned = np.zeros(n, dtype=bool)
        peak = np.full(n, self.peak)
        if self.start is not None and self.start > 0 and n:
            known = count >= k
            near = np.flatnonzero(known & (level < (1 - p["min_drop"]) * self.start)) if not self.learned else []
            learned_at = n if not self.learned else -1
            # Significantly below: by min_drop plus `learned_sigma` standard errors of the window median
            # (1.25 σ / √smooth), so minibatch noise alone never reads as learning. Checked in slices: a
            # healthy run passes at its first candidates, and the noise is computed only there.
            for lo in range(0, len(near), 256):
                at = near[lo : lo + 256]
                margin = p["learned_sigma"] * 1.25 * noise(at) / np.sqrt(p["smooth"])
                hit = np.flatnonzero(level[at] < (1 - p["min_drop"] - margin) * self.start)
                if hit.size:
                    learned_at = int(at[hit[0]])
                    break
            unlearned = np.arange(n) < learned_at
            self.learned = self.learned or learned_at < n
            peak = np.maximum.accumulate(np.concatenate([[self.peak], np.where(known, level, -np.inf)]))[1:]
            self.peak = float(peak[-1])
            if not self.origin():
                unlearned[:] = False
            unlearned[:gap_from] = False
        self.count += n
        keep = max(p["smooth"], p["noise_window"]) - 1
        self.hist = data[-keep:].tolist() if keep > 0 else []
        return {"index": ok, "level": level, "count": count, "unlearned": unlearned, "noise": noise, "peak": peak}


def _trailing_median(data: np.ndarray, ends: np.ndarray, w: int) -> np.ndarray:
    """Median of ``data[end - w : end]`` for each end (fewer points at the very start)."""
    out = np.empty(ends.size)
    full = np.flatnonzero(ends >= w)
    if full.size:
        out[full] = np.median(sliding_window_view(data, w)[ends[full] - w], axis=1)
    for i in np.flatnonzero(ends < w):
        out[i] = np.median(data[: ends[i]])
    return out


def _relative_noise(data: np.ndarray, ends: np.ndarray, level: np.ndarray, w: int) -> np.ndarray:
    """Point-to-point noise over the ``w`` points up to each end, relative to ``level``: 1.4826 × MAD of
    the first differences / √2 (differences drop a trend); inf with fewer than 5 differences."""
    out = np.full(ends.size, np.inf)
    diffs = np.diff(data)  # diffs[j] = data[j + 1] - data[j]
    for lo in range(0, ends.size, 2048):
        e = ends[lo : lo + 2048]
        full = np.flatnonzero(e >= w)
        if full.size:
            win = sliding_window_view(diffs, w - 1)[e[full] - w]
            med = np.median(win, axis=1)
            out[lo + full] = np.median(np.abs(win - med[:, None]), axis=1)
        for i in np.flatnonzero((e < w) & (e >= 6)):
            win = diffs[: e[i] - 1]
            out[lo + i] = np.median(np.abs(win - np.median(win)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(out), MAD_TO_SIGMA * out / np.sqrt(2) / np.abs(level), np.inf)


class GradientHint:
    """The first/last weight-layer gradient ratio as known at any point of the run, by ``seq``.

    A logged step's values count from the first gradient point of a later step on (by then
    ``LayerGroups`` has closed that step in any chunking), so the hint does not depend on chunking.
    """

    def __init__(self) -> None:
        self.groups = LayerGroups()
        self.last_step: int | None = None
        self.pending: list[list[float]] = []  # [step, ratio, first, last] of closed steps not usable yet
        self.known: list[list[float]] = []  # [ratio, first, last] of the last GRAD_KEEP usable steps
        self._events: list[tuple[int, list[float]]] = []  # this batch: (seq usable from, [ratio, first, last])
        self._before: list[list[float]] = []

    def state(self) -> dict[str, Any]:
        return {"groups": self.groups.state(), "last_step": self.last_step, "pending": self.pending,
                "known": self.known}

    def load(self, data: dict[str, Any]) -> None:
        self.groups.load(data["groups"])
        self.last_step, self.pending, self.known = data["last_step"], data["pending"], data["known"]

    def update(self, view: RunView) -> None:
        self._before = [list(k) for k in self.known]
        self._events = []
        for g in self.groups.update(view):
            self.pending += self._rows(g)
        source = self.groups.source
        points: list[tuple[np.ndarray, np.ndarray]] = []
        for item in view.signal(GRAD_HISTOGRAM):
            if len(item.series) and source in (None, HIST):
                points.append((item.series.seq, item.series.step))
        for item in view.signal(GRAD_NORM):
            if len(item.series) and item.match.param is not None and source != HIST:
                points.append((item.series.seq, item.series.step))
        if not points:
            return
        seq = np.concatenate([q for q, _ in points])
        order = np.argsort(seq, kind="stable")
        seq, step = seq[order], np.concatenate([st for _, st in points])[order]
        prev = np.concatenate([[step[0] if self.last_step is None else self.last_step], step[:-1]])
        for i in np.flatnonzero(step != prev):
            closed = int(prev[i])
            while self.pending and int(self.pending[0][0]) != closed:
                self.pending.pop(0)  # a step the source never closed (should not happen)
            if self.pending:
                self._events.append((int(seq[i]), self.pending.pop(0)[1:]))
        self.last_step = int(step[-1])
        self.pending = self.pending[-8:]  # closed steps whose next step has not come yet: one, normally
        self.known = (self.known + [e for _, e in self._events])[-GRAD_KEEP:]

    @staticmethod
    def _rows(g: Groups) -> list[list[float]]:
        idx = compared_layers(g)
        if len(idx) < 2:
            return [[int(st), float("nan"), float("nan"), float("nan")] for st in g.steps]
        first, last = g.values[:, idx[0]], g.values[:, idx[-1]]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = first / last
        return [[int(st), float(r), float(a), float(b)] for st, r, a, b in zip(g.steps, ratio, first, last, strict=True)]

    def at(self, seq: int) -> list[list[float]]:
        """``[ratio, first, last]`` of the last GRAD_KEEP logged steps usable at ``seq``."""
        return (self._before + [e for q, e in self._events if q <= seq])[-GRAD_KEEP:]


class NotLearning(BaseRule):
    name: ClassVar[str] = "not_learning"
    defaults: ClassVar[dict[str, Any]] = {
        "start_points": 3,
        "smooth": 9,
        "min_drop": 0.1,
        "learned_sigma": 3.0,
        "max_rise": 0.5,
        "max_noise": 0.1,
        "noise_window": 50,
        "min_points": 10,
        "min_steps": 300,
        "note_steps": 1000,
        "late_steps": 4000,
        "min_epochs": 10,
        "note_epochs": 20,
        "late_epochs": 80,
        "origin_gaps": 2,
        "leap": 2.0,
        "grad_ratio": VanishingGradients.defaults["ratio"],
        "low_lr": 1e-5,
        "min_update": 1e-5,
    }

    def __init__(self, run: str, params: dict[str, Any]) -> None:
        super().__init__(run, params)
        self.lr = ScalarContext()
        self.grads = GradientHint()
        self.updates = UpdateSize()
        self.tracker = Tracker(self.p)
        self.followed: str | None = None
        self.stage = 0  # highest level alerted: 1 info, 2 warning (one episode per run)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "lr": self.lr.state(), "grads": self.grads.state(),
                "updates": self.updates.state(), "tracker": self.tracker.state(), "followed": self.followed,
                "stage": self.stage}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.lr.load(state["lr"])
        self.grads.load(state["grads"])
        if "updates" in state:  # a state saved before update sizes were read: none known yet
            self.updates.load(state["updates"])
        self.tracker.load(state["tracker"])
        self.followed = state["followed"]
        self.stage = state["stage"]

    def reset(self, tag: str) -> None:
        super().reset(tag)
        if tag == self.followed:
            self.tracker.reset()

    @releases_contexts
    def feed(self, view: RunView) -> list[Alert]:
        self.lr.update(view.signal(LEARNING_RATE))
        self.grads.update(view)
        self.updates.update(view)
        losses = [i.series for i in view.signal(TRAIN_LOSS) if len(i.series)]
        if self.followed is None and losses:
            self.followed = min(losses, key=lambda s: int(s.seq[0])).tag
        return [a for s in losses if s.tag == self.followed for a in self._judge(s)]

    def _judge(self, s: ScalarSeries) -> list[Alert]:
        p, t = self.p, self.tracker
        if len(s) == 1 and t.count_one(float(s.value[0])):  # learned for good (a healthy run's live feed):
            if isfinite(s.value[0]) and t.judgeable():  # only the count and the quiet episode move, as below
                self.quiet(KIND, s.tag, 1, NEVER)
            return []
        r = t.update(s)
        if r["index"].size == 0 or not t.judgeable():
            return []
        idx, level, count = r["index"], r["level"], r["count"]
        holds = r["unlearned"] & (level <= (1 + p["max_rise"]) * t.start)
        steps = s.step[idx]
        epoch = epoch_level(s.tag)

        def waited(steps_key: str, epochs_key: str) -> np.ndarray:
            if epoch:
                return count >= p[epochs_key]
            return (count >= p["min_points"]) & (steps - int(t.first[0]) >= p[steps_key])

        # Per point: 0, 1 (info: no cause visible, after `note_steps`) or 2 (warning: a visible cause
        # after `min_steps`, or none after `late_steps`). Causes are looked up by seq until the warning.
        levels = np.zeros(idx.size, dtype=int)
        causes: dict[int, tuple[str, bool, dict[str, Any]]] = {}
        if self.stage >= 2:
            levels = 2 * holds.astype(int)  # bookkeeping only: how long it has not learned
        else:
            holds &= waited("min_steps", "min_epochs")
            ready = np.flatnonzero(holds)
            holds[ready] &= r["noise"](ready) <= p["max_noise"]
            note, late = waited("note_steps", "note_epochs"), waited("late_steps", "late_epochs")
            for i in np.flatnonzero(holds).tolist():
                causes[i] = self._cause(int(s.seq[idx[i]]), float(r["peak"][i]), text=False)
                # A leap is a weaker sign than the others: Adam's moments can settle and the run recover.
                sure = causes[i][1] and (note[i] or not causes[i][2]["leapt"])
                levels[i] = 2 if sure or late[i] else int(note[i])
                if levels[i] == 2:
                    levels[i + 1 :] = 2 * holds[i + 1 :]
                    break
        alerts = []
        for i in self.events(KIND, s.tag, levels, steps, NEVER).tolist():
            self.stage = int(levels[i])
            cause = self._cause(int(s.seq[idx[i]]), float(r["peak"][i]), text=True)
            alerts.append(self._alert(s, int(idx[i]), float(level[i]), int(count[i]), cause, self.stage))
        return alerts

    def _alert(self, s: ScalarSeries, j: int, level: float, count: int, cause: tuple[str, bool, dict[str, Any]],
               stage: int) -> Alert:
        t = self.tracker
        first_step, first_wall, first_value = t.first
        step = int(s.step[j])
        hint, explained, evidence = cause
        epoch = epoch_level(s.tag)
        span, unit = (count, "epochs") if epoch else (step - int(first_step), "steps")
        if stage == 1:
            wait = self.p["late_epochs"] if epoch else self.p["late_steps"]
            hint += (f"; it may also be a late start (an RNN can sit at chance level for 1,000+ steps before it "
                     f"learns): a warning follows if it has not improved after {wait:,.0f} {unit}")
        message = (
            f"{s.tag} has not improved in {span:,} {unit}: its level {fmt_number(level)} (median of the last "
            f"{min(count, self.p['smooth'])} points) is within {self.p['min_drop']:.0%} of where it started "
            f"({fmt_number(t.start)}); {hint}"
        )
        return self.alert(
            kind=KIND, level=stage - 1, step=int(first_step), wall_time=float(first_wall), tag=s.tag, message=message,
            evidence={"start_level": t.start, "first_value": first_value, "level": level, "noticed_step": step,
                      "points": count, "cause_visible": explained, **evidence},
        )

    def _cause(self, seq: int, peak: float, text: bool) -> tuple[str, bool, dict[str, Any]]:
        """The likely cause as known at ``seq``: (hint, whether the logs show it, evidence); the hint
        is written only when ``text`` (the check runs at every candidate point, the text once)."""
        p, t = self.p, self.tracker
        lr, _, lr_peak = self.lr.at(seq)
        grads = self.grads.at(seq)
        ratios = [g[0] for g in grads if g[0] == g[0] and abs(g[0]) != float("inf")]
        ratio = float(median(ratios)) if ratios else float("nan")
        peak = max(peak, float(median(t.head)))
        leapt = t.leapt or peak >= p["leap"] * t.start
        update = self.updates.at(seq)
        evidence: dict[str, Any] = {"grad_ratio": ratio, "learning_rate": lr, "leapt": leapt, "peak_level": peak,
                                    "update_per_step": update}
        vanish = ratio < p["grad_ratio"]  # False for NaN
        # The rate the run was set to (its highest so far), not where a schedule has annealed it: a
        # cosine or step decay ends below low_lr in healthy runs (s0874: 1.2e-4 annealed to 9e-6).
        set_lr = lr_peak if lr_peak == lr_peak else lr
        low = set_lr <= p["low_lr"]
        zero = bool(grads and grads[-1][1] == 0 and grads[-1][2] == 0)
        frozen = update < p["min_update"]  # False for NaN: no update ratios logged
        explained = leapt or vanish or low or zero or frozen
        if not text:
            return "", explained, evidence
        at_lr = f" (lr {fmt_number(lr)})" if np.isfinite(lr) else ""
        if leapt:
            hint = (f"the loss leapt to {fmt_number(peak)} early on and fell back to where it started: the learning "
                    f"rate is probably far too high{at_lr}; lower it 10x, or use warm-up or gradient clipping")
        elif vanish:
            first, last = grads[-1][1], grads[-1][2]
            hint = (f"the gradients vanish: the first weight layer gets {fmt_number(ratio)}x the gradient of the last "
                    f"({fmt_number(first)} vs {fmt_number(last)}); use ReLU-family activations, residual connections, "
                    "normalisation or a better initialisation")
        elif low:
            hint = (f"the learning rate (at most {fmt_number(set_lr)} so far) is far too low to learn anything; "
                    "raise it (1e-4 to 1e-1)")
        elif zero:
            hint = ("every logged gradient is exactly zero: the weights get no signal (dead ReLUs, a detached graph, "
                    "frozen parameters)")
        elif frozen:
            hint = (f"the weights barely move: the median weight tensor has changed by at most {fmt_number(update)} "
                    f"of its norm per step so far (about 1e-3 is usual){at_lr}; the learning rate is far too low for "
                    "this model and optimizer, or the weights are frozen")
        else:
            hint = (f"no gradient or learning-rate cause is visible{at_lr}: check that inputs and labels match "
                    "(shuffled or constant labels), that the loss gets the model's output and the optimizer the "
                    "model's parameters, and that the learning rate is not too low for this optimizer")
        return hint, explained, evidence
