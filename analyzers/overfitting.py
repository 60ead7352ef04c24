"""`overfitting`: validation loss climbs meaningfully above its best while training loss keeps falling.

Judged once per evaluation (validation point), against the training loss of the same stretch
of training (median of the training points logged since the previous evaluation, at least the
last ``MIN_TRAIN_POINTS``: with evaluations a few steps apart, one or two noisy minibatch losses
made a healthy run's training loss "fall" by chance). An epoch-level training tag (Keras
``epoch_loss``, Lightning ``*_epoch``) is already a mean over the epoch's batches, one point per
evaluation: its level is the median of the last ``smooth_evals`` points, smoothed as the
validation loss is (ten points reached back ten epochs: the thirteenth development batch's
s9236, validation 0.30 -> 0.47 over six epochs while the training loss fell 0.26 -> 2e-7, kept a
training level of 0.28 for three of them and was missed). The
*best* is the lowest median of ``smooth_evals`` consecutive evaluations, dated at the lowest
evaluation of that window (the sampled corpus's labeller defines the minimum the same way: a
single lucky evaluation is not where the validation loss bottomed out; taken as the best, one
7-35 % below its neighbours dated the warning hundreds of steps before the real minimum on two
development runs, s0568 and s0730, and inflated a 9 % rise into 10.5 % on the healthy s0752). An
evaluation *counts* when all hold:

* the validation loss, smoothed the same way (median of the last ``smooth_evals``), is above
  its best (once a few evaluations follow it, the level around it: ``AROUND_SHARE``; the lowest of
  many noisy values is no level) by more than ``min_rise`` × |best| and by more than ``noise_sigma`` × the
  evaluation-to-evaluation noise (robust σ of the differences; of the second differences once
  there are ``MIN_CURVATURE_EVALS`` evaluations, so the steps of the descent before the minimum
  do not count as noise: on s0586 they made 3 σ 0.04 against a 30 % rise of 0.05 after a flat
  minimum, and the rule never fired), so a plateau or a noisy validation loss does not count.
  ``MIN_CURVATURE_EVALS`` is 9: 7 second differences, so the 3 that one jump spoils are a minority
  of the MAD's sample (it was 16, and a shim run with 12 evaluations, s0186, rising steadily from
  0.50 to 0.74 after its minimum while the training loss fell to 0.005, counted its descent as
  noise: 3 σ 0.18 against a 26 % rise of 0.13, one evaluation short of ``patience``). On the
  775-run development part, any value from 6 to 9 finds s0186 and warns no healthy run.
  A trend only widens a spread, and once ``NOISE_SINCE_BEST`` (5) evaluations are kept from the best
  on, the first differences of those are a second estimate that other trends spoil: a steady rise
  moves their median, not their spread, and the descent or a jump before the minimum is not among
  them, while a curve widens them. The noise is the smaller of the two. Alone, the second
  differences of all had let the first fall and one jump spoil 4 of 9 on the seventeenth batch's
  s13154 (validation 1.50 ->
  2.27 after a jump to 2.53, training 0.25 -> 1.6e-4): the MAD broke down and 3 σ flipped between
  0.14 and 1.28 at consecutive evaluations, never 3 in a row. Alone, the first differences since the
  best took a curve for noise (the scenario corpus's overfit_hf: validation up 0.60 -> 0.75 and back
  to 0.67 before climbing for good, noticed 40 steps later) and a validation loss that turned noisy
  after a blow at its minimum (development s3094) as its noise. On the 784 development runs
  of the change: overfitting 94 -> 96/100, no healthy or borderline run warned more; on the scenario
  corpus four overfitting runs noticed 5-15 steps sooner, none later; the eighteenth batch, drawn
  after it and scored before it was read: 23/23. Or the median of the last ``LONG_EVALS`` evaluations,
  all made since the best, is above it by ``min_rise`` and by ``LONG_SCALE`` × ``noise_sigma`` σ: a
  validation loss that stays up but noisily (after a blow to the model, on a small validation set) may
  never put three smoothed evaluations in a row over 3 σ though the level it stays at is plainly
  higher. Development s14910 (an lr jump x34 knocked validation 0.073 -> 0.36; while training
  re-fitted to 0.0002-0.002, a tenth of its level at the minimum, validation stayed at 0.08-0.24, its
  median 56 % above the best; σ 0.02) was never warned. On 753 development runs (the drawn overfit
  class, 150 healthy-class and 100 late_divergence seeds, the 28th batch): overfitting 298 -> 300/303
  (s14910, s17416), no healthy or borderline run warned more, 8 runs noticed 2-10 % of their run
  sooner, none later;
* the training loss is below its level at the best evaluation (a median of the points within
  half an evaluation interval on both sides of it, at least as far as its last 5 points (1 epoch
  mean) before it reach, once training has gone past it: the same scale as the level it is compared with;
  5 points of a batch-14 loss on s0474 gave 0.34 where the interval's median is 0.50) by
  ``min_train_fall`` × |level|
  (it keeps improving: the model fits the training data better while generalising worse; if
  both rise, that is divergence, not overfitting);
* the validation loss is above the training loss by ``min_gap`` × |train| (SageMaker's Overfit
  ratio, 0.1).

``patience`` consecutive counting evaluations raise one warning dated at the step where the
validation loss bottomed out. A warm restart (the learning rate over ``lr_raise`` x the previous
evaluation's, which had decayed to 1 / ``lr_raise`` of its peak, and back to at most ``lr_raise`` x that
peak) starts a new comparison: the best is forgotten (``_restart``), unless the validation loss was
already counting (a rise under way before the raise is none of its doing). A raise far past the peak is no
schedule (the seventh development batch's s4302: a decaying lr multiplied 117x, 42x its peak, then a
validation loss that stayed 3x its best while training re-fitted the data) and keeps the best. Keras
``train``/``validation`` sibling runs are judged together (the engine pairs them; the alert goes on their
parent directory) and matched by step.
"""

