"""`divergence`: the loss (or the total gradient norm) went non-finite, jumped and stayed up, spiked
again and again, exploded, blew up, or sat an order of magnitude above its first value.

Watched tags: training loss, validation loss, total gradient norm. Their points are merged by
``seq`` into one episode per run (a NaN seen in the loss, the grad norm and the validation loss
is one alert); a later, more severe condition in the same episode is reported once as an
escalation (spike info → warning → critical). Every alert carries ``evidence["spikes"]``: how many
spikes the training loss has had so far.

* non-finite value → critical at that point (Keras TerminateOnNaN, Lightning ``check_finite``,
  SageMaker ExplodingTensor). A NaN grad norm beside a loss of exactly 0.0 at the same step is
  called out: HF Transformers' ``logging_nan_inf_filter`` hides NaN losses that way.
* spike (training loss): more than ``spike_sigma`` robust σ (1.4826·MAD) above the median of the
  previous ``spike_window`` finite values (OLMo-core's 6σ / 128 rule, with median/MAD so the spike
  itself does not inflate σ; non-finite values never enter the window), once ``spike_min_history``
  values exist, and at least ``spike_min_rise`` × |median| above it (the loss at least doubled).
  A spike is judged once it is known whether it came back down, at most ``recover_points`` points
  later; the alert is dated at the spike (``noticed_step``: where it was decided). Its *recovery
  level* is the smoothed level just before it plus max(``recover_fraction`` × the progress made so
  far, ``blowup_noise_sigma`` × the point-to-point noise), progress = the untrained loss − that level.
  The untrained loss is the larger of the tag's first value and a validation loss evaluated before
  training, where there is one: a batch-8 first loss (1.40) under an untrained model's 4.68 made a
  corrupted batch that knocked the loss back a third of the way "all the progress undone" (the ninth
  development batch's s5358, healthy; recovered within 30 steps). The explosion factor and the
  recurring spikes' share of the progress measure from the same loss.

  - back below the recovery level → **info**: one bad batch is not divergence. Measured on 31
    healthy real CPU trainings (digits MLP/CNN at batch 8–32, SGD+momentum, Adam, 20 % label
    noise, x0.1 step decay, SGDR, 3,000-step runs flat near 1e-5, a char-level transformer and
    digits MLPs hit by 4–6 corrupted batches): up to 312 spikes per run, 2.6–13,600x a near-zero
    median, every one back down after 1 point (99 %) or 2; none an explosion. (The rule before
    warned on 25 of the 31.)
  - back down, but the ``recur_count``-th spike within ``recur_window`` points that rose by at
    least ``recur_fraction`` × the progress made → **warning** (spikes recur). Healthy runs reach
    at most 4 such spikes in 50 points (batch-8 SGD, 4 seeds; corrupted batches 3); Adam at lr 3
    on softmax regression 15–16, at lr 0.3 on a tanh MLP (MSE) 8. Smaller spikes do not count:
    counting every spike, healthy near-zero losses reach 37 in 50 points.
    Sampled development runs (400): at ``recur_fraction`` 0.5 a healthy GRU (s0578, batch 14,
    near-zero loss with a heavy tail) reached 10 such spikes in 50 points at its end, and no
    labelled divergence was first caught by this warning; at 0.8 (each spike undoes most of the
    progress) healthy runs reach at most 3, so 6 keeps a 2x margin. And only a burst beyond the
    loss's own texture: as many counted spikes as the ``RECUR_HISTORY`` windows of points before
    the window would give by chance less than once in 10⁶ windows (Poisson at the share of them
    that rose as far above the level before them; ``CHANCE``). A batch-4 LSTM's bad batches
    (s6418) reach 14 in 50 at a steady rate.
  - all ``recover_points`` points after it above the recovery level (a non-finite point counts as
    up) → **warning** ("jump"), **critical** when the spike was an explosion (more than
    ``explosion_factor`` × max(|median|, |first value|) above the median: an order of magnitude
    worse than an untrained model). An explosion whose next point is still at explosion level (or
    non-finite) is decided there, and dated at an earlier spike not yet back down (a climb into an
    explosion). Healthy runs: 2 points above the level happen (once in 8 batch-8 runs at
    recover_fraction 0.5; at 0.3 also 3 points once), 3 never; LR jumps x4–x30 stay up for good.
    Where the loss's texture crosses the bar often (a share q of the ``RECUR_HISTORY`` windows of
    points before the spike rose as far above the level before them), more points: as many as q
    would put above it in a row less than once in 10⁴ (``JUMP_CHANCE``): q <= 4.6 % keeps 3, 6-7.5 %
    (batch 8, s5358) 4, 17 % (batch 4, s6418, 3 in a row 7-10 times per 500 points) 6.
    And at least ``recover_share`` of the points seen so far (2 %; at most ``recover_max``): an excursion
    shorter than that is no divergence (the sampled corpus's labeller and a person reading the curve
    ask an excursion to last 1 % of the *run* before it is even borderline; a live rule knows only the
    points seen, and early in a run 1 % of them is the 3-point floor), and waiting that long costs at
    most 2 % of the run in notice delay, never the alert's date. The seventeenth development batch's
    s13078 (healthy: SGD at lr 0.26, batch 14) was warned "jump" at step 1,753 of 4,630: in a burst of
    spikes its loss sat at its untrained level (1.3-2.4) for 5 points and was back at 0.5 at the sixth
    (1 % dropped it). The 26th batch's s17692 (healthy: a digits MLP, dropout 0.48, batch 328) was
    warned at step 276 of 988: a corrupted batch at 273, then the damaged model 4 points above half its
    progress (2.24, 2.25, 2.15, 2.19 over a bar of 2.03) and under 1.2 within 50 steps; 2 % asks 6.
    A level that stays up is still a jump, but one that stays just over the bar can dip under it within
    the 6 points (half to 90 % of the progress undone is the labeller's borderline band; a blow-up of
    more is the blow-up condition's). On the 2,009 development runs, 2 % against 1 %: divergence 526/548
    both, median alert-step delay 0.0 % and notice delay 0.16 % both, one healthy and three borderline
    runs warned less, none more.
* far above the first value → critical, dated at the first point that high: the smoothed training
  loss (median of the last ``smooth_window`` values) at ≥ ``first_factor`` × the tag's first finite
  value (an untrained model's loss) for ``first_patience`` consecutive points. A learning rate far
  too high from step 0 leaves no stable level to spike from. Measured: healthy runs peak at 1.02x
  their first value (warm-up bumps stay under 2x); Adam at lr 0.3–1 on MLPs, tanh MLPs, a
  transformer and an MSE regression, and SGD+momentum at lr 3, reach 11–4×10⁵x within 1–9 steps
  (critical at steps 1–9, noticed 2–7 points later). A resume keeps the first value.
* blow-up → critical, dated at its first point: the smoothed training loss stays above its best
  by more than ``blowup_fraction`` of the progress made (first value − best, at least
  ``blowup_floor`` × |first value|) and more than ``blowup_noise_sigma`` robust σ, for
  ``blowup_patience`` consecutive points. Catches a loss that climbs steadily from step 0 (its best
  is its first value). Where the untrained model was evaluated before training and scored higher,
  the first value is that evaluation (``_untrained``, as for spikes: a first batch can read low).
  The eighteenth development batch's s13456 (healthy: an MLP regression, first batch 2.35, the
  untrained model's validation loss 3.88) was critical at step 628: a corrupted batch knocked its
  loss from 0.07 to 1.2-2.4 for 22 points, half the progress from 2.35, a third of that from 3.88,
  and it was back under 0.5 within 50 steps. On the 893 development runs that was the only change.
* back at the untrained level → warning ("undone"), dated where it began to hold: the median of
  the last ``undone_window`` steps' values back within 10 % of the progress from the untrained
  level for ``undone_patience`` steps, after real progress (see ``_undone``; s0432, s0478, s0056);
  a loss logged every few steps on at least 3 points (s12658), an epoch-level loss on windows of
  ``EPOCH_UNDONE`` epochs (``_undone_windows``; s9778).
* an epoch-level loss at >= ``epoch_first_factor`` x its first epoch for ``epoch_first_patience``
  epochs → warning (``_epoch_above_first``; s0490).
* an epoch-level loss ``epoch_jump`` x the epoch before, with the next epoch still
  ``epoch_jump_confirm`` x it → warning, dated at the jump (``_epoch_jumps``; one bad epoch that is
  back at the next, s1296, is silent; so is a jump whose confirming epoch stays under ``epoch_jump_validation``
  x the validation loss before it, the run's own or its Keras validation sibling's: s17152's training
  loss jittered from float precision, 1.6e-15 -> 3.7e-3, while its validation loss held at 0.35-0.39;
  s64094's one corrupted batch lifted a 5e-9 epoch mean to 0.10 and the next epoch read 3.4e-5).
* the smoothed loss at >= ``pretrain_factor`` x a validation loss evaluated before training →
  warning (``_above_pretrain``; s0596: the first logged mean already held the blow-up).
* the smoothed loss at >= ``eval_factor`` x the latest validation loss logged before it → warning
  (``_above_eval``; s1716: the model blows up in train mode only).
* the validation loss at >= ``val_pretrain_factor`` x its evaluation before training while the
  training loss is back above its first value → warning (``_val_above_pretrain``; s2626: a loss
  logged too sparsely for the training-loss rules).
* A jump whose loss is still coming down (lowest point since the spike halfway back and among
  the last ``recover_points``) is judged once it stops falling, at most ``recover_max`` points
  later (``_judge``; s0766_healthy). Halfway from the excursion's peak: a spike right after a higher
  point is on that one's way down (s15734_healthy: corrupted batches at 41.5 and 68.6, then 7.31,
  5.25, 4.48, 4.12, 3.41 back under the recovery level of 3.79; halfway from 7.31 it was a jump).
* A warm restart of the learning rate (``base.warm_restart``: back up to its peak from half of it or
  less, as SGDR / ``CosineAnnealingWarmRestarts`` do; overfitting's test) starts the training loss's
  comparisons afresh (``_restart``): its windows, best and streaks, not its first value, its head (the
  untrained level), its point count nor its spike count. A restart knocks a converged model back by
  design; measured against the level before it, the knock is a jump, a blow-up and recurring spikes,
  and the episode it opens swallows a real divergence after it. On the sampled development corpus 4 of 69 SGDR runs were warned at a
  restart: s13428 (Adam: 0.09 -> 1.86 at the restart, back to 0.41 in 140 steps; warned at 602,
  critical at 607, and its real divergence, an lr jump x59 at 759 that took it to chance for good,
  fell in that episode), s13644, s10932 and s9972 (recurring spikes within 65 steps of one). A
  restart that sends the loss back to the untrained level for good is still found (``_undone``
  measures from the first value), and a non-finite loss always is.

Why these numbers: docs/analyzers.md (the tests/scenarios corpus and real CPU trainings).
"""