from __future__ import annotations

import copy
from bisect import bisect_left, bisect_right
from math import inf, isfinite, sqrt
from typing import Any, ClassVar

import numpy as np

from tbmon.analyzers.alerts import Alert
from tbmon.analyzers.base import BaseRule, RunView, ScalarContext, releases_contexts, warm_restart
from tbmon.analyzers.numbers import fmt_number
from tbmon.analyzers.overfitting_batch import NO_STEP, EvalPlan, noise_at, plan_evaluations
from tbmon.analyzers.series import seq_slice
from tbmon.analyzers.signals import LEARNING_RATE, TRAIN_LOSS, VAL_LOSS, epoch_level
from tbmon.analyzers.windows import MAD_TO_SIGMA, small_median

KIND = "overfitting"
WARNING = 1
MAX_PENDING = 256  # evaluations waiting for the training side to catch up (bounded memory)
MAX_TRAIN_POINTS = 2048  # training points kept per evaluation interval (median of the latest)
MIN_TRAIN_POINTS = 10  # the training level is a median of at least this many points (per-step losses)
# Evaluations kept per validation tag: the noise estimate's reach. 32, not 64: the noise that judges a rise is the
# texture the validation loss has now, not that of a bumpy descent long before (development s9668, a 16-layer
# ReLU MLP at 1.5x He: validation 1225 -> 2.45 -> 0.34 in steps of up to 0.4 over its first 33 evaluations kept
# 3 sigma at 0.11-0.35 for the rest of the run, and its rise to +31 % (0.105) while the training loss fell
# 0.03 -> 0.005 was never warned). On the 280-run development sample of this change: overfitting 28/29 -> 29/29,
# no healthy or borderline run warned more, live notice delay 27.0 % -> 23.7 % of the run.
MAX_EVALS = 32
DENSE_MIN_EVALS = 64  # a batch with at least this many evaluations of one tag is planned in numpy first
NOISE_SINCE_BEST = 5  # evaluations kept from the best on before their first differences are a noise estimate
# The long median (nine evaluations, three smoothing windows) is compared with the level around the best, itself a
# median of up to nine: their difference spreads sqrt(2) x 0.40 = 0.57 sigma under Gaussian noise, and 3 sigma for
# a median of three (0.67 sigma) against a fixed best is 4.5 of its spreads: 4.5 x 0.57 = 2.55 sigma (0.85 x 3). It
# was 0.6 (the nine against a fixed best), and carried most of the warnings on bench/noisy_plateaus.py's flat
# validation losses: 200 evaluations at 5/10/20 % noise 13/35/41 of 100 warned -> 7/16/20; on the development
# part's 417 overfitting runs the same 412 found, 12 noticed later (s17416 by 19 % of its run), none sooner.
LONG_EVALS = 9
LONG_SCALE = 0.85
MIN_CURVATURE_EVALS = 9  # evaluations before noise is judged on second differences (a jump spoils 3 of them)
# A rise is measured from the validation level around the best (``_settle_level``): the median of the evaluations
# within an eighth of those kept when the best was found, on each side of it (4 of 32), where that is at least
# ``MIN_REACH``. The lowest of ~90 smoothed evaluations of a flat validation loss with 5 % noise sits ~8 % under the
# level they share: measured from it, 49 of 100 such 100-evaluation runs (training still falling) were warned, from
# this level 2; at 60 evaluations and 10 % noise 48 -> 5 (bench/noisy_plateaus.py). An eighth, not a fixed 4: a best
# among few evaluations is an extreme of few, and a wide window there takes the descent before it or the rise after
# it for the level (a fixed 4 lost 7 of the 383 overfitting runs of the development part built here, s19788's 13
# evaluations among them). Not one on each side either: the median of three centred on a lucky evaluation is noise of
# its own (the 36th batch's s28182: 0.32, 0.22, 0.32 around a minimum the plateau after it sat 0.03-0.06 above).
AROUND_SHARE = 8
MIN_REACH = 2


def _differences(values: list[float]) -> list[float]:
    return [b - a for a, b in zip(values, values[1:])]


def evaluation_noise(values: list[float], best: int) -> float | None:
    """The evaluation-to-evaluation noise (a robust σ) of the kept validation ``values``, the best at
    index ``best``; None with fewer than 4 differences to judge it by. A trend only widens a spread, and
    each estimate is blind to a different one: the first differences since the best (once there are
    ``NOISE_SINCE_BEST`` evaluations from it on) to a steady rise, the second differences of all (once
    there are ``MIN_CURVATURE_EVALS``) to the descent's curve; the noise is the smaller of those there
    are, else the first differences of all."""
    since = values[best:]
    samples = []
    if len(since) >= NOISE_SINCE_BEST:
        samples.append((_differences(since), sqrt(2.0)))  # var(e1 - e0) = 2 σ²
    if len(values) >= MIN_CURVATURE_EVALS:
        samples.append((_differences(_differences(values)), sqrt(6.0)))  # var(e2 - 2 e1 + e0) = 6 σ²
    if not samples:
        samples.append((_differences(values), sqrt(2.0)))
    spreads = [_robust_sigma(diffs) / scale for diffs, scale in samples if len(diffs) >= 4]
    return min(spreads) if spreads else None


def level_around(values: list[float] | np.ndarray, at: int, reach: int, smoothed_best: float) -> float:
    """The level a rise is measured from: the median of ``values`` within ``reach`` of index ``at`` (the best's
    lowest evaluation), never below the smoothed best (``Overfitting._settle_level``)."""
    return max(smoothed_best, float(small_median(list(values[max(0, at - reach) : at + reach + 1]))))