from __future__ import annotations

from math import exp, inf, isfinite, sqrt
from typing import Any, ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tbmon.analyzers.alerts import Alert
from tbmon.analyzers.base import BaseRule, RunView, ScalarContext, releases_contexts, Tagged, warm_restart
from tbmon.analyzers.numbers import fmt_number
from tbmon.analyzers.overfitting import Overfitting
from tbmon.analyzers.series import ScalarSeries, StepLevels
from tbmon.analyzers.signals import GRAD_NORM, LEARNING_RATE, TRAIN_LOSS, VAL_LOSS, epoch_level
from tbmon.analyzers.windows import (
    MAD_TO_SIGMA,
    Streak,
    first_gap,
    median_with,
    running_min,
    small_median,
    streak_point,
    streak_update,
    trailing_median,
    trailing_window_stats,
    window_stats_point,
)

KIND = "divergence"
STRIDE = 8  # window statistics are refreshed every 8 values (one median per block: 8x cheaper)
TRAIN_RECENT = 3  # training points whose median is the training loss's recent level (``_val_above_pretrain``)
# An epoch-level loss's "back at the untrained level": its level is the median of this many epochs, and holds for
# as many (``Divergence._undone_windows``).
EPOCH_UNDONE = 3
SMALL_CHUNK = 12  # a chunk of up to this many points per tag is judged a point at a time (break-even ~16)
INFO, WARNING, CRITICAL = 1, 2, 3  # episode levels; the alert's severity index is level - 1

_FIRST = np.zeros(1, dtype=np.int64)  # a one-point chunk's finite points: its first

# A pending spike, carried in the tag state until it is judged (at most ``recover_points`` later).
(_P_STEP, _P_WALL, _P_VALUE, _P_MED, _P_SIGMA, _P_PRE, _P_RECOVER, _P_EXPLODE, _P_EXPLOSION, _P_RECURRING,
 _P_UPS, _P_LOW, _P_LOW_AT, _P_NEED, _P_PEAK, _P_RIDING) = range(16)
# _P_RIDING: it rose while an older spike was still up (pending, or judged after it rose): a point of that
# excursion, read against the short smoothed level the excursion already moved; its "back down" is no news, so
# it is not noted (a warning or worse still is).

CHANCE = 1e-6
"""How rare a burst of large spikes must be under the loss's own texture before it is "spikes recur":
every counted spike tests a window, thousands in a long small-batch run. s6418_healthy (batch-4 LSTM)
at its learning-to-plateau turn had bursts of 10-13 counted spikes in 50 points against 2-2.6 expected
from 78 points (Poisson 3·10⁻⁶-3·10⁻⁵)."""
JUMP_CHANCE = 1e-4
"""The same for a run of points above a spike's recovery level (a jump), one test per spike. 10⁻⁶ kept a
steady 15 %-bad-batch loss 300,000 steps long free of false jumps, but the points it needs on moderately
noisy losses put the scenario corpus's live notice of divergence at a median 4.5 logging intervals, past its
ceiling of 4; at 10⁻⁴ that loss gets a false jump every 50,000-125,000 steps."""
RECUR_HISTORY = 10
"""Windows of points before a spike (before a burst's window) whose rises set the loss's own texture: 78
points misjudged a steady 15 %-bad-batch loss 300,000 steps long (a share from a few dozen points is too
noisy for a 10⁻⁶ tail); 500 points did not."""


def _share_above(ups: np.ndarray, ends: np.ndarray, bars: np.ndarray, window: int) -> np.ndarray:
    """For each end index: the share of the ``window`` points before it (as many as there are) that rose
    above the level before them (``ups``) by more than its bar. Rises, not values: during a descent every
    point is above a bar set from the level reached (s0766: 77 %), yet none is a spike."""
    out = np.zeros(ends.size)
    if window <= 0:
        return out
    full = np.flatnonzero(ends >= window + 1)  # whole windows, none reaching the first point (it rose from nothing)
    rows = sliding_window_view(ups, window) if full.size else None
    for block in np.array_split(full, max(1, full.size // 4096)):
        if block.size:
            out[block] = np.mean(rows[ends[block] - window] > bars[block, None], axis=1)
    for k in np.flatnonzero((ends > 1) & (ends < window + 1)).tolist():
        out[k] = float(np.mean(ups[1:ends[k]] > bars[k]))
    return out


def _poisson_tail(count: int, mean: float) -> float:
    """P(N >= count) for N ~ Poisson(mean)."""
    term = total = exp(-mean)
    for i in range(1, count):
        term *= mean / i
        total += term
    return max(0.0, 1.0 - total)


WARMUP_MIN_RISES = 3
"""A warm-up raises the lr over many logged points; one or two rises are a manual change
(a schedule step up, a resumed run with a new lr), and the message must not call that warm-up."""


def lr_advice(lr: float, peak: float, first: float, rises: int, rise_step: int) -> str:
    """One likely cause and fix, using the learning rate when the run logs it."""
    if np.isnan(lr):
        return "a learning rate that is too high is the usual cause: lower it or clip gradients"
    if np.isfinite(peak) and first > 0 and peak > 1.5 * first:
        if rises < WARMUP_MIN_RISES:
            return (f"after the lr was raised from {fmt_number(first)} to {fmt_number(peak)} at step {rise_step}; "
                    "try a smaller raise or gradient clipping")
        return f"after lr warm-up reached {fmt_number(peak)}; try a lower peak lr or gradient clipping"
    return f"at lr {fmt_number(lr)}; try a lower lr or gradient clipping"


def _mark(levels: np.ndarray, info: dict[int, dict[str, Any]], i: int, level: int, evidence: dict[str, Any]) -> None:
    """Raise point ``i`` to ``level`` with its evidence. A point keeps the first of equal levels, and
    a non-finite point (critical, no evidence) stays the non-finite alert it is."""
    if level > levels[i]:
        levels[i] = level
        info[i] = evidence


_TRAIN_FRESH = (("best", None), ("streak", Streak().to_json()), ("far", Streak().to_json()), ("spikes", 0),
                ("recur", []), ("pending", []), ("recent", []), ("head", []), ("undone_best", None),
                ("undone", Streak().to_json()), ("epoch_far", Streak().to_json()), ("pre_far", Streak().to_json()),
                ("eval_far", Streak().to_json()), ("epoch_jump", None), ("epoch_reference", None))


# What a tag's state keeps through a resume (``reset``); a warm restart (``_restart``) keeps more.
_KEPT_ON_RESUME = ("first", "spikes", "first_step", "gap")


def _train_state(st: dict[str, Any]) -> None:
    """A training-loss tag's state beyond its window: the keys it lacks, fresh (copies: lists change)."""
    for key, fresh in _TRAIN_FRESH:
        if key not in st:
            st[key] = list(fresh) if isinstance(fresh, list) else fresh


def _note_gap(st: dict[str, Any], steps: np.ndarray) -> None:
    """Keep a training-loss tag's logging interval (``windows.first_gap``) from its finite points' steps."""
    if st.get("gap") is not None or not steps.size:
        return
    if st.get("first_step") is None:
        st["first_step"] = int(steps[0])
    st["gap"], _ = first_gap(st["first_step"], steps)


def _latest_before(seqs: np.ndarray, values: np.ndarray, carried: float, seq: np.ndarray) -> np.ndarray:
    """For each of ``seq``: the value of the latest of this feed's points (``seqs``, ``values``) logged
    before it, or ``carried`` (the last one of earlier feeds) when none was."""
    before = np.searchsorted(seqs, seq) - 1
    return np.where(before >= 0, values[np.maximum(before, 0)] if values.size else carried, carried)


def _streak_start(streak: list[float]) -> dict[str, Any]:
    """Where a running streak (its JSON list) began: the evidence that dates an alert there."""
    return {"start_step": int(streak[1]), "start_wall": float(streak[2]), "start_value": float(streak[3])}


class Divergence(BaseRule):
    name: ClassVar[str] = "divergence"
    defaults: ClassVar[dict[str, Any]] = {
        "spike_window": 128,
        "spike_min_history": 16,
        "spike_sigma": 6.0,
        "spike_min_rise": 1.0,
        "recover_points": 3,
        "recover_max": 50,
        "recover_share": 0.02,
        "recover_fraction": 0.5,
        "recur_fraction": 0.8,
        "recur_count": 6,
        "recur_window": 50,
        "explosion_factor": 10.0,
        "first_factor": 10.0,
        "first_patience": 3,
        "epoch_jump": 10.0,
        "epoch_jump_confirm": 5.0,
        "epoch_jump_validation": 0.1,
        "epoch_first_factor": 2.0,
        "epoch_first_patience": 2,
        "pretrain_factor": 3.0,
        "eval_factor": 20.0,
        "val_pretrain_factor": 2.0,
        "smooth_window": 9,
        "blowup_fraction": 0.5,
        "blowup_floor": 1.0,
        "blowup_patience": 20,
        "blowup_noise_sigma": 3.0,
        "undone_window": 15,
        "undone_progress": 0.2,
        "undone_noise_sigma": 5.0,
        "undone_fraction": 0.9,
        "undone_patience": 10,
        "rearm": 200,
        "lr_raise": Overfitting.defaults["lr_raise"],  # one warm restart for both rules
    }

    def __init__(self, run: str, params: dict[str, Any]) -> None:
        super().__init__(run, params)
        self.lr = ScalarContext()
        self.loss = ScalarContext()
        self.alerted_tag = ""
        self._chunk_start: dict[str, int] = {}  # per training tag: its spike count before this feed
        # values kept per tag: the spike window's (and its stride's), or the texture behind a burst's window
        self._kept = max(self.p["spike_window"], (RECUR_HISTORY + 1) * self.p["recur_window"]) + STRIDE + 1
        # The validation loss evaluated before the first training point (HF evaluates at step 0):
        # [value, step, decided, before]; decided once the training loss has begun; ``before`` when
        # logged at a step before the first training point's (``_above_pretrain`` needs that; one at
        # the same step, logged first, is the shim's, and ``_val_above_pretrain`` takes it too).
        self.pretrain: list[Any] = [None, -1, False, False]
        # The latest finite, positive validation loss of the run's validation tag, as of the end of the
        # last feed, and this feed's: the reference ``_above_eval`` compares each training point with.
        self.evaluation: dict[str, Any] = {"tag": None, "value": None}
        self._evals: tuple[np.ndarray, np.ndarray] = (np.zeros(0, dtype=np.int64), np.zeros(0))
        self._sibling: StepLevels | None = None  # a Keras train run's validation sibling (this feed's view)
        # The run's training loss as ``_val_above_pretrain`` reads it: its first finite value, its last
        # TRAIN_RECENT - 1 finite values and their level as of the end of the last feed; this feed's levels.
        self.train_level: dict[str, Any] = {"first": None, "recent": [], "level": None}
        self._train_levels: tuple[np.ndarray, np.ndarray, float] = (np.zeros(0, dtype=np.int64), np.zeros(0), np.nan)

    def reset(self, tag: str) -> None:
        """A resume forgets the tag's windows and streaks but not the run's first value (its
        untrained loss: after a resume the first point is a trained one), its spike count nor its
        logging interval."""
        kept = {k: v for k, v in self.tags.get(tag, {}).items() if k in _KEPT_ON_RESUME}
        super().reset(tag)
        if kept:
            self.tags[tag] = {"hist": [], "n": 0, **kept}

    def _restart(self, tag: str) -> None:
        """A warm restart forgets what ``reset`` does but the ``head`` the untrained level comes from, how many
        points came ``before`` it (``n`` counts the windows' points) and the lr: the run goes on, its
        comparisons start afresh."""
        st = self.tags[tag]
        kept = {k: v for k, v in st.items() if k in (*_KEPT_ON_RESUME, "head", "lr")}
        self.tags[tag] = {"hist": [], "n": 0, "before": int(st.get("before", 0)) + int(st["n"]), **kept}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "lr": self.lr.state(), "loss": self.loss.state(), "alerted": self.alerted_tag,
                "pretrain": list(self.pretrain), "evaluation": dict(self.evaluation),
                "train_level": {**self.train_level, "recent": list(self.train_level["recent"])}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.lr.load(state["lr"])
        self.loss.load(state["loss"])
        self.alerted_tag = state["alerted"]
        self.pretrain = list(state.get("pretrain", [None, -1, False, False]))
        if len(self.pretrain) == 3:  # saved before same-step evaluations were kept: a kept one was before
            self.pretrain.append(self.pretrain[0] is not None)
        self.evaluation = dict(state.get("evaluation", {"tag": None, "value": None}))
        saved = state.get("train_level", {"first": None, "recent": [], "level": None})
        self.train_level = {**saved, "recent": list(saved["recent"])}

    @releases_contexts
    def feed(self, view: RunView) -> list[Alert]:
        self.lr.update(view.signal(LEARNING_RATE))
        self.loss.update(view.signal(TRAIN_LOSS))
        self._find_pretrain(view)
        self._find_evaluations(view)
        self._find_train_levels(view)
        self._sibling = view.sibling_validation
        self._chunk_start = {}
        parts: list[tuple[ScalarSeries, np.ndarray, dict[int, dict[str, Any]], np.ndarray | None]] = []
        for item in view.scalars:
            signal = item.match.signal
            watched = signal in (TRAIN_LOSS, VAL_LOSS) or (signal == GRAD_NORM and item.match.param is None)
            if watched and len(item.series):
                parts.append(self._loss_levels(item) if signal == TRAIN_LOSS else self._levels(item, train=False))
        if self._evals[1].size:
            self.evaluation["value"] = float(self._evals[1][-1])
        if not parts:
            return []
        spikes = self._spike_lookup(parts)
        # One episode per run across every watched tag.
        alerts = []
        for k, i in self.merged_events(KIND, "run", [(s.seq, s.step, lv) for s, lv, _, _ in parts], self.p["rearm"]):
            s, lv, info, counts = parts[k]
            count = int(counts[i]) if counts is not None else spikes(int(s.seq[i]))
            alerts.append(self._alert(s, i, int(lv[i]), info, count))
        if alerts:
            self.alerted_tag = alerts[-1].tag
        return alerts

    def _find_pretrain(self, view: RunView) -> None:
        """Keep the first validation loss when it was logged before the training loss began (by
        arrival; by step, at or before its first step): an evaluation of the untrained model, the
        reference ``_above_pretrain`` (strictly before) and ``_val_above_pretrain`` need."""
        if self.pretrain[2]:
            return
        train = [t.series for t in view.signal(TRAIN_LOSS) if len(t.series) and t.tag == self.loss.tag]
        t_seq = int(train[0].seq[0]) if train else None
        if self.pretrain[0] is None:
            for item in view.signal(VAL_LOSS):
                v = item.series
                if len(v) and (t_seq is None or int(v.seq[0]) < t_seq):
                    if np.isfinite(v.value[0]):
                        self.pretrain[:2] = [float(v.value[0]), int(v.step[0])]
                    break
        if train:
            first_step = int(train[0].step[0])
            if self.pretrain[0] is not None and not self.pretrain[1] <= first_step:
                self.pretrain[:2] = [None, -1]
            self.pretrain[2] = True
            self.pretrain[3] = self.pretrain[0] is not None and self.pretrain[1] < first_step

    def _untrained(self, first: float) -> float:
        """An untrained model's loss: the tag's first value, or the validation loss evaluated before
        training where that is higher (a first batch can read low)."""
        return first if self.pretrain[0] is None else max(first, self.pretrain[0])

    def _find_evaluations(self, view: RunView) -> None:
        """This feed's finite, positive points of the run's validation tag (the first one seen), by seq."""
        seq, value = np.zeros(0, dtype=np.int64), np.zeros(0)
        for item in view.signal(VAL_LOSS):
            v = item.series
            if self.evaluation["tag"] is None and len(v):
                self.evaluation["tag"] = v.tag
            if v.tag == self.evaluation["tag"]:
                keep = np.isfinite(v.value) & (v.value > 0)
                seq, value = v.seq[keep], v.value[keep]
        self._evals = (seq, value)

    def _find_train_levels(self, view: RunView) -> None:
        """This feed's recent training level by seq: the median of the run's training loss's last
        ``TRAIN_RECENT`` finite points (one minibatch never decides it), carried across feeds."""
        carried = np.nan if self.train_level["level"] is None else float(self.train_level["level"])
        seq, level = np.zeros(0, dtype=np.int64), np.zeros(0)
        for item in view.signal(TRAIN_LOSS):
            t = item.series
            if t.tag == self.loss.tag and len(t):
                finite = np.isfinite(t.value)
                seq, values = t.seq[finite], t.value[finite]
                recent = self.train_level["recent"]
                level = trailing_median(np.asarray(recent, dtype=float), values, TRAIN_RECENT)
                if values.size:
                    if self.train_level["first"] is None:
                        self.train_level["first"] = float(values[0])
                    self.train_level["recent"] = (recent + values[-(TRAIN_RECENT - 1):].tolist())[-(TRAIN_RECENT - 1):]
                    self.train_level["level"] = float(level[-1])
        self._train_levels = (seq, level, carried)

    def _train_level_before(self, seq: np.ndarray) -> np.ndarray:
        """The recent training level as of the latest training point logged before each of these seqs."""
        return _latest_before(*self._train_levels, seq)

    def _evaluation_before(self, seq: np.ndarray) -> np.ndarray:
        """The latest validation loss logged before each of these seqs (NaN where there is none yet)."""
        carried = np.nan if self.evaluation["value"] is None else float(self.evaluation["value"])
        return _latest_before(*self._evals, carried, seq)

    def episodes(self) -> list[dict[str, Any]]:
        return [{**e, "tag": self.alerted_tag} for e in super().episodes()]

    def _spike_lookup(self, parts: list[tuple[ScalarSeries, np.ndarray, dict, np.ndarray | None]]) -> Any:
        """Spikes so far of the run's training loss (its first training-loss tag) as of a given seq."""
        tag = self.loss.tag
        total = int(self.tags.get(tag, {}).get("spikes", 0)) if tag is not None else 0
        for s, _, _, counts in parts:
            if counts is not None and s.tag == tag:
                start = self._chunk_start.get(tag, total)

                def lookup(q: int, seq: np.ndarray = s.seq, cum: np.ndarray = counts, start: int = start) -> int:
                    j = int(np.searchsorted(seq, q, side="right")) - 1
                    return int(cum[j]) if j >= 0 else start

                return lookup
        return lambda q: total

    # --- per tag --------------------------------------------------------------------------------

    def _loss_levels(
        self, item: Tagged
    ) -> tuple[ScalarSeries, np.ndarray, dict[int, dict[str, Any]], np.ndarray | None]:
        """``_levels`` of a training loss, its comparisons started afresh (``_restart``) at each warm restart
        of the learning rate among its points."""
        s = item.series
        restarts = self._restarts(s)
        if not restarts.any():
            return self._levels(item, train=True)
        spikes_before = int(self.tags.get(s.tag, {}).get("spikes", 0))
        bounds = [0, *(int(i) for i in np.flatnonzero(restarts) if i > 0), len(s)]
        levels, info, counts = [], {}, []
        for a, b in zip(bounds, bounds[1:]):
            if restarts[a]:
                self._restart(s.tag)
            part = ScalarSeries(s.tag, s.seq[a:b], s.step[a:b], s.wall_time[a:b], s.value[a:b])
            _, lv, evidence, count = self._levels(Tagged(item.match, part), train=True)
            levels.append(np.asarray(lv, dtype=np.int64))
            counts.append(np.asarray(count, dtype=np.int64))
            info.update({a + k: v for k, v in evidence.items()})
        self._chunk_start[s.tag] = spikes_before
        return s, np.concatenate(levels), info, np.concatenate(counts)

    def _restarts(self, s: ScalarSeries) -> np.ndarray:
        """Which of a training loss's points come right after a warm restart of the learning rate (the lr
        at the point against the lr at the tag's point before); keeps the last point's lr for the next feed."""
        st = self.tags.setdefault(s.tag, {"hist": [], "n": 0})
        if self.lr.tag is None:
            return np.zeros(len(s), dtype=bool)
        lrs, peaks = self.lr.at_many(s.seq)
        before, peak_before = st.get("lr", [float("nan"), float("nan")])
        hit = warm_restart(np.concatenate([[before], lrs[:-1]]), np.concatenate([[peak_before], peaks[:-1]]), lrs,
                           self.p["lr_raise"])
        st["lr"] = [float(lrs[-1]), float(peaks[-1])]
        return hit

    def _levels(
        self, item: Tagged, *, train: bool
    ) -> tuple[ScalarSeries, np.ndarray, dict[int, dict[str, Any]], np.ndarray | None]:
        """Per point: 0 fine, else INFO / WARNING / CRITICAL, with evidence (and, for a training
        loss, the spikes counted so far at each point)."""
        s = item.series
        assert isinstance(s, ScalarSeries)
        p = self.p
        st = self.tags.setdefault(s.tag, {"hist": [], "n": 0})
        if train:
            _train_state(st)
        if len(s) == 1:
            one = self._one_point(s, st, train)
            if one is not None:
                return one
        elif len(s) <= SMALL_CHUNK:
            return self._point_by_point(item, train)
        levels = np.where(np.isfinite(s.value), 0, CRITICAL)
        info: dict[int, dict[str, Any]] = {}
        fidx = np.flatnonzero(levels == 0)
        fv = s.value[fidx]
        hist = np.asarray(st["hist"], dtype=float)
        counts = None
        if train:
            if st.get("first") is None and fv.size:
                st["first"] = float(fv[0])
            _note_gap(st, s.step[fidx])
            first = float("nan") if st.get("first") is None else float(st["first"])
            smooth = trailing_median(hist, fv, p["smooth_window"])
            noise = self._noise(st, hist, fv)
            counts = self._spikes(st, s, fidx, fv, hist, first, smooth, noise, levels, info)
            self._far_above_first(st, s, fidx, fv, hist, first, smooth, levels, info)
            validation = self._validation_before(s, fidx)
            if epoch_level(s.tag):
                self._epoch_jumps(st, s, fidx, fv, hist, validation, levels, info)
                self._epoch_above_first(st, s, fidx, fv, first, levels, info)
            if s.tag == self.loss.tag:
                if self.pretrain[3]:
                    self._above_pretrain(st, s, fidx, smooth, float(self.pretrain[0]), levels, info)
                self._above_eval(st, s, fidx, smooth, validation, levels, info)
            self._blowup(st, s, fidx, fv, self._untrained(first), smooth, noise, levels, info)
            self._undone(st, s, fidx, fv, hist, first, noise, levels, info)
            keep = p["smooth_window"] - 1  # (step, wall time) of the last points, to date far_above_first
            recent = st["recent"] + [[int(s.step[i]), float(s.wall_time[i])] for i in fidx[-keep:]] if keep > 0 else []
            st["recent"] = recent[-keep:] if keep > 0 else []
        elif s.tag == self.evaluation["tag"]:
            self._val_above_pretrain(st, s, fidx, levels, info)
        st["hist"] = np.concatenate([hist, fv])[-self._kept :].tolist()
        st["n"] += int(fv.size)
        return s, levels, info, counts

    def _point_by_point(
        self, item: Tagged, train: bool
    ) -> tuple[ScalarSeries, list[int], dict[int, dict[str, Any]], list[int] | None]:
        """``_levels`` of a small chunk as one-point chunks in a row: the same answers (the rule does
        not depend on how a stream is cut), without the vectorised set-up that a few points cannot
        pay back (a watcher polling a fast writer)."""
        s = item.series
        start = int(self.tags[s.tag].get("spikes", 0))
        levels: list[int] = []
        info: dict[int, dict[str, Any]] = {}
        counts: list[int] = []
        for i in range(len(s)):
            point = ScalarSeries(s.tag, s.seq[i : i + 1], s.step[i : i + 1], s.wall_time[i : i + 1], s.value[i : i + 1])
            _, lv, evidence, count = self._levels(Tagged(item.match, point), train=train)
            levels.append(int(lv[0]))
            if 0 in evidence:
                info[i] = evidence[0]
            if count is not None:
                counts.append(int(count[0]))
        if train:
            self._chunk_start[s.tag] = start  # the spike count before the chunk, as ``_spikes`` leaves it
        return s, levels, info, counts if train else None

    def _one_point(
        self, s: ScalarSeries, st: dict[str, Any], train: bool
    ) -> tuple[ScalarSeries, list[int], dict[int, dict[str, Any]], list[int] | None] | None:
        """``_levels`` of a one-point chunk (a live feed's) in plain Python: the same levels, evidence
        and state, without numpy's set-up per sub-rule. It takes a finite point of a per-step tag where
        no spike is found or pending and nothing is far above the first value (nearly every point);
        otherwise it returns None before changing the state (but the window caches, which the
        vectorised path then reuses) and the vectorised path judges the point."""
        p = self.p
        x = float(s.value[0])
        hist = st["hist"]
        cap = self._kept
        if not train:
            if not isfinite(x):
                return s, [CRITICAL], {}, None
            st["hist"], st["n"] = (hist + [x])[-cap:], st["n"] + 1
            one: list[int] = [0]
            evidence: dict[int, dict[str, Any]] = {}
            if s.tag == self.evaluation["tag"]:
                self._val_above_pretrain(st, s, _FIRST, one, evidence)
            return s, one, evidence, None
        if not isfinite(x) or st["pending"] or epoch_level(s.tag):
            return None
        first = x if st.get("first") is None else float(st["first"])
        smooth = median_with(hist, x, p["smooth_window"])
        if first > 0 and (smooth >= p["first_factor"] * first or st["far"][0]):
            return None
        n = st["n"]
        window, min_history = p["spike_window"], p["spike_min_history"]
        recent = hist[-(window + STRIDE + 1):]  # what the spike and noise windows reach (hist keeps the texture's too)
        st["spike_block"] = _, med, mad = window_stats_point(lambda: recent[-(window + STRIDE):], window, min_history,
                                                             offset=n, stride=STRIDE, last=st.get("spike_block"))
        rise, sigma = x - med, MAD_TO_SIGMA * mad  # (in ``_spikes``' order: the same float thresholds)
        if rise > p["spike_sigma"] * sigma and rise > p["spike_min_rise"] * abs(med):
            return None
        # Committed: no spike here, none pending.
        if hist:  # the point-to-point noise before it (``_noise``): robust sigma of first differences / sqrt 2
            st["noise_block"] = _, _, mad = window_stats_point(
                lambda: [b - a for a, b in zip(recent[:-1], recent[1:])], window, min_history, offset=n - 1,
                stride=STRIDE, last=st.get("noise_block"))
            noise = MAD_TO_SIGMA * mad / sqrt(2.0)
        else:
            noise, st["noise_block"] = float("nan"), st.get("noise_block") or []
        st["first"] = first
        _note_gap(st, s.step[:1])
        self._chunk_start[s.tag] = int(st["spikes"])
        levels, info = [0], {}
        step, wall = int(s.step[0]), float(s.wall_time[0])
        if s.tag == self.loss.tag:
            if self.pretrain[3]:
                self._above_pretrain(st, s, _FIRST, np.array([smooth]), float(self.pretrain[0]), levels, info)
            self._above_eval(st, s, _FIRST, np.array([smooth]), self._validation_before(s, _FIRST), levels, info)
        self._blowup_one(st, (step, wall, x), self._untrained(first), smooth, noise, levels, info)
        self._undone_one(st, s.tag, (step, wall, x), first, noise, levels, info)
        keep = p["smooth_window"] - 1
        st["recent"] = (st["recent"] + [[step, wall]])[-keep:] if keep > 0 else []
        st["hist"], st["n"] = (hist + [x])[-cap:], n + 1
        return s, levels, info, [int(st["spikes"])]

    def _blowup_one(self, st: dict[str, Any], point: tuple[int, float, float], initial: float, smooth: float,
                    noise: float, levels: list[int], info: dict[int, dict[str, Any]]) -> None:
        """``_blowup`` for one point (``point`` = its step, wall time, value) on Python floats."""
        p = self.p
        best = initial if st["best"] is None else float(st["best"])
        grown = smooth - best > p["blowup_fraction"] * max(initial - best, p["blowup_floor"] * abs(initial))
        holds = grown and smooth - best > p["blowup_noise_sigma"] * noise  # False while the noise is NaN
        streak = list(st["streak"])
        length, _ = streak_point(holds, streak, *point)
        st["streak"], st["best"] = streak, float(min(best, smooth))
        if length >= p["blowup_patience"]:
            _mark(levels, info, 0, CRITICAL, {"condition": "blowup", "best": best, "smoothed": smooth,
                                              **_streak_start(streak)})

    def _undone_one(self, st: dict[str, Any], tag: str, point: tuple[int, float, float], first: float, noise: float,
                    levels: list[int], info: dict[int, dict[str, Any]]) -> None:
        """``_undone`` for one point on Python floats (its docstring says why)."""
        p = self.p
        if not first > 0:
            return
        x, a = point[2], st["n"]
        w_head, w, patience, sigma = self._undone_windows(tag, st.get("gap"))
        head = st["head"]
        if len(head) < w_head:
            head = st["head"] = head + [x]
        seen = a + st.get("before", 0)
        untrained = max(small_median(head[: seen + 1] if seen + 1 < w_head else head), first)
        level = median_with(st["hist"], x, w)
        best = inf if st["undone_best"] is None else float(st["undone_best"])
        low = min(best, level if a >= w - 1 else inf)
        progress = untrained - best
        real = progress >= p["undone_progress"] * untrained and (
            not sigma or progress >= sigma * 1.2533 * noise / sqrt(w))  # False while the noise is NaN
        st["undone_best"] = float(low) if isfinite(low) else None
        streak = list(st["undone"])
        length, _ = streak_point(real and level - best >= p["undone_fraction"] * progress, streak, *point)
        st["undone"] = streak
        if length >= patience:
            _mark(levels, info, 0, WARNING, {"condition": "undone", "untrained": untrained, "best": best,
                                             "smoothed": level, **_streak_start(streak)})

    def _spikes(
        self,
        st: dict[str, Any],
        s: ScalarSeries,
        fidx: np.ndarray,
        fv: np.ndarray,
        hist: np.ndarray,
        first: float,
        smooth: np.ndarray,
        noise: np.ndarray,
        levels: np.ndarray,
        info: dict[int, dict[str, Any]],
    ) -> np.ndarray:
        """Find spikes, judge the pending ones (recovered or not), mark the levels; returns the
        run's spike count so far at each point of the chunk."""
        p = self.p
        found = np.zeros(len(s), dtype=np.int64)
        new: list[tuple[int, list[Any]]] = []  # (position in the chunk, pending entry)
        if fv.size:
            med, mad, st["spike_block"] = trailing_window_stats(
                hist, fv, p["spike_window"], p["spike_min_history"], offset=st["n"], stride=STRIDE,
                last=st.get("spike_block"),
            )
            sigma = MAD_TO_SIGMA * mad
            rise = fv - med
            with np.errstate(invalid="ignore"):
                spike = (rise > p["spike_sigma"] * sigma) & (rise > p["spike_min_rise"] * np.abs(med))
            js = np.flatnonzero(spike)
            if js.size:  # what a spike is judged by, computed at the spikes only (a live feed has none mostly)
                w = p["smooth_window"]
                before = float(np.median(hist[-w:])) if hist.size else float("nan")
                pre = np.where(js > 0, smooth[np.maximum(js - 1, 0)], before)  # smoothed level just before
                untrained = self._untrained(first)
                recover = pre + np.fmax(p["recover_fraction"] * np.fmax(untrained - pre, 0.0),
                                        p["blowup_noise_sigma"] * noise[js])
                explode = p["explosion_factor"] * np.fmax(np.abs(med[js]), abs(untrained))
                explosion = rise[js] > explode
                bar = p["recur_fraction"] * np.fmax(untrained - med[js], 0.0)
                counted = rise[js] >= bar
                trail = np.concatenate([trailing_median(hist[:0], hist, w), smooth])
                ups = np.concatenate([[0.0], np.concatenate([hist, fv])[1:] - trail[:-1]])  # each over the level before it
                ends = hist.size + js
                texture = _share_above(ups, ends - p["recur_window"], bar, RECUR_HISTORY * p["recur_window"])
                recurring = self._recurrence(st, js, counted, p["recur_window"] * texture)
                need = self._points_needed(_share_above(ups, ends, recover - pre, RECUR_HISTORY * p["recur_window"]),
                                           st.get("before", 0) + st["n"] + js)
                # Where its excursion peaked: the spike, or the point before it if that was higher (a spike on
                # the way down from a higher one is that one's descent; ``_judge``'s halfway is measured from it).
                previous = np.concatenate([hist[-1:] if hist.size else fv[:1], fv[:-1]])[js]
                peak = np.fmax(fv[js], previous)
                for k, j in enumerate(js):
                    i = int(fidx[j])
                    found[i] = 1
                    new.append((i, [int(s.step[i]), float(s.wall_time[i]), float(fv[j]), float(med[j]),
                                    float(sigma[j]), float(pre[k]), float(recover[k]), float(explode[k]),
                                    bool(explosion[k]), int(recurring[k]), 0, float(fv[j]), 0, int(need[k]),
                                    float(peak[k])]))
        chunk_start = int(st["spikes"])
        counts = chunk_start + np.cumsum(found)
        self._chunk_start[s.tag] = chunk_start
        st["spikes"] = int(counts[-1]) if counts.size else chunk_start
        carried = [(-1, e) for e in st["pending"]]
        st["pending"] = []
        judged: list[tuple[list[Any], str | None, int]] = []  # (spike, verdict or None if pending, where)
        for pos, entry in carried + new:
            if pos >= 0:  # (every older spike is judged by now, or still pending)
                entry.append(any(v is None or where > pos for _, v, where in judged))
            verdict, at = self._judge(s, pos, entry)
            if verdict is None:
                st["pending"].append(entry)
            else:
                evidence = self._verdict_evidence(entry, verdict, pos, at)
                if verdict == "explosion":  # an older spike not yet back down: the climb began there
                    for older, v, where in judged:
                        if v is None or (v == "recovered" and where > at) or (v != "recovered" and where >= at):
                            evidence.update(exploded_step=entry[_P_STEP], exploded_value=entry[_P_VALUE],
                                            start_step=older[_P_STEP], start_wall=older[_P_WALL],
                                            start_value=older[_P_VALUE])
                            break
                level = self._verdict_level(entry, verdict)
                if level > INFO or not (len(entry) > _P_RIDING and entry[_P_RIDING]):  # (or saved before)
                    _mark(levels, info, at, level, evidence)
            judged.append((entry, verdict, at))
        return counts

    def _points_needed(self, share: np.ndarray, seen: np.ndarray) -> np.ndarray:
        """How many points after each spike must stay above its recovery level to make a jump: at least
        ``recover_points``, and as many as put above that level in a row by chance less than once in
        1 / ``JUMP_CHANCE`` at the ``share`` of the points before the spike that rose as far, and
        ``recover_share`` of the ``seen`` points before it (at most ``recover_max``). A heavy-tailed
        small-batch loss crosses the bar often; a loss that jumped stays above it."""
        p = self.p
        with np.errstate(divide="ignore"):
            runs = np.ceil(np.log(JUMP_CHANCE) / np.log(np.clip(share, 0.0, 0.99)))
        runs = np.fmax(np.nan_to_num(runs, nan=0.0), np.ceil(p["recover_share"] * seen))
        return np.clip(runs, p["recover_points"], p["recover_max"]).astype(np.int64)

    def _recurrence(self, st: dict[str, Any], js: np.ndarray, counted: np.ndarray, expected: np.ndarray) -> np.ndarray:
        """For the spikes at finite indices ``js`` of the chunk: how many counted spikes (large ones)
        lie within the last ``recur_window`` points, itself included, when it is counted and more than
        the loss's own texture explains (``expected`` of them in a window: the share of the
        ``RECUR_HISTORY`` windows of points before the window that rose above the spike's counting
        bar); else 0. A burst counts when so many would come by chance less than once in 1 / ``CHANCE``
        (Poisson). A batch-4 LSTM
        (s6418_healthy) has 10-14 % of its points 80 % of the way back to the untrained loss from step
        600 to 2,000, 14 in 50 points at worst: as many as a real instability, at a rate that never
        changes. The recent counted spikes' absolute indices are kept in the state (at most a window's)."""
        window = self.p["recur_window"]
        absolute = st["n"] + js[counted]
        allidx = np.concatenate([np.asarray(st["recur"], dtype=np.int64), absolute])
        lo = np.searchsorted(allidx, absolute - window, side="right")
        hi = np.searchsorted(allidx, absolute, side="right")
        out = np.zeros(js.size, dtype=np.int64)
        need = self.p["recur_count"]  # below it the count warns of nothing: no test
        out[counted] = [n if n < need or _poisson_tail(n, mean) < CHANCE else 0
                        for n, mean in zip((hi - lo).tolist(), expected[counted].tolist())]
        if absolute.size:
            st["recur"] = [int(a) for a in allidx if a > absolute[-1] - window]
        return out

    def _judge(self, s: ScalarSeries, pos: int, e: list[Any]) -> tuple[str | None, int]:
        """Judge one spike (``pos`` = its position in the chunk, -1 if in an earlier chunk) on the
        points after it: ``(verdict, position)`` with verdict "recovered", "jump" or "explosion", or
        ``(None, -1)`` when the chunk ends first (the points seen and their lowest are kept in ``e``).

        Not back down after ``recover_points`` points is a jump, unless the loss is still coming
        down: its lowest point since the spike has undone at least half the jump (from the spike, or
        from the point before it when that was higher) and is one of the
        last ``recover_points`` (a loss that jumped to a new level and stays there never gets
        halfway back; a bad update
        being undone at a large batch: s0766_healthy, five corrupted batches at batch 405, fell
        4.48 → 2.71 → 2.31 → 2.21 → … and was back below the level 13 points later). Then the
        verdict waits, at most ``recover_max`` points; the alert is dated at the spike either way.
        """
        p = self.p
        k = int(e[_P_UPS])
        for idx in range(pos + 1, len(s)):
            x = float(s.value[idx])
            k += 1
            finite = np.isfinite(x)
            if finite and x <= e[_P_RECOVER]:
                return "recovered", idx
            if k == 1 and e[_P_EXPLOSION] and (not finite or x - e[_P_MED] > e[_P_EXPLODE]):
                return "explosion", idx  # still at explosion level: no need to wait
            if finite and x < e[_P_LOW]:
                e[_P_LOW], e[_P_LOW_AT] = x, k
            if k >= e[_P_NEED]:
                peak = e[_P_PEAK] if len(e) > _P_PEAK else e[_P_VALUE]  # (a spike pending in a state saved before)
                halfway = e[_P_LOW] - e[_P_PRE] <= 0.5 * (peak - e[_P_PRE])
                falling = finite and halfway and k - int(e[_P_LOW_AT]) < p["recover_points"] and k < p["recover_max"]
                if not falling:
                    return ("explosion" if e[_P_EXPLOSION] else "jump"), idx
        e[_P_UPS] = k
        return None, -1

    def _verdict_level(self, e: list[Any], verdict: str) -> int:
        if verdict == "explosion":
            return CRITICAL
        if verdict == "jump" or e[_P_RECURRING] >= self.p["recur_count"]:
            return WARNING
        return INFO

    def _verdict_evidence(self, e: list[Any], verdict: str, pos: int, at: int) -> dict[str, Any]:
        evidence: dict[str, Any] = {
            "median": e[_P_MED], "robust_sigma": e[_P_SIGMA], "level_before": e[_P_PRE],
            "recover_level": e[_P_RECOVER],
            "start_step": e[_P_STEP], "start_wall": e[_P_WALL], "start_value": e[_P_VALUE],
        }
        if verdict != "recovered":
            evidence["condition"] = verdict
        elif e[_P_RECURRING] >= self.p["recur_count"]:
            evidence.update(condition="recurring_spikes", recent_spikes=e[_P_RECURRING])
        else:
            # points until back down: counted from the spike, whichever chunk it was in
            evidence.update(condition="spike", exploded=e[_P_EXPLOSION],
                            recovered_after=(at - pos) if pos >= 0 else e[_P_UPS] + at + 1)
        return evidence

    def _far_above_first(
        self,
        st: dict[str, Any],
        s: ScalarSeries,
        fidx: np.ndarray,
        fv: np.ndarray,
        hist: np.ndarray,
        first: float,
        smooth: np.ndarray,
        levels: np.ndarray,
        info: dict[int, dict[str, Any]],
    ) -> None:
        """Critical when the smoothed loss stays at >= ``first_factor`` x the first value; dated at
        the first value that high among those the smoothed level first rose on."""
        p = self.p
        if not fv.size or not first > 0:
            return
        threshold = p["first_factor"] * first
        cond = smooth >= threshold
        if not cond.any() and st["far"][0] == 0:
            return
        # Where each point's high window began: the earliest value >= threshold among its window.
        w = p["smooth_window"]
        recent = st["recent"]
        n_old = min(len(recent), hist.size)
        old_v = hist[hist.size - n_old :]
        cat_v = np.concatenate([old_v, fv])
        old = recent[len(recent) - n_old :]
        cat_step = np.concatenate([np.array([r[0] for r in old], dtype=np.int64), s.step[fidx]])
        cat_wall = np.concatenate([np.array([r[1] for r in old], dtype=float), s.wall_time[fidx]])
        high = np.concatenate([np.zeros(w - 1, dtype=bool), cat_v >= threshold])
        rows = sliding_window_view(high, w)[n_old:]  # row j: the window ending at fv[j]
        earliest = np.arange(fv.size) + n_old - (w - 1) + np.argmax(rows, axis=1)
        earliest = np.where(rows.any(axis=1), earliest, np.arange(fv.size) + n_old)
        streak = Streak.from_json(st["far"])
        carried = (streak.start_step, streak.start_wall, streak.start_value)
        run_len, start = streak_update(cond, streak, cat_step[earliest], cat_wall[earliest], cat_v[earliest])
        st["far"] = streak.to_json()
        for j in np.flatnonzero(run_len >= p["first_patience"]):
            k = int(start[j])
            if k < 0:
                start_step, start_wall, start_value = carried
            else:
                e = int(earliest[k])
                start_step, start_wall, start_value = int(cat_step[e]), float(cat_wall[e]), float(cat_v[e])
            _mark(levels, info, int(fidx[j]), CRITICAL, {
                "condition": "far_above_first", "first": first, "smoothed": float(smooth[j]),
                "start_step": start_step, "start_wall": start_wall, "start_value": start_value})

    def _epoch_jumps(self, st: dict[str, Any], s: ScalarSeries, fidx: np.ndarray, fv: np.ndarray, hist: np.ndarray,
                     validation: np.ndarray, levels: np.ndarray, info: dict[int, dict[str, Any]]) -> None:
        """An epoch-level loss (Keras ``epoch_loss``, Lightning ``*_epoch``) is a mean over a whole epoch,
        so a rise of ``epoch_jump`` x in one epoch is no ordinary noise. It catches an lr far too high
        whose first epoch already averages the blow-up (the first value is no untrained level then).
        Sampled development runs in the Keras layout: healthy and overfitting runs rise at most 1.28x
        from one epoch to the next, a transient lr jump 3.0x, lr far too high 45-60x. But one corrupted
        batch in a converged run can dominate an epoch's mean (s1296: 0.00036 -> 0.124, 348x, then
        0.0013), so a jump waits one epoch for its verdict: warning, dated at the jump, if the next epoch
        still averages >= ``epoch_jump_confirm`` x the epoch before the jump. The epochs after a jump on
        the diverging development runs: 10x (s0166, whose earlier jump fell back), 15x (s1214), 34x
        (s0496), 44x (s0386), 61x (s0636), 25,000x (s1212); after s1296's one bad epoch, 3.6x.

        A ratio means nothing next to zero: a training set memorised to float precision (s17152: 1.6e-15)
        jitters by factors of 1e11 while the model holds. So where a validation loss was logged before the
        epoch before the jump (``_validation_before``), a jump whose confirming epoch (the one after it) stays
        under ``epoch_jump_validation`` x it is no divergence: the jump did not persist at any scale the model is
        judged on. On the 24 development runs in the Keras layout with a confirmed jump, the larger of the two
        epochs reads 0.45x-1e16x that validation loss on the 22 labelled divergence, not_learning or overfitting
        (an lr drift; the lowest 0.45 s6472, 0.47 s3406, 0.83 s0386), 0.034x on s9774 and 0.0023x on s17152
        (memorised regressions, labelled overfitting and healthy). It was the larger of the two until the 42nd
        batch's s64094 (labelled healthy: a regression memorised to 5e-9, whose epoch mean one corrupted batch lifted
        to 0.103, 0.2x the validation loss, and whose next epoch, 3.4e-5, was still 6,841x the one before); the
        confirming epoch alone reads 0.35x (s3406), 0.37x (s6472), 4.2x (s0636), 4.8x (s0496) and 10x (s4572) on
        the labelled runs rebuilt to measure it, 7e-5x on s64094."""
        pending = st["epoch_jump"]  # [step, wall, value, previous, reference] of a jump awaiting the next epoch
        previous = float(hist[-1]) if hist.size else float("nan")
        reference = st["epoch_reference"]  # the validation level as of the previous epoch (None: none logged)
        for j in range(fv.size):
            value = float(fv[j])
            if pending is not None:
                bar = self.p["epoch_jump_validation"] * pending[4] if len(pending) > 4 and pending[4] is not None else 0.0
                if value >= self.p["epoch_jump_confirm"] * pending[3] and value >= bar:
                    _mark(levels, info, int(fidx[j]), WARNING, {
                        "condition": "epoch_jump", "previous": pending[3], "next": value, "validation": pending[4],
                        "start_step": pending[0], "start_wall": pending[1], "start_value": pending[2]})
                pending = None
            if previous > 0 and value >= self.p["epoch_jump"] * previous:
                pending = [int(s.step[fidx[j]]), float(s.wall_time[fidx[j]]), value, previous, reference]
            previous = value
            reference = None if np.isnan(validation[j]) else float(validation[j])
        st["epoch_jump"], st["epoch_reference"] = pending, reference

    def _validation_before(self, s: ScalarSeries, fidx: np.ndarray) -> np.ndarray:
        """Per point: the latest validation loss logged before it, the run's own or else, for an epoch-level
        loss, its Keras validation sibling's (at an earlier step: the two runs share only the epoch as their
        step, and a sibling's point of the same epoch may reach a live watcher after this one)."""
        own = self._evaluation_before(s.seq[fidx])
        if self._sibling is None or not epoch_level(s.tag):
            return own
        return np.where(np.isnan(own), self._sibling.at_or_before(s.step[fidx] - 1), own)

    def _epoch_above_first(self, st: dict[str, Any], s: ScalarSeries, fidx: np.ndarray, fv: np.ndarray, first: float,
                           levels: np.ndarray, info: dict[int, dict[str, Any]]) -> None:
        """An epoch-level loss at >= ``epoch_first_factor`` x its first epoch's mean for
        ``epoch_first_patience`` epochs in a row: warning, dated at the first. The first epoch's mean
        already averages the untrained start, so whole epochs twice as bad are no noise; too few
        points for the smoothed per-step conditions (a 20-point blow-up is 20 epochs). Sampled
        development runs, every epoch-level training loss (34): two epochs in a row reach at most
        1.00x the first in runs without divergence; 2.2x, 3.4x and 5.8x in the diverging ones
        (s0636, s0496, s0490: an lr ramp, 1.43 -> 1.2 -> 5.45, 8.3, 9.3 in its last epochs)."""
        if not fv.size or not first > 0:
            return
        cond = fv >= self.p["epoch_first_factor"] * first
        streak = Streak.from_json(st["epoch_far"])
        carried = (streak.start_step, streak.start_wall, streak.start_value)
        run_len, start = streak_update(cond, streak, s.step[fidx], s.wall_time[fidx], fv)
        st["epoch_far"] = streak.to_json()
        for j in np.flatnonzero(run_len >= self.p["epoch_first_patience"]):
            k = int(start[j])
            start_step, start_wall, start_value = carried if k < 0 else (
                int(s.step[fidx[k]]), float(s.wall_time[fidx[k]]), float(fv[k]))
            _mark(levels, info, int(fidx[j]), WARNING, {
                "condition": "epoch_above_first", "first": first, "start_step": start_step,
                "start_wall": start_wall, "start_value": start_value})

    def _above_pretrain(self, st: dict[str, Any], s: ScalarSeries, fidx: np.ndarray, smooth: np.ndarray,
                        pretrain: float, levels: np.ndarray, info: dict[int, dict[str, Any]]) -> None:
        """The smoothed training loss at >= ``pretrain_factor`` x the validation loss evaluated before
        training (the untrained model's) for ``first_patience`` points: warning, dated at the first.
        Needed when the first logged training point is a mean that already holds the blow-up (HF logs
        the mean of 50 steps: s0596_lr_too_high, AdamW at lr 0.84, logs 32.2 first against 3.35
        untrained), so ``far_above_first`` has no untrained level. Sampled development runs with such
        an evaluation (33): without divergence the smoothed loss stays at <= 1.44x it for 3 points
        (healthy runs <= 1.00x); s0596 6.8x. Not an evaluation at the first training step (the shim's
        order): counted, it warned the out-of-sample s3226, whose loss leapt to 6x untrained for a few
        steps and then learnt to 2 % of it (``_val_above_pretrain`` takes one)."""
        if not pretrain > 0:
            return
        self._above_reference(st, "pre_far", s, fidx, smooth, np.full(smooth.size, pretrain), levels, info,
                              self.p["pretrain_factor"], "above_pretrain", "pretrain")

    def _above_eval(self, st: dict[str, Any], s: ScalarSeries, fidx: np.ndarray, smooth: np.ndarray,
                    evaluation: np.ndarray, levels: np.ndarray, info: dict[int, dict[str, Any]]) -> None:
        """The smoothed training loss at >= ``eval_factor`` x the latest validation loss logged before
        it for ``first_patience`` points: warning, dated at the first. The same model scores an order of
        magnitude better in evaluation than in training: it blows up in train mode (dropout compounding
        a large init: s1716, an 18-layer ReLU MLP at 1.75x He with dropout 0.48, trains at 2.3e7 -> 3.3e4
        while it evaluates at 2.0, with only a total gradient norm logged), which no rule that reads the
        training loss alone can see: it never rises and has no sane first value. Measured on the 775
        sampled development runs (largest ratio held for 3 training points in a row): healthy runs at
        most 5.7x (n = 260, 99th percentile 3.5x), borderline ones up to 21x, labelled runs up to 1e17x;
        20x keeps a 3.5x margin over the healthy runs. A Keras epoch loss reads its validation sibling's
        (``_validation_before``): on the development part's 386 Keras-layout runs, healthy ones reach at most
        4.2x (n = 124, the epoch mean against the model at the epoch's end), and three explode_init runs the
        training-loss rules missed (labelled divergence from epoch 1, a loss of 1e11-1e13 falling slowly while
        the model evaluates 100-10,000x lower: s15126, s15704, s15342) 870,000x, 5,600x and 2,300x."""
        self._above_reference(st, "eval_far", s, fidx, smooth, evaluation, levels, info,
                              self.p["eval_factor"], "above_eval", "evaluation")

    def _val_above_pretrain(self, st: dict[str, Any], s: ScalarSeries, fidx: np.ndarray, levels: Any,
                            info: dict[int, dict[str, Any]]) -> None:
        """The validation loss at >= ``val_pretrain_factor`` x its evaluation before training (the
        untrained model's) for ``first_patience`` evaluations, while the training loss's recent level is
        at or above its first value: warning, dated at the first. Worse than untrained on both sides is
        divergence, whatever the training loss's own rules saw: a loss logged every 50 steps (HF,
        s2626: 0.87 -> 6.2 -> 110 -> 51 -> 40 in the last 4 of 15 points) is too short for a spike
        window and a 9-point median, and a batch-5 GRU's loss (s2108: 0.02-3 from one step to the next)
        hides a validation loss that went from 0.17 to 2-4 against 0.72 untrained. Measured on the 935
        sampled development runs (largest value held for 3 evaluations, over the first): unlabelled runs
        at most 1.08x (healthy 1.00x, n = 293); overfitting runs up to 4.2x, but their training loss is
        far below its first value, which is what the second condition is for."""
        if self.pretrain[0] is None or self.train_level["first"] is None:
            return
        st.setdefault("val_far", Streak().to_json())
        values = s.value[fidx]
        back_up = self._train_level_before(s.seq[fidx]) >= float(self.train_level["first"])
        self._above_reference(st, "val_far", s, fidx, np.where(back_up, values, np.nan),
                              np.full(values.size, float(self.pretrain[0])), levels, info,
                              self.p["val_pretrain_factor"], "val_above_pretrain", "pretrain")

    def _above_reference(self, st: dict[str, Any], key: str, s: ScalarSeries, fidx: np.ndarray, smooth: np.ndarray,
                         reference: np.ndarray, levels: np.ndarray, info: dict[int, dict[str, Any]], factor: float,
                         condition: str, name: str) -> None:
        """The streak (``st[key]``) of the smoothed training loss at >= ``factor`` x ``reference`` (per
        point; NaN never holds) for ``first_patience`` points: warning, dated at the first."""
        if not smooth.size:
            return
        with np.errstate(invalid="ignore"):
            cond = smooth >= factor * reference
        streak = Streak.from_json(st[key])
        carried = (streak.start_step, streak.start_wall, streak.start_value)
        run_len, start = streak_update(cond, streak, s.step[fidx], s.wall_time[fidx], s.value[fidx])
        st[key] = streak.to_json()
        for j in np.flatnonzero(run_len >= self.p["first_patience"]):
            k = int(start[j])
            start_step, start_wall, start_value = carried if k < 0 else (
                int(s.step[fidx[k]]), float(s.wall_time[fidx[k]]), float(s.value[fidx[k]]))
            _mark(levels, info, int(fidx[j]), WARNING, {
                "condition": condition, name: float(reference[j]), "smoothed": float(smooth[j]),
                "start_step": start_step, "start_wall": start_wall, "start_value": start_value})

    def _noise(self, st: dict[str, Any], hist: np.ndarray, fv: np.ndarray) -> np.ndarray:
        """Point-to-point noise σ before each value: robust σ of first differences / √2.

        Differencing removes the trend, so a loss that climbs steadily does not pass for noise
        (a level-based MAD over a window that holds the climb would call it noise).
        """
        p = self.p
        diffs = np.diff(np.concatenate([hist, fv]))
        old = max(hist.size - 1, 0)
        _, mad, st["noise_block"] = trailing_window_stats(
            diffs[:old], diffs[old:], p["spike_window"], p["spike_min_history"], offset=max(st["n"] - 1, 0),
            stride=STRIDE, last=st.get("noise_block"),
        )
        noise = np.full(fv.size, np.nan)
        noise[fv.size - mad.size :] = MAD_TO_SIGMA * mad / np.sqrt(2.0)
        return noise

    def _blowup(
        self,
        st: dict[str, Any],
        s: ScalarSeries,
        fidx: np.ndarray,
        fv: np.ndarray,
        initial: float,
        smooth: np.ndarray,
        sigma: np.ndarray,
        levels: np.ndarray,
        info: dict[int, dict[str, Any]],
    ) -> None:
        """Blow-up levels and evidence, judged against the tag's first value ``initial``."""
        p = self.p
        if np.isnan(initial) or smooth.size == 0:
            return
        if st["best"] is None:
            st["best"] = initial
        sm, idx, noise = smooth, fidx, sigma
        best_prev = running_min(st["best"], np.concatenate([[st["best"]], sm[:-1]]))
        threshold = np.maximum(
            p["blowup_fraction"] * np.maximum(initial - best_prev, p["blowup_floor"] * abs(initial)),
            p["blowup_noise_sigma"] * noise,
        )
        with np.errstate(invalid="ignore"):
            cond = sm - best_prev > threshold  # False while the noise level is unknown (NaN)
        streak = Streak.from_json(st["streak"])
        carried = (streak.start_step, streak.start_wall, streak.start_value)
        run_len, start = streak_update(cond, streak, s.step[idx], s.wall_time[idx], s.value[idx])
        st["streak"] = streak.to_json()
        st["best"] = float(min(best_prev[-1], sm[-1]))
        for j in np.flatnonzero(run_len >= p["blowup_patience"]):
            k = int(start[j])
            start_step, start_wall, start_value = carried if k < 0 else (
                int(s.step[idx[k]]), float(s.wall_time[idx[k]]), float(s.value[idx[k]]))
            _mark(levels, info, int(idx[j]), CRITICAL, {
                "condition": "blowup", "best": float(best_prev[j]), "smoothed": float(sm[j]),
                "start_step": start_step, "start_wall": start_wall, "start_value": start_value})

    def _undone(
        self,
        st: dict[str, Any],
        s: ScalarSeries,
        fidx: np.ndarray,
        fv: np.ndarray,
        hist: np.ndarray,
        first: float,
        noise: np.ndarray,
        levels: np.ndarray,
        info: dict[int, dict[str, Any]],
    ) -> None:
        """Warning when training undid its progress: the loss is back at its untrained level.

        Untrained level: max(first value, median of the first ``smooth_window`` values) (one small
        batch can start low: s0056_rnn_gain's first batch read 0.46, its next eight 0.67-0.91).
        Level: median of the last ``undone_window`` values; progress = untrained level - best level so
        far (full windows only). It counts once it is ``undone_progress`` of the untrained level and
        ``undone_noise_sigma`` standard errors of that median (1.2533 x point noise / sqrt(window)),
        so the dips of a noisy start are no progress. The condition: level - best >=
        ``undone_fraction`` x progress for ``undone_patience`` consecutive points, dated at the first.

        Measured on the 400 sampled development runs (the largest undone fraction held for 10
        points): healthy runs reach at most 0.67 (s0534), overfitting / not-learning runs 0.64;
        runs that collapsed back to the untrained loss after real progress 1.01-1.61 (lr ramps
        s0432, s0478, a recurrent net s0056, late divergences). The blow-up condition misses them:
        it needs a rise of half the first value, which a loss that had made less than half its
        way down can never show by returning to where it began.
        """
        p = self.p
        if not fv.size or not first > 0:
            return
        w_head, w, patience, sigma = self._undone_windows(s.tag, st.get("gap"))
        head = st["head"]
        absolute = st["n"] + np.arange(fv.size)
        if len(head) < w_head:
            head = head + fv[: w_head - len(head)].tolist()
            st["head"] = head
        # Past its first ``w_head`` points a tag's untrained level is the median of the whole head.
        seen = st.get("before", 0) + absolute
        heads = [small_median(head[: a + 1]) for a in seen[:w_head].tolist() if a + 1 < w_head]
        level = trailing_median(hist, fv, w)
        seed = np.inf if st["undone_best"] is None else float(st["undone_best"])
        ref = np.full(fv.size, small_median(head))
        ref[: len(heads)] = heads
        ref = np.maximum(ref, first)
        full = np.where(absolute >= w - 1, level, np.inf)
        best = running_min(seed, np.concatenate([[seed], full[:-1]]))
        low = min(best[-1], full[-1])
        progress = ref - best
        with np.errstate(invalid="ignore"):
            real = (progress >= p["undone_progress"] * ref) & (
                (sigma == 0) | (progress >= sigma * 1.2533 * noise / np.sqrt(w)))
            cond = real & (level - best >= p["undone_fraction"] * progress)
        st["undone_best"] = float(low) if np.isfinite(low) else None
        streak = Streak.from_json(st["undone"])
        carried = (streak.start_step, streak.start_wall, streak.start_value)
        run_len, start = streak_update(cond, streak, s.step[fidx], s.wall_time[fidx], s.value[fidx])
        st["undone"] = streak.to_json()
        for j in np.flatnonzero(run_len >= patience):
            k = int(start[j])
            start_step, start_wall, start_value = carried if k < 0 else (
                int(s.step[fidx[k]]), float(s.wall_time[fidx[k]]), float(s.value[fidx[k]]))
            _mark(levels, info, int(fidx[j]), WARNING, {
                "condition": "undone", "untrained": float(ref[j]), "best": float(best[j]),
                "smoothed": float(level[j]), "start_step": start_step, "start_wall": start_wall,
                "start_value": start_value})

    def _undone_windows(self, tag: str, gap: int | None) -> tuple[int, int, int, float]:
        """``_undone``'s shape: (points the untrained level is a median of, points the level is a median
        of, points it must hold for, the noise σs progress must clear; 0: none).

        The windows are made for a loss logged every step (15 steps, held for 10) and count steps, not
        points: a tag logged every ``gap`` steps (``windows.first_gap``; HF Trainer's
        ``logging_steps``, Lightning's ``log_every_n_steps``) takes as many points as cover them, and at
        least 3 (the noise test, on standard errors of that median, still gates progress). In points, a
        run logged every 10 steps needed 250 steps back at its untrained level: the sixteenth development
        batch's s12658 (an lr ramp, HF-style, 32 logs) fell 2.6 -> 0.32 and sat at 2.3-2.5, its untrained
        level, for its last 70 steps, unwarned.

        An epoch-level tag (Keras ``epoch_loss``) is already a mean over a whole epoch: its untrained level
        is its first epoch (the first nine reach well into training), its level the median of
        ``EPOCH_UNDONE`` epochs, held for as many, and 20 % off an epoch mean is progress without a noise
        test (its point-to-point "noise" is the descent itself, and then the blow: it held the warning back
        ten epochs; the fourteenth development batch's s9778, a Keras CNN whose epoch loss fell 2.22 -> 1.41
        in five epochs, then sat at chance (2.32) for sixteen of its 31 after an lr raise x558)."""
        if epoch_level(tag):
            return 1, EPOCH_UNDONE, EPOCH_UNDONE, 0.0
        p = self.p
        every = max(1, gap or 1)
        return (-(-p["smooth_window"] // every), max(3, -(-p["undone_window"] // every)),
                max(3, -(-p["undone_patience"] // every)), p["undone_noise_sigma"])

    # --- the alert ------------------------------------------------------------------------------

    def _alert(self, s: ScalarSeries, i: int, level: int, info: dict[int, dict[str, Any]], spikes: int) -> Alert:
        p = self.p
        lr, _, peak = self.lr.at(int(s.seq[i]))
        advice = lr_advice(lr, peak, self.lr.first, *self.lr.rises_at(int(s.seq[i])))
        value = float(s.value[i])
        step, wall = int(s.step[i]), float(s.wall_time[i])
        evidence: dict[str, Any] = {"value": value, "lr": lr, **info.get(i, {}), "spikes": spikes}
        condition = evidence.get("condition")
        if "start_step" in evidence:  # decided later than where it began: dated where it began
            step, wall = evidence.pop("start_step"), evidence.pop("start_wall")
            evidence["value"] = value = evidence.pop("start_value")
            if step != int(s.step[i]):
                evidence["noticed_step"] = int(s.step[i])
        tag = s.tag
        if condition is None:  # only non-finite points carry no evidence of their own
            evidence["condition"] = "non_finite"
            message = f"{tag} is {fmt_number(value)} at step {step}"
            loss, loss_step, _ = self.loss.at(int(s.seq[i]))
            if tag != self.loss.tag and loss == 0.0 and loss_step == step:
                evidence["loss_hidden"] = True
                message += (
                    f" while {self.loss.tag} reads exactly 0.0: the trainer is hiding the NaN loss "
                    "(HF Transformers logging_nan_inf_filter)"
                )
            message += f" ({advice})"
        elif condition == "blowup":
            message = (
                f"{tag} blew up: its smoothed value rose from its best {fmt_number(evidence['best'])} to "
                f"{fmt_number(evidence['smoothed'])} and stayed up for {p['blowup_patience']} points since step {step} "
                f"({advice})"
            )
        elif condition == "above_pretrain":
            message = (
                f"{tag} has stayed at {fmt_number(p['pretrain_factor'])}x or more the validation loss evaluated before "
                f"training ({fmt_number(evidence['pretrain'])}, the untrained model's) since step {step} (smoothed: "
                f"{fmt_number(evidence['smoothed'])}): training made it far worse than untrained ({advice})"
            )
        elif condition == "above_eval":
            message = (
                f"{tag} has stayed at {fmt_number(p['eval_factor'])}x or more the latest validation loss "
                f"({fmt_number(evidence['evaluation'])}) since step {step} (smoothed: {fmt_number(evidence['smoothed'])}): "
                "the model does far worse in training than in evaluation, so training mode blows it up: dropout or "
                f"batch norm on a large initialisation, or the learning rate ({advice})"
            )
        elif condition == "val_above_pretrain":
            message = (
                f"{tag} has stayed at {fmt_number(p['val_pretrain_factor'])}x or more its evaluation before training "
                f"({fmt_number(evidence['pretrain'])}, the untrained model's) since step {step}, "
                f"{p['first_patience']} evaluations in a row, while {self.loss.tag} is back above its first value: "
                f"the model is worse than untrained ({advice})"
            )
        elif condition == "epoch_above_first":
            message = (
                f"{tag} has averaged {fmt_number(value / evidence['first'])}x its first epoch "
                f"({fmt_number(evidence['first'])}, which includes the untrained start) since step {step}, "
                f"{p['epoch_first_patience']} epochs or more in a row: training made whole epochs worse ({advice})"
            )
        elif condition == "undone":
            _, window, patience, _ = self._undone_windows(tag, self.tags.get(tag, {}).get("gap"))
            message = (
                f"{tag} is back at its untrained level: its smoothed value (median of {window} points) "
                f"rose from its best {fmt_number(evidence['best'])} to {fmt_number(evidence['smoothed'])}, near where it "
                f"began ({fmt_number(evidence['untrained'])}), and stayed there for {patience} points since "
                f"step {step}: training undid its progress ({advice})"
            )
        elif condition == "epoch_jump":
            message = (
                f"{tag} rose {fmt_number(value / evidence['previous'])}x in one epoch at step {step} "
                f"({fmt_number(evidence['previous'])} -> {fmt_number(value)}) and the next epoch was still "
                f"{fmt_number(evidence['next'] / evidence['previous'])}x: whole epochs averaged an order of magnitude "
                f"worse than the one before ({advice})"
            )
        elif condition == "far_above_first":
            message = (
                f"{tag} has stayed at {fmt_number(p['first_factor'])}x its first value {fmt_number(evidence['first'])} "
                f"(an untrained model's loss) or more since step {step} (smoothed: {fmt_number(evidence['smoothed'])}): "
                f"training made it far worse than untrained ({advice})"
            )
        else:
            med = evidence["median"]
            times = f"{fmt_number(value / med)}x its recent median {fmt_number(med)}" if med > 0 else (
                f"{fmt_number(value - med)} above its recent median {fmt_number(med)}")
            if "exploded_step" in evidence:
                message = (
                    f"{tag} jumped at step {step} to {fmt_number(value)} ({times}) and exploded to "
                    f"{fmt_number(evidence['exploded_value'])} at step {evidence['exploded_step']} ({advice})"
                )
            elif condition in ("jump", "explosion"):
                what = "exploded" if condition == "explosion" else "jumped"
                message = (
                    f"{tag} {what} at step {step} to {fmt_number(value)} ({times}) and did not come back down: "
                    f"the points after it stayed above {fmt_number(evidence['recover_level'])}, far above its level "
                    f"before {fmt_number(evidence['level_before'])} ({advice})"
                )
            elif condition == "recurring_spikes":
                message = (
                    f"{tag} spiked again at step {step} to {fmt_number(value)} ({times}): {evidence['recent_spikes']} "
                    f"spikes within {p['recur_window']} points that each undid {p['recur_fraction']:.0%} or more of the progress made "
                    f"({advice})"
                )
            else:
                back = evidence["recovered_after"]
                message = (
                    f"{tag} spiked at step {step} to {fmt_number(value)} ({times}) and was back down "
                    f"{back} point{'s' if back != 1 else ''} later: one bad batch is not divergence "
                    f"(spike {spikes} of this run; if spikes recur: {advice})"
                )
        return self.alert(kind=KIND, level=level - 1, step=step, wall_time=wall, tag=tag, message=message,
                          evidence=evidence)