def _robust_sigma(values: list[float]) -> float:
    centre = small_median(values)
    return MAD_TO_SIGMA * small_median([abs(d - centre) for d in values])


class _Train:
    """One training tag's points of this batch as lists, and how far the walk has added them."""

    __slots__ = ("cursor", "seq", "step", "tag", "value")

    def __init__(self, series: Any) -> None:
        self.tag = series.tag
        self.seq, self.step, self.value = series.seq.tolist(), series.step.tolist(), series.value.tolist()
        self.cursor = 0


class Overfitting(BaseRule):
    name: ClassVar[str] = "overfitting"
    scope: ClassVar[str] = "experiment"
    defaults: ClassVar[dict[str, Any]] = {
        "patience": 3,
        "smooth_evals": 3,
        "min_rise": 0.1,
        "noise_sigma": 3.0,
        "min_train_fall": 0.1,
        "min_gap": 0.1,
        "lr_raise": 2.0,
        "rearm": 10,
    }

    def __init__(self, run: str, params: dict[str, Any]) -> None:
        super().__init__(run, params)
        self.alerted_minimum: dict[str, int] = {}  # validation tag → step of the minimum last reported
        self.lr = ScalarContext()
        self._forget()

    def _forget(self) -> None:
        """Drop what is derived from ``self.tags`` (recomputed when next needed): tags came or went."""
        self._val_keys: list[str] | None = None  # sorted "val:" keys
        self._pending_lists: list[list[list[Any]]] = []  # their waiting evaluations, in that order
        self._train_keys: list[str] = []  # "train:" keys
        self._train_of: dict[str, str | None] = {}  # validation tag → its training tag
        self._trim_upto: float | None = None  # step every validation tag is judged past (None: none is)
        self._trim_known = False  # whether _trim_upto is up to date

    @releases_contexts
    def feed(self, view: RunView) -> list[Alert]:
        """Walk the batch in ``seq`` order, judging each evaluation as soon as training reaches its step.

        Judging at that exact point (never later) means the bounded training buffer always holds
        the same points when an evaluation is judged, however the stream was chunked. The walk is
        plain Python over lists: with an evaluation every step, numpy's per-call overhead on
        one-point arrays cost 160-220 µs a point (issue 14). A batch of many evaluations of one
        validation tag is planned in numpy first (``overfitting_batch``), and the walk steps over
        the stretches of quiet evaluations in one go.
        """
        self.lr.update(view.signal(LEARNING_RATE))
        train_series = [i.series for i in view.signal(TRAIN_LOSS) if len(i.series)]
        trains = [_Train(s) for s in train_series]
        vals = [i.series for i in view.signal(VAL_LOSS) if len(i.series)]
        dense = self._dense(train_series, vals[0]) if len(vals) == 1 and len(vals[0]) >= DENSE_MIN_EVALS else None
        if dense is not None:
            alerts = self._walk_planned(trains, *dense)
            self._keep_lr(dense[0], dense[2])
            return alerts + self._advance(trains, None)
        evals = []
        for s in vals:
            evals += [(seq, s.tag, step, wall, value)  # non-finite: divergence's business
                      for seq, step, wall, value in zip(s.seq.tolist(), s.step.tolist(), s.wall_time.tolist(),
                                                        s.value.tolist()) if isfinite(value)]
        evals.sort(key=lambda e: e[0])
        alerts: list[Alert] = []
        for evaluation in evals:
            alerts += self._walk_one(trains, *evaluation)
        return alerts + self._advance(trains, None)

    def _walk_one(self, trains: list[_Train], seq: int, tag: str, step: int, wall: float, value: float) -> list[Alert]:
        """Add the training points before this evaluation (judging what they reach), then judge it if it can be."""
        alerts = self._advance(trains, seq) if trains else []
        st = self._val_state(tag)
        pending = st["pending"]
        pending.append([step, wall, value, self._warm_restart(st, seq)])
        if len(pending) > MAX_PENDING:
            del pending[0]
        return alerts + self._judge_all()

    def _warm_restart(self, st: dict[str, Any], seq: int) -> bool:
        """Whether the learning rate at this evaluation is a warm restart: over ``lr_raise`` x the one at
        the tag's previous evaluation, which had itself decayed to 1 / ``lr_raise`` of the peak before,
        and at most ``lr_raise`` x that peak (a warm-up's rise from its first steps is no restart, nor is a
        jump far past the peak). Remembers this evaluation's."""
        lr, _, peak = self.lr.at(seq)
        if not isfinite(lr):
            return False
        before, st["lr"] = st.get("lr"), [lr, peak]
        return before is not None and warm_restart(before[0], before[1], lr, self.p["lr_raise"])

    def _raises(self, st: dict[str, Any] | None, seqs: np.ndarray) -> bool:
        """Whether any of these evaluations would find a warm restart (``_warm_restart``, remembering nothing)."""
        lrs, peaks = self.lr.at_many(seqs)
        finite = np.isfinite(lrs)
        lrs, peaks = lrs[finite], peaks[finite]
        if st is not None and st.get("lr") is not None:
            lrs, peaks = np.concatenate([[st["lr"][0]], lrs]), np.concatenate([[st["lr"][1]], peaks])
        return bool(warm_restart(lrs[:-1], peaks[:-1], lrs[1:], self.p["lr_raise"]).any())

    def _keep_lr(self, tag: str, seqs: list[int]) -> None:
        """After a planned batch: the learning rate at its last evaluation that has one, as the walk leaves it."""
        lrs, peaks = self.lr.at_many(np.asarray(seqs, dtype=np.int64))
        finite = np.flatnonzero(np.isfinite(lrs))
        if finite.size:
            self.tags[f"val:{tag}"]["lr"] = [float(lrs[finite[-1]]), float(peaks[finite[-1]])]

    def _dense(self, trains: list[Any], series: Any) -> tuple[Any, ...] | None:
        """The plan of a batch of one validation tag's evaluations, and their columns; ``None`` when
        the plan does not model the walk (several training tags or validation tags, evaluations
        waiting from an earlier batch): the plain walk then judges the batch."""
        tag = series.tag
        train_tags = {k[6:] for k in self.tags if k.startswith("train:")} | {t.tag for t in trains}
        if len(train_tags) != 1 or any(k.startswith("val:") and k != f"val:{tag}" for k in self.tags):
            return None
        st = self.tags.get(f"val:{tag}")
        if st is not None and (st["pending"] or "since_raise" in st):
            return None
        if self._raises(st, series.seq[np.isfinite(series.value)]):
            return None
        train = self.tags.get(f"train:{next(iter(train_tags))}", {"steps": [], "values": [], "max_step": None})
        batch = trains[0] if trains else None
        limit = inf  # the seq of the batch's first non-finite training point
        if batch is not None and not (finite := np.isfinite(batch.value)).all():
            first_bad = int(np.argmin(finite))
            limit = int(batch.seq[first_bad])
            batch = seq_slice(batch, int(batch.seq[0]), limit)
        finite = np.isfinite(series.value)
        seq, step, wall, value = (a[finite] for a in (series.seq, series.step, series.wall_time, series.value))
        empty = np.zeros(0, dtype=np.int64)
        plan = plan_evaluations(
            buffer_steps=train["steps"], buffer_values=train["values"],
            max_step=NO_STEP if train["max_step"] is None else train["max_step"],
            train_seq=empty if batch is None else batch.seq, train_step=empty if batch is None else batch.step,
            train_value=np.zeros(0) if batch is None else batch.value, limit_seq=limit,
            eval_seq=seq, eval_step=step, eval_value=value,
            prev_step=NO_STEP if st is None or st["prev_step"] is None else st["prev_step"],
            kept_values=[] if st is None else [e[0] for e in st["evals"]],
            kept_steps=[] if st is None else [int(e[2]) for e in st["evals"]],
            best=inf if st is None or st["best"] is None else st["best"][0],
            best_step=NO_STEP if st is None or st["best"] is None else int(st["best"][2]),
            params=self.p, min_points=self._min_points(next(iter(train_tags))), max_points=MAX_TRAIN_POINTS,
            max_kept=MAX_EVALS, max_pending=MAX_PENDING, long_evals=LONG_EVALS,
        )  # fmt: skip
        return None if plan is None else (tag, plan, seq.tolist(), step.tolist(), wall.tolist(), value.tolist())

    def _walk_planned(
        self, trains: list[_Train], tag: str, plan: EvalPlan, seqs: list[int], steps: list[int], walls: list[float],
        values: list[float],
    ) -> list[Alert]:
        """The walk of ``feed`` over one validation tag's evaluations, a quiet stretch at a time.

        Quiet: judged on arrival and unable to count (too small a rise or train/validation gap;
        or, once the best's training level is settled, a training loss that did not fall). In a
        stretch of quiet evaluations only the last new best matters afterwards (a new best
        replaces the best, its training level and the window that settles it), so the stretch
        up to it is bookkeeping, that evaluation is judged as usual, and the rest is bookkeeping
        again, settling that best's training level on the way.
        """
        n = len(seqs)
        loud = np.flatnonzero(~(plan.routine & ~plan.candidate)).tolist() + [n]
        new_best = np.flatnonzero(plan.new_best).tolist() + [n]
        columns = (values, plan.level.tolist(), steps, walls)
        alerts: list[Alert] = []
        hot: tuple[Any, ...] = ()  # (best, its training level, first, end, may count, not routine) in [first, end)
        i = 0
        while i < n:
            st = self.tags.get(f"val:{tag}")
            j = loud[bisect_left(loud, i)]
            if j == i and st is not None and st["best"] is not None and st["best_until"] is None and not st["pending"]:
                # The best's training level is known until the next new best: a candidate whose
                # training loss did not fall below it by enough cannot count either.
                best = st["best"]
                if not (hot and hot[0] is best and hot[1] == best[1] and hot[2] <= i < hot[3]):
                    end = new_best[bisect_right(new_best, i)]
                    fell = best[1] - plan.level[i:end] > self.p["min_train_fall"] * abs(best[1])
                    odd = ~plan.routine[i:end]
                    hot = (best, best[1], i, end, (np.flatnonzero(odd | (plan.candidate[i:end] & fell)) + i).tolist(),
                           (np.flatnonzero(odd) + i).tolist())
                left = hot[4][bisect_left(hot[4], i):]
                j = left[0] if left else loud[bisect_left(loud, hot[3])]
                if j == i and plan.routine[i] and plan.position[i] >= MAX_EVALS - 1:
                    odd_left = hot[5][bisect_left(hot[5], i):]
                    r = odd_left[0] if odd_left else hot[3]  # up to the next one judged late, or the next new best
                    alerts += self._judge_stretch(trains, tag, st, plan, i, r, [c[i:r] for c in columns])
                    i = r
                    continue
            if j == i or st is None or st["pending"]:
                alerts += self._walk_planned_one(trains, tag, plan, i, seqs, steps, walls, values)
                i += 1
                continue
            last = new_best[bisect_left(new_best, j) - 1] if bisect_left(new_best, j) else -1
            if last >= i:  # judge the stretch's last new best on its own
                if last > i:
                    self._skip_quiet(trains, tag, st, int(plan.cut[last - 1]), [c[i:last] for c in columns], False)
                alerts += self._walk_planned_one(trains, tag, plan, last, seqs, steps, walls, values)
                i = last + 1
            if i < j:
                self._skip_quiet(trains, tag, st, int(plan.cut[j - 1]), [c[i:j] for c in columns], True)
            i = j
        return alerts

    def _walk_planned_one(
        self, trains: list[_Train], tag: str, plan: EvalPlan, k: int, seqs: list[int], steps: list[int],
        walls: list[float], values: list[float],
    ) -> list[Alert]:
        """``_walk_one`` of evaluation ``k``; one that waits for the next training point (logged before
        its step's) is then judged by adding the training points up to that one, as the next
        evaluation's walk would begin, so the next stretch starts with none waiting."""
        alerts = self._walk_one(trains, seqs[k], tag, steps[k], walls[k], values[k])
        if trains and plan.clean[k] and self.tags[f"val:{tag}"]["pending"]:
            alerts += self._advance(trains, trains[0].seq[int(plan.cut[k]) - 1] + 1)
        return alerts

    def _skip_quiet(
        self, trains: list[_Train], tag: str, st: dict[str, Any], added: int, columns: list[list[Any]], settle: bool
    ) -> None:
        """What judging these quiet evaluations (``columns``: value, level, step, wall) one by one leaves
        behind: ``_keep``'s, the streak broken, the episode quiet that many points longer, and
        (``settle``) the best's training level settled as far as they reach. No new best among
        them (or a later one replaces it)."""
        self.quiet(KIND, tag, len(columns[0]), self.p["rearm"])
        self._keep(trains, tag, st, added, columns, 0, settle)

    def _judge_stretch(
        self, trains: list[_Train], tag: str, st: dict[str, Any], plan: EvalPlan, i: int, r: int,
        columns: list[list[Any]],
    ) -> list[Alert]:
        """Judge evaluations ``i`` to ``r - 1`` at once: each judged on arrival, none a new best, the best's
        training level settled, a full window of kept evaluations for the noise. ``_counts``, the
        streak and the episode as the walk would take them one by one."""
        p, best = self.p, st["best"]
        level = plan.level[i:r]
        fell = best[1] - level > p["min_train_fall"] * abs(best[1])
        maybe = np.flatnonzero(plan.candidate[i:r] & fell)
        counting = np.zeros(r - i, dtype=bool)
        since = int(np.searchsorted(plan.kept_step, best[2], side="left"))
        picked = np.arange(i, r)[maybe]
        noise = noise_at(plan.kept, plan.position[picked], MAX_EVALS, since, NOISE_SINCE_BEST)
        base = self._levels(st, plan, since, plan.position[picked])
        short, long = self._bars()
        bar = p["min_rise"] * abs(best[0])
        rise, long_rise = plan.smooth[picked] - base, plan.long[picked] - base
        counting[maybe] = ((plan.short_up[picked] & (rise > bar) & (rise > short * noise))
                           | (plan.long_up[picked] & (long_rise > bar) & (long_rise > long * noise)))
        at = np.arange(r - i)
        last_miss = np.maximum.accumulate(np.where(counting, -1, at))
        streak = np.where(last_miss < 0, st["streak"] + at + 1, at - last_miss)
        values, levels, steps, _ = columns
        alerts = []
        for k in self.events(KIND, tag, (streak >= p["patience"]).astype(np.int64), np.asarray(steps), p["rearm"]):
            alerts += self._report(tag, self._train_tag(tag), st, values[k], levels[k], steps[k])
        self._keep(trains, tag, st, int(plan.cut[r - 1]), columns, int(streak[-1]), False)
        return alerts

    @staticmethod
    def _levels(st: dict[str, Any], plan: EvalPlan, since: int, position: np.ndarray) -> np.ndarray:
        """The level each evaluation at ``position`` (in ``plan.kept``) measures its rise from, as ``_settle_level``
        takes it: the smoothed best until ``reach`` evaluations follow the best's lowest one (at ``since``)."""
        best, around = st["best"], st.get("val_level")
        if around is not None and around[1] is not None:
            return np.full(position.shape[0], around[1])
        base = np.full(position.shape[0], best[0])
        if around is not None and since < plan.kept.shape[0] and plan.kept_step[since] == best[2]:
            reach = around[0]
            ready = position >= since + reach
            if ready.any():
                base[ready] = level_around(plan.kept, since, reach, best[0])
        return base

    def _keep(
        self, trains: list[_Train], tag: str, st: dict[str, Any], added: int, columns: list[list[Any]], streak: int,
        settle: bool,
    ) -> None:
        """The bookkeeping of judging evaluations (``columns``: value, level, step, wall) one by one:
        the batch's first ``added`` training points added, the evaluations kept, the streak,
        (``settle``) the best's training level settled as far as they reach, the buffer trimmed."""
        if trains and added > trains[0].cursor:
            train = trains[0]
            self._add_train(train.tag, train.step[train.cursor : added], train.value[train.cursor : added])
            train.cursor = added
        evals = st["evals"]
        if self._level_pending(st):
            self._settle_level(st, [e[0] for e in evals] + list(columns[0]), [e[2] for e in evals] + list(columns[2]))
        values, levels, steps, walls = (c[-MAX_EVALS:] for c in columns)
        evals += [[v, level, s, w] for v, level, s, w in zip(values, levels, steps, walls)]
        del evals[:-MAX_EVALS]
        st["prev_step"], st["streak"] = steps[-1], streak
        if settle and st["best_until"] is not None:
            self._settle_best(self.tags[f"train:{self._train_tag(tag)}"], st, steps[-1])
        self._trim_known = False
        self._trim_train()

    def _advance(self, trains: list[_Train], upto_seq: int | None) -> list[Alert]:
        """Add training points with seq below ``upto_seq``, pausing where one reaches a waiting evaluation."""
        alerts: list[Alert] = []
        for train in trains:
            a = train.cursor
            b = len(train.seq) if upto_seq is None else bisect_left(train.seq, upto_seq, a)
            while a < b:
                waiting = [pending[0][0] for pending in self._pendings() if pending]
                if not waiting:  # nothing to judge: add them all
                    self._add_train(train.tag, train.step[a:b], train.value[a:b])
                    if not self._trim_known or self._trim_upto is None or train.step[a] <= self._trim_upto:
                        self._trim_train()  # (points after the judged step change nothing to trim)
                    break
                reached = bisect_left(train.step, min(waiting), a, b)  # a tag's steps never go back
                cut = reached + 1 if reached < b else b
                self._add_train(train.tag, train.step[a:cut], train.value[a:cut])
                a = cut
                alerts += self._judge_all()
            train.cursor = b
        return alerts

    def state_dict(self) -> dict[str, Any]:
        # A copy: the rule grows its lists in place, and a saved state must not change with it.
        return copy.deepcopy({**super().state_dict(), "alerted_minimum": self.alerted_minimum, "lr": self.lr.state()})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(copy.deepcopy(state))
        for key, st in self.tags.items():  # saved before issue 14: training points as [step, value] pairs
            if key.startswith("train:") and "points" in st:
                points = st.pop("points")
                st["steps"], st["values"] = [int(p[0]) for p in points], [float(p[1]) for p in points]
        self._forget()
        self.alerted_minimum = {str(k): int(v) for k, v in state["alerted_minimum"].items()}
        if "lr" in state:  # (saved before the rule read the learning rate: none known)
            self.lr.load(state["lr"])

    def _pendings(self) -> list[list[list[Any]]]:
        """Each validation tag's waiting evaluations, in tag order."""
        if self._val_keys is None:  # listed once per set of tags: this runs once or twice per evaluation
            self._val_keys = sorted(k for k in self.tags if k.startswith("val:"))
            self._pending_lists = [self.tags[key]["pending"] for key in self._val_keys]
            self._train_keys = [k for k in self.tags if k.startswith("train:")]
        return self._pending_lists

    def _judge_all(self) -> list[Alert]:
        alerts: list[Alert] = []
        pendings = self._pendings()  # (first: it lists the keys when a tag just came)
        for key, pending in zip(self._val_keys or [], pendings):
            if pending:
                alerts += self._judge(key[4:], self.tags[key])
        self._trim_train()
        return alerts

    # --- training side ------------------------------------------------------------------------

    def _add_train(self, tag: str, steps: list[int], values: list[float]) -> None:
        top = steps[-1]  # a tag's steps never go back
        if not (isfinite(values[0]) if len(values) == 1 else all(map(isfinite, values))):
            steps, values = [s for s, v in zip(steps, values) if isfinite(v)], [v for v in values if isfinite(v)]
            if not values:
                return
        st = self.tags.get(f"train:{tag}")
        if st is None:
            st = self.tags[f"train:{tag}"] = {"steps": [], "values": [], "max_step": None}
            self._forget()
        st["steps"] += steps
        st["values"] += values
        if len(st["steps"]) > MAX_TRAIN_POINTS:
            del st["steps"][:-MAX_TRAIN_POINTS], st["values"][:-MAX_TRAIN_POINTS]
        st["max_step"] = top if st["max_step"] is None else max(st["max_step"], top)

    def _train_tag(self, val_tag: str) -> str | None:
        """The training tag to compare with: same name (Keras epoch_loss), else an epoch-level one, else the first."""
        if val_tag not in self._train_of:
            self._train_of[val_tag] = self._pick_train_tag(val_tag)
        return self._train_of[val_tag]

    def _pick_train_tag(self, val_tag: str) -> str | None:
        names = [t[6:] for t in self.tags if t.startswith("train:")]
        if not names:
            return None
        base = val_tag.rsplit("/", 1)[-1]
        for pick in ([n for n in names if n.rsplit("/", 1)[-1] == base], [n for n in names if "epoch" in n], names):
            if pick:
                return pick[0]
        return None

    def _min_points(self, train_tag: str) -> int:
        """How many training points the level is a median of, at least: ``MIN_TRAIN_POINTS`` minibatch
        losses, or ``smooth_evals`` epoch means (a tag named for its epochs)."""
        return int(self.p["smooth_evals"]) if epoch_level(train_tag) else MIN_TRAIN_POINTS

    def _train_level(self, train: dict[str, Any], prev_step: float, step: int, least: int) -> float:
        steps, values = train["steps"], train["values"]
        upto = bisect_right(steps, step)  # points at or before the evaluation (steps never go back)
        if upto == 0:
            return float("nan")
        since = bisect_right(steps, prev_step, 0, upto)
        if upto - since < least:  # evaluations a few steps apart: a median of 2 points is noise
            since = max(0, upto - least)
        return small_median(values[since:upto])

    def _trim_train(self) -> None:
        """Drop training points no evaluation can need again (all validation tags judged past them)."""
        if not self._trim_known:
            self._trim_upto, self._trim_known = self._judged_upto(), True
        upto = self._trim_upto
        if upto is None:
            return
        self._pendings()  # (lists the keys)
        for key in self._train_keys:
            train = self.tags[key]
            keep_from = bisect_right(train["steps"], upto) - MIN_TRAIN_POINTS
            if keep_from > 0:
                del train["steps"][:keep_from], train["values"][:keep_from]

    def _judged_upto(self) -> float | None:
        """The step all validation tags are judged past (``None``: no tag, or one not judged yet)."""
        upto = None
        back = self.p["smooth_evals"] - 1  # evaluations that a later smoothing window still holds
        self._pendings()  # (lists the keys)
        for key in self._val_keys or []:
            st = self.tags[key]
            if st["prev_step"] is None:
                return None
            evals = st["evals"]  # in step order, all at or before prev_step
            judged = evals[max(0, len(evals) - back)][2] if evals and back else st["prev_step"]
            upto = judged if upto is None else min(upto, judged)
        return upto

    # --- validation side ----------------------------------------------------------------------

    def _val_state(self, tag: str) -> dict[str, Any]:
        st = self.tags.get(f"val:{tag}")
        if st is None:
            st = self.tags[f"val:{tag}"] = {"pending": [], "evals": [], "best": None, "around_best": [],
                                            "best_until": None, "streak": 0, "prev_step": None}
            self._forget()
        return st

    def reset(self, tag: str) -> None:
        for key in (f"val:{tag}", f"train:{tag}"):
            self.tags.pop(key, None)
        self._forget()

    def _judge(self, val_tag: str, st: dict[str, Any]) -> list[Alert]:
        train_tag = self._train_tag(val_tag)
        if train_tag is None:
            return []
        train = self.tags[f"train:{train_tag}"]
        max_step = train["max_step"]
        p = self.p
        width = p["smooth_evals"]
        least = self._min_points(train_tag)
        alerts = []
        pending, evals = st["pending"], st["evals"]
        while pending and max_step is not None and pending[0][0] <= max_step:
            step, wall, value, *restart = pending.pop(0)  # (saved before issue 10's seventh round: 3 long)
            step = int(step)
            if restart and restart[0] and not st["streak"]:  # (a rise under way is no restart's doing)
                self._restart(st)
            self._trim_known = False  # judged further: recompute
            prev = -inf if st["prev_step"] is None else st["prev_step"]
            level = self._train_level(train, prev, step, least)
            st["prev_step"] = step
            if not isfinite(level):
                continue
            evals.append([value, level, step, wall])
            if len(evals) > MAX_EVALS:
                del evals[0]
            if "since_raise" in st:  # (only while a restart's window fills: a run without raises keeps no count)
                st["since_raise"] += 1
                if st["since_raise"] >= width:
                    del st["since_raise"]
            window = evals[-width:]
            smooth = small_median([e[0] for e in window])
            best = st["best"]
            if len(window) == width and "since_raise" not in st and (best is None or smooth < best[0]):
                low = min(window, key=lambda e: e[0])  # the window's lowest evaluation dates the minimum
                best = st["best"] = [smooth, low[1], int(low[2]), low[3]]
                self._new_best_after_report(val_tag, st, smooth)
                k = next(i for i in range(len(evals) - 1, -1, -1) if evals[i] is low)
                gap = low[2] - evals[k - 1][2] if k > 0 else 0
                self._start_best(train, st, int(low[2]), gap / 2, max(1, least // 2))
                reach = (k + 1) // AROUND_SHARE
                st["val_level"] = [reach, None] if reach >= MIN_REACH else None
            if best is None:
                continue
            if self._level_pending(st):
                self._settle_level(st, [e[0] for e in evals], [e[2] for e in evals])
            if st["best_until"] is not None:
                self._settle_best(train, st, step)
            counting = self._counts(st, value, level, smooth)
            st["streak"] = st["streak"] + 1 if counting else 0
            # A flickering condition may close and reopen the episode; with the same validation
            # minimum it is the same overfitting, so it is reported once (kept across restarts too).
            if self.event(KIND, val_tag, 1 if st["streak"] >= p["patience"] else 0, step, p["rearm"]):
                alerts += self._report(val_tag, train_tag, st, value, level, step)
        return alerts

    def _report(self, val_tag: str, train_tag: str, st: dict[str, Any], value: float, level: float,
                step: int) -> list[Alert]:
        """The warning of an episode that is due one: none when its validation minimum was reported already, or
        while no new best has come ``min_rise`` below the minimum last reported (``_new_best_after_report``): a
        minimum lower by less is the same overfitting, and the checkpoint reported is as good."""
        best = st["best"]
        if self.alerted_minimum.get(val_tag) == best[2] or "reported" in st:
            return []
        self.alerted_minimum[val_tag], st["reported"] = best[2], best[0]
        return [self._alert(val_tag, train_tag, st, value, level, step)]

    def _new_best_after_report(self, val_tag: str, st: dict[str, Any], smooth: float) -> None:
        """A new best well below the minimum last reported (by ``min_rise`` of it) ends that episode: the
        overfitting it warned of was undone (a blow to the model, a lower learning rate), the checkpoint it
        pointed to is no longer the best, and a rise from the new minimum is a new warning. Without this
        the episode stayed open through the short dip and the second overfitting went unsaid (development
        s7308: warned from a 3.49 minimum at step 2280, then a blow took the validation loss to 2.57 and it
        rose 48 % from there while the training loss fell 0.64 -> 0.02)."""
        reported = st.get("reported")
        if reported is not None and reported - smooth > self.p["min_rise"] * abs(reported):
            self._episode(KIND, val_tag).open = False
            del st["reported"]

    @staticmethod
    def _restart(st: dict[str, Any]) -> None:
        """A warm restart: forget the best, so the validation loss is compared only with
        evaluations made since (its smoothing window full of them). A higher learning rate raises the
        validation loss by itself (a warm restart bumps it for a few evaluations), and that is the
        optimiser's doing, not overfitting: dev s2264 (SGDR, restarts every 655 steps) rose 11-13 %
        for three evaluations after its second restart, 9 % at the end, and was warned.

        Not while evaluations are counting (``_judge`` keeps the best and the streak then): a rise that
        began before the raise is none of its doing, and forgetting it threw away the evidence. The
        twenty-second development batch's s15914 (SGDR every 1,330 steps, 330 training examples):
        validation 1.37 -> 1.56 while training fell 0.45 -> 0.04, two counting evaluations when the
        restart came, then 1.64-1.76 to the end; compared from the restart on, that was a 4 % rise."""
        st["best"], st["best_until"], st["around_best"], st["streak"], st["since_raise"] = None, None, [], 0, 0
        st["val_level"] = None

    def _start_best(self, train: dict[str, Any], st: dict[str, Any], best_step: int, half: float, before: int) -> None:
        """Open the window of training points whose median will be the training level at the best:
        ``half`` steps (half an evaluation interval) on each side, or as many as its last
        ``before`` points before it span if that is more (half the level's least points)."""
        steps, values = train["steps"], train["values"]
        upto = bisect_right(steps, best_step)
        lo, hi = (0, 1) if upto == 0 else (0, upto)  # the buffer no longer reaches back there: its first point
        half = max(half, best_step - float(steps[max(lo, hi - before)]))
        first = bisect_left(steps, best_step - half, lo, hi)
        if first == hi:
            first = hi - 1
        st["around_best"] = [[float(s), v] for s, v in zip(steps[first:hi], values[first:hi])]
        st["best_until"] = best_step + half

    def _settle_best(self, train: dict[str, Any], st: dict[str, Any], step: int) -> None:
        """Once training has passed the best evaluation by as many steps as its last points before
        it span, take the training level there from the points on both sides.

        A trailing median taken while the loss still fell steeply sits above the level at the best
        (10 points logged every 5 steps reach back 50 steps), and "training kept falling" then holds
        by lag alone: an HF run whose training loss was flat after its validation minimum got an
        overfitting warning that way. Symmetric in steps rather than in points, so a loss that
        drops fast right after the best does not pull the level down either. Never above the trailing
        level the best was found with: a training loss that leaps right after it is damage, not a level
        to fall from (ninth development batch, s5358: a corrupted batch one step after the validation
        minimum tripled the loss for 30 steps; the symmetric median, 1.0 against 0.37 before, made the
        recovery to 0.46 "training kept falling" while the validation loss healed from the same blow).
        """
        if st["best_until"] is None:
            return
        steps, values = train["steps"], train["values"]
        around = st["around_best"]
        lo = bisect_right(steps, around[-1][0])
        hi = bisect_right(steps, min(step, st["best_until"]), lo)
        room = MAX_TRAIN_POINTS - len(around)  # bounded if logging gets denser
        around += [[float(s), v] for s, v in zip(steps[lo:hi][:max(0, room)], values[lo:hi][:max(0, room)])]
        if step >= st["best_until"]:
            st["best"][1] = min(st["best"][1], small_median([v for _, v in around]))
            st["best_until"], st["around_best"] = None, []

    @staticmethod
    def _level_pending(st: dict[str, Any]) -> bool:
        """Whether the best has a level around it still to take (``_settle_level``)."""
        around = st.get("val_level")
        return around is not None and around[1] is None

    @staticmethod
    def _settle_level(st: dict[str, Any], values: list[float], steps: list[int]) -> None:
        """Once ``reach`` evaluations follow the best's lowest one (``val_level``: reach, level), take the level
        a rise is measured from: the median of the evaluations within ``reach`` of it (``values``, ``steps``: the
        kept ones), never below the smoothed best. The lowest of many smoothed values is an extreme of them: on
        a long flat noisy stretch it sits below the level the loss holds, the further the more evaluations it
        was picked from, and a rise measured from it counted noise as overfitting (``AROUND_SHARE``). Kept once
        taken: evaluations a step apart keep only the last 32 steps, and the level is needed long after. Callers
        ask ``_level_pending`` first (the lists are built only then)."""
        around = st["val_level"]
        k = bisect_left(steps, st["best"][2])
        if k < len(steps) and steps[k] == st["best"][2] and k + around[0] < len(values):
            around[1] = level_around(values, k, around[0], st["best"][0])

    def _counts(self, st: dict[str, Any], value: float, level: float, smooth: float) -> bool:
        """Whether this evaluation counts towards the streak; ``smooth``: the median of the last ``smooth_evals``."""
        p = self.p
        best, best_train = st["best"][0], st["best"][1]
        fell = best_train - level > p["min_train_fall"] * abs(best_train)
        if not (fell and value - level > p["min_gap"] * abs(level)):
            return False
        evals = st["evals"]
        since = next(i for i, e in enumerate(evals) if e[2] >= st["best"][2])
        around = st.get("val_level")
        base = best if around is None or around[1] is None else around[1]
        short, long = self._bars()
        rises = [(smooth - base, short)]
        if LONG_EVALS and len(evals) - since >= LONG_EVALS:
            rises.append((small_median([e[0] for e in evals[-LONG_EVALS:]]) - base, long))
        rises = [(rise, bar) for rise, bar in rises if rise > p["min_rise"] * abs(best)]
        if not rises:
            return False
        noise = evaluation_noise([e[0] for e in evals], since)
        return noise is None or any(rise > bar * noise for rise, bar in rises)

    def _bars(self) -> tuple[float, float]:
        """How many σ of evaluation noise a rise must beat: the smoothed loss's, and the long median's."""
        return self.p["noise_sigma"], self.p["noise_sigma"] * LONG_SCALE

    def _alert(self, val_tag: str, train_tag: str, st: dict[str, Any], value: float, level: float, step: int) -> Alert:
        best, best_train, best_step, best_wall = st["best"]
        message = (
            f"{val_tag} bottomed out at {fmt_number(best)} at step {int(best_step)} and has risen to {fmt_number(value)} by step "
            f"{step} while {train_tag} kept falling ({fmt_number(best_train)} → {fmt_number(level)}): the model is overfitting; "
            "stop at the best checkpoint, or add regularisation/data"
        )
        return self.alert(
            kind=KIND, level=WARNING, step=int(best_step), wall_time=best_wall, tag=val_tag, message=message,
            evidence={"best_val": best, "val": value, "train_at_best": best_train, "train": level,
                      "noticed_step": step, "train_tag": train_tag},
        )
