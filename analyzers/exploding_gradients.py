"""`exploding_gradients`: non-finite gradients, gradients growing by orders of magnitude, gradients
that grow from the output back to the input, or gradients far too large for the loss.

* non-finite (critical, at the first point): a gradient histogram whose min/max/sum/sum_squares
  is NaN/Inf, a ``grad_nonfinite/<p>`` count above 0, or a non-finite gradient norm, per layer or
  total (SageMaker ExplodingTensor; HF logs ``grad_norm`` NaN beside a filtered loss of 0.0). One
  episode per run across layers.
* growth (warning): the total gradient norm (``grad_norm`` and friends; without one, and before its
  first logged step, the total rebuilt from the per-layer values: exact from histogram RMS and
  element counts, the root-sum-square of per-layer norms) above ``growth`` (100) × its early level,
  and at the next point still above ``growth_continue`` (10) × it (``growth_patience`` points in
  all), dated at the first. A one-off clipped spike that is back to normal at the next log does not
  count (OLMo 2: healthy large runs have them); a jump still an order of magnitude up does. The early
  level is the median of the first ``baseline_points`` finite values; a point is judged once
  ``min_baseline_points`` precede it, against the median of those (a run logging its gradients every
  50 steps has 6 points in 300 steps and was never judged; under a rising learning rate the tenth
  value may already be part of the growth). Healthy runs measured below reach 35× their early level
  (an LSTM over 50 steps whose gradient starts near 0), the scenario corpus 7.5×. With only one or
  two values before it, a point is judged at ``growth_first`` (1000×): an lr far too high blows the
  gradients up between the first and second log (2.7 → 1.2e9 in the sampled corpus' s0448), and on
  the sampled development corpus (400 runs) healthy-labelled runs reach at most 27× their first log
  at their second or third (an RNN warming up; 20× an MLP). A value above its threshold is growth,
  not early level, and does not join the median (with one value before it, the median of two would
  take the blow-up in and the next point could not continue the streak).
* ratio (warning): the largest weight gradient among the input-side half of the layers above
  ``ratio`` × the last layer's (AUTOTRAINER's β3 = 70, which compares the first layer) for
  ``ratio_patience`` consecutive logged steps. The largest rather than the first, because with
  per-layer *norms* a small first layer (a 3×3 conv stem) can hide an explosion that its
  neighbours show. PyTorch's recurrent ``weight_ih_l0``/``weight_hh_l0`` are weights (they were not:
  a tanh RNN at 3× recurrent gain, input-side gradient RMS 243× the head's, went unseen).
* backward growth (warning): the largest *bias* gradient among the input-side half of the biases
  above ``bias_ratio`` × the output layer's bias gradient, while the weights' gradients are large in
  absolute terms (median per-element RMS above ``min_rms``; with norm scalars, a total norm above
  ``min_norm``), for ``ratio_patience`` logged steps. A bias gradient is the back-propagated error
  itself; a weight gradient is that error times the layer's input. In a ReLU net at large init the
  forward pass grows as much as the backward pass, so every weight gradient is equally huge
  (first/last weight ratio 0.4–4, loss finite, no healthy early level to grow from) while the bias
  gradients grow 400–10⁶× from the head back to the input; in a ReLU RNN at recurrent gain > 1 they
  grow back through time. 40, not the 70 of AUTOTRAINER's weight ratio it was: the gate, not the
  ratio, is what keeps healthy runs out (on the sampled development corpus' 231 healthy runs with
  gradient histograms the ratio held at two logs reaches 37 ungated, 0.1 gated; the hand-built
  sum-reduced runs past the gate, 7.7), and the 31st batch's s23780 (a 7-conv ReLU net at 1.9× He
  under Adam: loss 64 at step 0 for a 10-class task, median weight RMS 1–5 all run, model-wide RMS
  1–4.7) held 45–60 and nothing else of its gradients was scale-free (norm 5–15× its loss).
* loss scale (warning): the total gradient norm above ``loss_ratio`` × max(1, |training loss|)
  (the latest loss at or before it) at ``growth_patience`` consecutive points. The loss's gradient
  with respect to the outputs is at most √2·loss (cross-entropy) or 2·√loss (squared error), summed
  or averaged alike, so 50× the loss means the network multiplies the gradient by ~35 on its way
  to the parameters. A sum-reduced loss or large regression targets make the loss as large as the
  gradient, so they pass. The only honest test for a run that logs a total norm and nothing per
  layer (HF ``grad_norm``, Lightning ``grad_2.0_norm_total``); it does not see an explosion from
  initialisation while the outputs, hence the loss, explode with the gradients (8–175× on the runs
  below), only once the loss has come down and the gradients have not. A bare total norm cannot: its
  absolute size is 1e2–5e5 on healthy sum-reduced and raw-target runs, as large as on exploding ones
  (clipping thresholds of 0.5–10 assume a mean-reduced loss). 50, not the 100 it was: on the sampled
  development corpus' 178 healthy runs that log gradients, the largest ratio at two consecutive logs
  is 26 (21 on the hand-built runs below), so 50 keeps a 2× margin; the nineteenth batch's s13686
  (a 7-conv ReLU net at 2× He init under AdamW; loss 223 at step 0, chance 2.3) had its loss down to
  1–5 by step 200 while its total norm stayed 100–270, a ratio of 30–160 that never held above 100
  at two consecutive logs (largest: 98), and nothing else of its gradients was scale-free.

* overflow (warning): the median weight-gradient RMS above ``min_rms`` (norm scalars: the total norm
  above ``min_norm``) at the last gradient log before the training loss turns non-finite, dated at
  that log. A run that lives for one gradient log (a 6-conv ReLU net at 2.2× He: weight RMS 5.3, bias
  ratio 38, loss 98, then NaN) shows nothing else; per-weight gradients above 1 are 10× what a
  mean-reduced loss of order one gives on healthy runs (≤ 0.1), and a sum-reduced loss whose
  gradients are that large as a matter of course does not overflow.

A non-finite training loss (or norm) logged after a point where a condition held completes its
streak (never starts one): a job often logs one huge value and then overflows, and a writer that
dies on the overflow (tensorboardX's ``add_histogram`` raises on values it cannot bin) leaves only
the loss to show it; the condition held until the run broke. Which non-finite losses count, and
where among the groups, is ``overflow.Overflow``'s (``vanishing_gradients`` completes its streak the
same way).

Recovery: the layer ratio, backward growth and loss scale do not hold at a point where the optimiser
is undoing an explosion from initialisation: the gradient size (median weight RMS, or total norm) is
``recovered`` (10)× below its largest so far *and* below ``recovered`` × its gate (``min_rms``,
``min_norm``), and the training loss is 10× below the run's first logged loss. AUTOTRAINER and
DeepDiagnosis report a gradient problem only together with a training symptom; a loss an order of
magnitude below the untrained model's, with gradients back near ordinary sizes, is none. Measured on
the sampled development corpus: a 12-conv ReLU net at 2× He init under Adam (labelled healthy: its
model-wide gradient RMS falls below 1 by step 450 of 1,805) had median weight RMS 25 → 2.4 → 1.5 →
1.0 and loss 577 → 24 → 8.6 → 3.5 over its first four logs (bias ratio 127–376), then a total norm
of 109–179 beside a loss of 0.44–1.5; every exploding-labelled dev run whose alert comes from these
conditions keeps either its loss within 10× of the first (297 → 66, 717 → 351, 2.3e6 → 4.4e5) or
its gradients far above the gate (weight RMS 5e3 with the loss down 5,000×). The undoing ends once the gradients
have been back under the gate itself (after a peak of at least ``recovered`` × it): from then on only gradients under
the gate are recovered. The 39th development batch's s32330 (a 12-conv ReLU net at 2.2× He under Adam, labelled
exploding: model-wide gradient RMS 1–7 all run, validation loss six times chance) had its total norm 2.1e4 → 99 and
loss 3,771 → 0.58 in 390 steps, then 100–600 beside a loss of 0.1–1 for 1,800 more, all of it "recovered"; s0590
never holds above the gate at two logs once under it. On the 2,481 development runs built here, the change warns
s32330 (step 429) and three borderline large-init runs (s0606, s3326, s19520), adds a later warning to five runs
already warned and drops one from two; no healthy run changes.

A gradient step is complete once another tag moves on to a later step, so a log that ends
after its last gradient step still has that step judged (``layers.LayerGroups``).

Thresholds were measured on real tiny CPU trainings (sklearn digits and diabetes, synthetic
sequences; 300–2,000 steps; gradients logged every 1–50 steps with tensorboardX ``add_histogram``,
per-layer and total norm scalars; read back with ``tbmon.monitor.read``): 43 healthy runs (MLP depth
1–40 at default/He init, with BatchNorm, 512 wide with a binary head; plain CNNs; GRU/LSTM/tanh and
ReLU RNNs over 20–100 steps; 2- and 4-layer transformers; Adam/SGD, lr 1e-4–1, batch 4–512; mean and
*sum*-reduced cross-entropy and squared error, raw diabetes targets 25–346); 12 ReLU MLPs/CNNs at
1.5–2× He init; 15 RNNs at recurrent gain 1.4–3 (7 explode, 2 of them for one gradient log only; a
ReLU RNN at 1.4× explodes for some seeds only); 10 exponential learning-rate ramps (4 whose gradients
grow ≥ 100× before the overflow; the others' stay within 30×: their ReLUs die or the cross-entropy
gradient saturates). Two consecutive logs of each quantity (what a patience-2 rule sees), largest
over a run:

===============================  =====================  ==========================================
quantity                         healthy (largest)      pathological
===============================  =====================  ==========================================
bias-gradient RMS ratio          18 (a transformer)     92–1.8e6 (11 of 12 large-init nets; a 1.5×
                                                        14-conv net: 17); 53–2.4e6 exploding RNNs
 …from norm scalars              62 (1-output head)     83–6.9e6
median weight-gradient RMS       0.10 mean-reduced;     2.1–3e8 where the bias ratio is > 70
                                 4,500 sum-reduced or
                                 raw regression targets
total norm / max(1, loss)        21 (sum-reduced)       21–1.5e6 exploding RNNs; 8–175 large init
growth over the early level      35 (one log)           ≥ 100, then ≥ 10 (ramps); 1–2 large init
===============================  =====================  ==========================================

The absolute gradient size alone does not separate them (sum-reduced and raw-target regressions
reach a median weight RMS of 4,500 and a total norm of 5e5, above three of the large-init nets),
nor does the gradient relative to the weights (``weight_norm/<p>``: 4e4 healthy, from 4.5 exploding).
The bias ratio is scale-free; its absolute gate only keeps a tiny output-bias gradient (a balanced
batch cancels it) from making a ratio out of noise. With norm scalars the element counts are
unknown: a bias vector's norm carries √(its size / the head bias's size), 8 for a 64-unit layer over
a 1-output head and ~20–30 for a 768–1024-wide net over a binary head, hence ``bias_ratio_norm`` =
10 × ``bias_ratio``. Found: 11 of 12 large-init nets (10 from norm scalars), 4 of the 7 exploding RNNs,
4 of 4 ramps; no alert on the 43 healthy runs, from histograms, per-layer norms,
the total norm alone or all together. Not seen: explosions visible at one gradient log only (a tanh
RNN at 3× gain under SGD saturates after its first step), a ReLU RNN at 2× gain (bias ratio 53, norm
21× the loss), nets without biases (no backward-only signal), and a 1.5× He 14-conv net whose
gradients grow ~30× in all.
"""

from __future__ import annotations

from collections.abc import Callable
from math import isfinite
from typing import Any, ClassVar

import numpy as np

from tbmon.analyzers.alerts import Alert
from tbmon.analyzers.base import BaseRule, RunView
from tbmon.analyzers.layers import HIST, Groups, LayerGroups, bias_order, compared_layers
from tbmon.analyzers.numbers import fmt_number
from tbmon.analyzers.overflow import Loss, Overflow, nonfinite_losses, train_loss
from tbmon.analyzers.series import HistogramSeries
from tbmon.analyzers.signals import GRAD_HISTOGRAM, GRAD_NONFINITE, GRAD_NORM
from tbmon.analyzers.windows import Streak, continued_streak, due_starts, streak_due

KIND = "exploding_gradients"
WARNING, CRITICAL = 1, 2
ALL_LAYERS = "grad (all layers)"
STEP = "<step>"  # where a per-layer message names the step its condition began
Info = dict[int, dict[str, Any]]
Rows = tuple[np.ndarray, np.ndarray, Callable[[int], dict[str, Any]]]
"""A per-layer condition on a block of groups: (holds per group, its ratio, details of one group)."""


class ExplodingGradients(BaseRule):
    name: ClassVar[str] = "exploding_gradients"
    defaults: ClassVar[dict[str, Any]] = {
        "growth": 100.0,
        "growth_continue": 10.0,
        "baseline_points": 10,
        "min_baseline_points": 3,
        "growth_first": 1000.0,
        "ratio": 70.0,
        "bias_ratio": 40.0,
        "bias_ratio_norm": 400.0,
        "min_rms": 1.0,
        "min_norm": 100.0,
        "loss_ratio": 50.0,
        "growth_patience": 2,
        "ratio_patience": 2,
        "recovered": 10.0,
        "rearm": 200,
    }

    def __init__(self, run: str, params: dict[str, Any]) -> None:
        super().__init__(run, params)
        self.groups = LayerGroups()
        self.streaks = {"layer_ratio": Streak(), "backward_growth": Streak()}
        self.starts: dict[str, dict[str, Any]] = {}  # details of where each per-layer streak began
        self.nonfinite_tag = ""
        self.total_step = -1  # step of the run's first total-norm point (-1: none yet)
        self.total_tags: list[str] = []  # logged total-norm tags, in order of appearance
        self.group_tag = ""  # the tag the per-layer conditions alert under (first compared layer)
        self.overflow = Overflow()  # non-finite training losses among the groups (state: nan_run, deferred)
        self.overflow_prev: list[Any] = []  # last item, if large: [step, wall, size, what, gate]
        self.first_loss = [-1, float("nan")]  # the run's first finite training loss: [seq, value]
        self.size_peak = 0.0  # the largest per-group gradient size so far
        self.size_undone = False  # whether the per-group gradient size has been back under its gate since its peak
        self.loss_last = [-1, float("nan")]  # the training loss's last point before this batch: [seq, value]
        self.waiting_loss: list[list[float]] = []  # [seq, loss then] of each gradient point still waiting in a group
        self._loss_seq = np.zeros(0, dtype=np.int64)
        self._loss_val = np.zeros(0)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "groups": self.groups.state(),
                "streaks": {k: v.to_json() for k, v in self.streaks.items()}, "starts": self.starts,
                "nonfinite_tag": self.nonfinite_tag, "total_step": self.total_step, "total_tags": self.total_tags,
                "group_tag": self.group_tag, "overflow_prev": self.overflow_prev,
                "first_loss": self.first_loss, "size_peak": self.size_peak, "size_undone": self.size_undone,
                "loss_last": self.loss_last,
                "waiting_loss": self.waiting_loss, **self.overflow.state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.groups.load(state["groups"])
        self.streaks = {k: Streak.from_json(v) for k, v in state["streaks"].items()}
        self.starts = {k: dict(v) for k, v in state["starts"].items()}
        self.nonfinite_tag, self.total_step = state["nonfinite_tag"], int(state["total_step"])
        self.total_tags, self.group_tag = list(state["total_tags"]), str(state["group_tag"])
        self.overflow_prev = list(state.get("overflow_prev", []))
        self.first_loss = [int(state.get("first_loss", [-1])[0]), float(state.get("first_loss", [-1, "nan"])[1])]
        self.size_peak = float(state.get("size_peak", 0.0))
        self.size_undone = bool(state.get("size_undone", False))
        self.loss_last = [int(state["loss_last"][0]), float(state["loss_last"][1])]
        self.waiting_loss = [list(r) for r in state["waiting_loss"]]
        self.overflow.load(state)

    def episodes(self) -> list[dict[str, Any]]:
        return [{**e, "tag": self.nonfinite_tag} if e["tag"] == "*nonfinite" else e for e in super().episodes()]

    # --- feeding --------------------------------------------------------------------------------

    def feed(self, view: RunView) -> list[Alert]:
        alerts = self._nonfinite(view)
        bad_loss = self._take_loss(view)
        totals = {i.tag: i.series for i in view.signal(GRAD_NORM) if i.match.param is None and len(i.series)}
        if totals and self.total_step < 0:
            self.total_step = int(min(totals.values(), key=lambda s: int(s.seq[0])).step[0])
        self.total_tags += [tag for tag in totals if tag not in self.total_tags]
        for tag in self.total_tags:  # a tag without points in this batch still takes its non-finite losses
            s = totals.get(tag)
            if s is not None:
                alerts += self._total_series(tag, s.seq, s.step, s.wall_time, s.value, bad_loss)
            elif bad_loss:
                none = np.zeros(0, dtype=np.int64)
                alerts += self._total_series(tag, none, none, np.zeros(0), np.zeros(0), bad_loss)
        groups = self.groups.update(view)
        ready = self.overflow.ready(bad_loss, self.groups)
        if groups or ready:
            alerts += self._judge_groups(groups, ready)
        self._remember_waiting_loss()
        return alerts

    # --- the training loss ----------------------------------------------------------------------

    def _take_loss(self, view: RunView) -> list[Loss]:
        """This batch's training-loss points (every train-loss tag, merged by seq), for ``_loss_at``;
        returns the non-finite ones as ``[seq, step, wall]`` (``overflow.nonfinite_losses``)."""
        q, st, wt, v = train_loss(view)
        self._loss_seq, self._loss_val = q, v
        if v.size == 1:  # a live feed's point: the same answers without numpy's set-up
            if self.first_loss[0] < 0 and isfinite(v[0]):
                self.first_loss = [int(q[0]), float(v[0])]
        elif self.first_loss[0] < 0 and np.isfinite(v).any():
            k = int(np.argmax(np.isfinite(v)))
            self.first_loss = [int(q[k]), float(v[k])]
        return nonfinite_losses(view, q, st, wt, v)

    def _loss_at(self, seqs: np.ndarray) -> np.ndarray:
        """The latest training loss at or before each seq (NaN: none logged yet). A seq before this
        batch's losses takes the previous batch's last loss, or, for a gradient point that waited in a
        group across batches, the loss stored with it when it arrived."""
        seqs = np.asarray(seqs, dtype=np.int64)
        out = np.full(seqs.size, np.nan)
        found = np.zeros(seqs.size, dtype=bool)
        if self._loss_seq.size:
            i = np.searchsorted(self._loss_seq, seqs, side="right") - 1
            found = i >= 0
            out[found] = self._loss_val[i[found]]
        if not found.all():
            stored = {int(q): float(v) for q, v in self.waiting_loss}
            prev = self.loss_last[1] if self.loss_last[0] >= 0 else float("nan")
            out[~found] = [stored.get(int(q), prev) for q in seqs[~found]]
        return out

    def _loss_at_one(self, seq: int) -> float:
        """``_loss_at`` of one seq, in plain Python (a live feed's total-norm point)."""
        if self._loss_seq.size and self._loss_seq[0] <= seq:
            return float(self._loss_val[int(np.searchsorted(self._loss_seq, seq, side="right")) - 1])
        for q, v in self.waiting_loss:
            if int(q) == seq:
                return float(v)
        return self.loss_last[1] if self.loss_last[0] >= 0 else float("nan")

    def _remember_waiting_loss(self) -> None:
        """Keep the loss as of each still-waiting gradient point (its group may close in a later batch),
        and the batch's last loss point."""
        waiting = self.groups.waiting_points()
        self.waiting_loss = [[int(q), float(v)] for q, v in zip(waiting, self._loss_at(waiting))] if waiting.size else []
        if self._loss_seq.size:
            self.loss_last = [int(self._loss_seq[-1]), float(self._loss_val[-1])]
        # The batch's loss arrays served the lookups above; an idle run keeps only the numbers saved here.
        self._loss_seq, self._loss_val = np.zeros(0, dtype=np.int64), np.zeros(0)

    # --- the total norm: growth and loss scale ---------------------------------------------------

    def _total_series(self, tag: str, seq: np.ndarray, steps: np.ndarray, walls: np.ndarray, values: np.ndarray,
                      bad_loss: list[Loss]) -> list[Alert]:
        """A logged total norm, with this batch's non-finite losses merged in by seq as NaN points."""
        run = self.tags.setdefault(f"nan:{tag}", {"run": False})
        q, st, wt, v, virtual = _merge_losses(seq, steps, walls, values, bad_loss, run["run"])
        if virtual.size:
            run["run"] = bool(virtual[-1])
        if q.size == 1 and self._quiet_total(self._total_state(tag), float(v[0]), self._loss_at_one(int(q[0]))):
            self.quiet(KIND, tag, 1, self.p["rearm"])
            return []
        levels, info = self._total_conditions(tag, q, st, wt, v, self._loss_at(q))
        return self._emit(tag, levels, st, info)

    def _total_state(self, key: str) -> dict[str, Any]:
        return self.tags.setdefault(f"total:{key}", {"base": [], "streak": Streak().to_json(),
                                                     "loss_streak": Streak().to_json()})

    def _total_conditions(self, key: str, seqs: np.ndarray, steps: np.ndarray, walls: np.ndarray, values: np.ndarray,
                          loss: np.ndarray) -> tuple[np.ndarray, Info]:
        p = self.p
        st = self._total_state(key)
        base, counted = _early_levels(st, values, p["baseline_points"], p["min_baseline_points"],
                                     (p["growth"], p["growth_first"]))
        factor = np.where(counted >= p["min_baseline_points"], p["growth"], p["growth_first"])
        nan = np.isnan(values)
        with np.errstate(invalid="ignore", divide="ignore"):
            grown_start, grown_cont = values > factor * base, (values > p["growth_continue"] * base) | nan
            scale = values / np.maximum(1.0, np.abs(loss))
            peaks = np.fmax.accumulate(np.concatenate([[st.get("peak", 0.0)],
                                                       np.where(np.isfinite(values), values, -np.inf)]))[1:]
            if peaks.size:
                st["peak"] = float(peaks[-1])
            recovered, st["undone"] = self._recovered(seqs, values, peaks, loss, float(p["min_norm"]),
                                                      bool(st.get("undone", False)))
            loud = (scale > p["loss_ratio"]) & ~recovered
        levels = np.zeros(len(steps), dtype=int)
        info: Info = {}
        for name, start, cont, field, aux, patience in (
                ("growth", grown_start, grown_cont, "streak", base, p["growth_patience"]),
                ("loss_scale", loud, loud | nan, "loss_streak", loss, p["ratio_patience"])):
            streak = Streak.from_json(st[field])
            run_len, first, _ = continued_streak(start, cont, values, streak, steps, walls)
            st[field] = streak.to_json()
            if streak.length == 0 and not run_len.any():  # no run in this batch (the usual case): nothing due
                continue
            began = st.get(f"{field}_began", [-1, float("nan"), float("nan"), float("nan")])  # step, wall, value, aux
            due = streak_due(run_len, nan, patience)
            levels = np.maximum(levels, due.astype(int) * WARNING)
            for i in due_starts(due):
                k = int(first[i])
                step, wall, value, ref = (int(began[0]), float(began[1]), float(began[2]), float(began[3])) if k < 0 \
                    else (int(steps[k]), float(walls[k]), float(values[k]), float(aux[k]))
                d: dict[str, Any] = {"step": step, "wall": wall, "noticed_step": int(steps[i]), "value": value,
                                     "noticed_value": float(values[i])}
                now = f"overflowed (NaN) by step {int(steps[i])}" if nan[i] else None
                if not isfinite(float(values[i])):  # an infinite norm continues the streak: say so, not "infx"
                    now = now or f"was {fmt_number(float(values[i]))} at step {int(steps[i])}"
                if name == "growth":
                    now = now or f"was still {fmt_number(float(values[i]) / ref)}x it at step {int(steps[i])}"
                    d.update({"condition": "growth", "baseline": ref, "message": (
                        f"{key} grew to {fmt_number(value)} ({fmt_number(value / ref)}x its early level "
                        f"{fmt_number(ref)}) at step {step} and {now}; clip gradients (e.g. max norm 1.0) or lower "
                        "the learning rate")})
                else:
                    now = now or f"still {fmt_number(float(scale[i]))}x at step {int(steps[i])}"
                    d.update({"condition": "loss_scale", "loss": ref, "ratio": value / max(1.0, abs(ref)), "message": (
                        f"{key} is {fmt_number(value)} at step {step}, {fmt_number(value / max(1.0, abs(ref)))}x the "
                        f"training loss {fmt_number(ref)} (> {fmt_number(p['loss_ratio'])}x), and {now}: no loss that "
                        "size produces such gradients unless the network multiplies them on the way back (exploding "
                        "through depth or time); clip gradients, lower the initialisation scale or the recurrent "
                        "gain")})
                info.setdefault(int(i), d)
            if streak.length > 0 and first.size and first[-1] >= 0:  # the open run began in this batch: keep its start
                k = int(first[-1])
                st[f"{field}_began"] = [int(steps[k]), float(walls[k]), float(values[k]), float(aux[k])]
        return levels, info

    def _quiet_total(self, st: dict[str, Any], value: float, loss: float) -> bool:
        """``_total_conditions`` for one point where nothing can happen (a live feed's usual point): the
        early level is settled, no streak runs, and neither growth nor the loss scale begins here. Then
        only the peak moves, on Python floats; False (nothing changed) sends the point the vectorised way."""
        p = self.p
        level = st.get("level")
        if level is None or not isfinite(value) or st["streak"][0] or st["loss_streak"][0]:
            return False
        factor = p["growth"] if len(st["base"]) >= p["min_baseline_points"] else p["growth_first"]
        if value > factor * level or (loss == loss and value / max(1.0, abs(loss)) > p["loss_ratio"]):
            return False
        st["peak"] = max(st.get("peak", 0.0), value)
        st["undone"] = st.get("undone", False) or self._undoes(value, st["peak"], float(p["min_norm"]))
        for field in ("streak", "loss_streak"):
            st[field] = [0, -1, float(st[field][2]), float(st[field][3])]
        return True

    # --- per-layer groups: layer ratio, backward growth, and the stand-in total -------------------

    def _judge_groups(self, groups: list[Groups], ready: list[Loss]) -> list[Alert]:
        """Layer ratio, backward growth and the stand-in total over one sequence of items in seq order:
        each group at its last point, and the non-finite losses (a run of them with no group in between
        once; none before the run's first group), which continue a streak begun at a group but never
        start one. They share one episode per run under the first compared layer's tag: a blown-up
        first layer shows in the ratio and in the total alike."""
        m = self.overflow.merge(groups, ready, seen=bool(self.group_tag))
        if not len(m):
            return []
        n, steps, walls, seqs, virtual, where = len(m), m.steps, m.walls, m.seqs, m.virtual, m.where
        for g in groups:
            self.group_tag = g.tags[compared_layers(g)[0]]
        levels = np.zeros(n, dtype=int)
        info: Info = {}
        sizes, gate = np.full(n, np.nan), float(self.p["min_rms"])
        for g in groups:
            size, gate, _ = self._gradient_size(g)
            sizes[where[id(g)]] = size
        peaks = np.fmax.accumulate(np.concatenate([[self.size_peak], np.where(np.isfinite(sizes), sizes, -np.inf)]))[1:]
        self.size_peak = float(peaks[-1])
        recovered, self.size_undone = self._recovered(seqs, sizes, peaks, self._loss_at(seqs), gate, self.size_undone)
        for name, rows in (("layer_ratio", self._ratio_rows), ("backward_growth", self._bias_rows)):
            cond = np.zeros(n, dtype=bool)
            value = np.full(n, np.nan)
            detail: dict[int, tuple[Callable[[int], dict[str, Any]], int]] = {}
            for g in groups:
                at = where[id(g)]
                c, v, fn = rows(g)
                cond[at], value[at] = c & ~recovered[at], v
                detail.update({int(k): (fn, j) for j, k in enumerate(at)})
            lv, inf = self._layer_condition(name, cond, virtual, value, steps, walls, detail)
            levels = np.maximum(levels, lv)
            for i, d in inf.items():
                info.setdefault(i, d)
        # The stand-in total: groups before the run's first logged total norm, with the non-finite
        # losses of that stretch.
        stand = (steps < self.total_step) if self.total_step >= 0 else np.ones(n, dtype=bool)
        totals = np.full(n, np.nan)
        for g in groups:
            totals[where[id(g)]] = _group_totals(g)
        if stand.any():
            at = np.flatnonzero(stand)
            loss = self._loss_at(seqs[at])
            grow, grow_info = self._total_conditions(ALL_LAYERS, seqs[at], steps[at], walls[at], totals[at], loss)
            levels[at] = np.maximum(levels[at], grow)
            for i, d in grow_info.items():
                info.setdefault(int(at[i]), d)
        lv, inf = self._overflow(groups, where, virtual, steps, walls)
        levels = np.maximum(levels, lv)
        for i, d in inf.items():
            info.setdefault(i, d)
        return self._emit(self.group_tag, levels, steps, info)

    def _layer_condition(self, name: str, cond: np.ndarray, virtual: np.ndarray, value: np.ndarray, steps: np.ndarray,
                         walls: np.ndarray, detail: dict[int, tuple[Callable[[int], dict[str, Any]], int]]
                         ) -> tuple[np.ndarray, Info]:
        streak = self.streaks[name]
        run_len, first, carried = continued_streak(cond, cond | virtual, value, streak, steps, walls)
        due = streak_due(run_len, virtual, self.p["ratio_patience"])
        levels = due.astype(int) * WARNING
        info: Info = {}
        for i in due_starts(due):
            k = int(first[i])
            step, wall, _ = carried if k < 0 else (int(steps[k]), float(walls[k]), 0.0)
            fn_j = detail.get(int(i)) or detail.get(k)  # the noticing group's details, or where the run began
            d = dict(fn_j[0](fn_j[1]) if fn_j else self.starts.get(name, {}))
            d["message"] = d.get("message", "").replace(STEP, str(step))
            info[int(i)] = {"step": step, "wall": wall, **d, "noticed_step": int(steps[i])}
        if streak.length > 0 and first[-1] >= 0:  # the open streak began in this batch: keep its details
            fn, j = detail[int(first[-1])]
            self.starts[name] = fn(j)
        return levels, info

    def _ratio_rows(self, g: Groups) -> Rows:
        """The largest weight gradient of the input-side half over the last layer's (AUTOTRAINER's β3).
        The largest, not only the first: explosion grows toward the input, but a tiny first layer (a 3x3
        conv with 72 weights) has a small *norm* even when its RMS is huge."""
        idx = compared_layers(g)
        n = len(g.steps)
        if len(idx) < 2:
            return np.zeros(n, dtype=bool), np.full(n, np.nan), lambda j: {}
        side = idx[: max(1, len(idx) // 2)]
        top = np.argmax(np.nan_to_num(g.values[:, side], nan=-np.inf), axis=1)  # a NaN layer is never the largest
        biggest = g.values[np.arange(n), np.asarray(side)[top]]
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = biggest / g.values[:, idx[-1]]
        unit = "RMS" if g.source == HIST else "norm"
        p = self.p

        def detail(j: int) -> dict[str, Any]:
            layer, last, r = g.layers[side[int(top[j])]], g.layers[idx[-1]], float(ratio[j])
            return {
                "message": (
                    f"exploding gradients since step {STEP}: input-side layer {layer} gets {fmt_number(r)}x the "
                    f"gradient {unit} of the last layer {last} (> {fmt_number(p['ratio'])}x); use a smaller "
                    "initialisation scale, normalisation, or gradient clipping"),
                "condition": "layer_ratio", "ratio": r, "first_layer": g.layers[idx[0]], "input_side_layer": layer,
                "last_layer": last, "source": g.source,
            }

        with np.errstate(invalid="ignore"):
            return ratio > p["ratio"], ratio, detail

    def _bias_rows(self, g: Groups) -> Rows:
        """Bias gradients (the back-propagated error, no activation in it) growing from the output layer
        back to the input, while the weight gradients are large in absolute terms."""
        p = self.p
        n = len(g.steps)
        bidx = bias_order(list(g.layers))
        if len(bidx) < 2:
            return np.zeros(n, dtype=bool), np.full(n, np.nan), lambda j: {}
        side = bidx[: max(1, len(bidx) // 2)]
        top = np.argmax(np.nan_to_num(g.values[:, side], nan=-np.inf), axis=1)
        biggest = g.values[np.arange(n), np.asarray(side)[top]]
        last = g.values[:, bidx[-1]]
        hist = g.source == HIST
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(last > 0, biggest / last, np.nan)  # an output bias with no gradient says nothing
        size, gate, what = self._gradient_size(g)
        threshold = p["bias_ratio"] if hist else p["bias_ratio_norm"]
        unit = "RMS" if hist else "norm"

        def detail(j: int) -> dict[str, Any]:
            layer, out, r, sz = g.layers[side[int(top[j])]], g.layers[bidx[-1]], float(ratio[j]), float(size[j])
            return {
                "message": (
                    f"exploding gradients since step {STEP}: the bias gradient {unit} of input-side layer {layer} is "
                    f"{fmt_number(r)}x the output layer's ({out}; > {fmt_number(threshold)}x) and the {what} is "
                    f"{fmt_number(sz)}: the backward pass grows layer by layer (or step by step through time); use a "
                    "smaller initialisation scale (He/Kaiming gain 1, recurrent gain <= 1), normalisation or residual "
                    "connections, and clip gradients"),
                "condition": "backward_growth", "ratio": r, "input_side_layer": layer, "output_layer": out,
                "gradient_size": sz, "source": g.source,
            }

        with np.errstate(invalid="ignore"):
            return (ratio > threshold) & (size > gate), ratio, detail

    def _recovered(self, seqs: np.ndarray, sizes: np.ndarray, peaks: np.ndarray, loss: np.ndarray,
                   gate: float, undone: bool) -> tuple[np.ndarray, bool]:
        """Per point: an explosion the optimiser is undoing, which is no training problem (AUTOTRAINER and
        DeepDiagnosis report a gradient problem only with a training symptom). The gradient size is
        ``recovered`` (10) x below its peak so far and under ``recovered`` x its absolute gate, and the
        training loss is ``recovered`` x below the run's first (untrained) loss. Once the gradients have been
        back under the gate itself (``_undoes``; ``undone``: before these points), the undoing is over: from
        then on only gradients under the gate are recovered, and large ones that hold again are the run's
        own. Returns the points' verdicts and ``undone`` after them."""
        known = (self.first_loss[0] >= 0) & (np.asarray(seqs) >= self.first_loss[0])  # as of each point
        first = np.where(known, self.first_loss[1], np.nan)
        r = self.p["recovered"]
        dips = self._undoes(sizes, peaks, gate)
        before = np.logical_or.accumulate(np.concatenate([[undone], dips]))
        with np.errstate(invalid="ignore"):
            under = sizes < np.where(before[:-1], 1.0, r) * gate
            return (sizes * r <= peaks) & under & (np.abs(loss) * r <= np.abs(first)), bool(before[-1])

    def _undoes(self, size: Any, peak: Any, gate: float) -> Any:
        """Whether a gradient size ends the undoing of an explosion: under its gate, after a peak of at least
        ``recovered`` x the gate (an explosion there was); per point, on arrays or floats alike."""
        with np.errstate(invalid="ignore"):
            return (size < gate) & (peak >= self.p["recovered"] * gate)

    def _gradient_size(self, g: Groups) -> tuple[np.ndarray, float, str]:
        """How large the weight gradients are in absolute terms, per group, with the gate it is compared
        with: the median weight layer's per-element RMS (histograms; a layer not logged at that step left
        out) against ``min_rms``, or the total norm (norm scalars) against ``min_norm``."""
        n = len(g.steps)
        with np.errstate(invalid="ignore", over="ignore"):
            if g.source == HIST:
                w = g.values[:, compared_layers(g)]
                if np.isnan(w).any():
                    some = ~np.isnan(w).all(axis=1)
                    size = np.full(n, np.nan)
                    size[some] = np.nanmedian(w[some], axis=1)
                else:
                    size = np.median(w, axis=1)
                return size, float(self.p["min_rms"]), "median weight-gradient RMS"
            size = np.sqrt(np.sum(np.nan_to_num(g.values, nan=0.0) ** 2, axis=1))
            return size, float(self.p["min_norm"]), "total gradient norm"

    def _overflow(self, groups: list[Groups], where: dict[int, np.ndarray], virtual: np.ndarray, steps: np.ndarray,
                  walls: np.ndarray) -> tuple[np.ndarray, Info]:
        """Large gradients at the last gradient log before the training loss overflowed: the run broke while
        the gradients were far above what a mean-reduced loss of order one produces (median weight RMS
        > ``min_rms``), so an explosion was under way, even where the run lived for one gradient log only.
        Dated at that log. A sum-reduced loss whose large gradients are normal does not overflow."""
        n = steps.size
        large = np.zeros(n, dtype=bool)
        sizes = np.full(n, np.nan)
        gate, what = float(self.p["min_rms"]), ""
        for g in groups:
            size, gate, what = self._gradient_size(g)
            at = where[id(g)]
            with np.errstate(invalid="ignore"):
                large[at] = size > gate
            sizes[at] = size
        levels = np.zeros(n, dtype=int)
        info: Info = {}
        prev = self.overflow_prev
        for i in range(n):
            if virtual[i]:
                if prev:
                    levels[i] = WARNING
                    info[i] = {"step": int(prev[0]), "wall": float(prev[1]), "noticed_step": int(steps[i]),
                               "condition": "overflow", "gradient_size": float(prev[2]), "message": (
                                   f"exploding gradients at step {int(prev[0])}: the {prev[3]} was "
                                   f"{fmt_number(float(prev[2]))} (> {fmt_number(float(prev[4]))}) and the training "
                                   f"loss overflowed (non-finite) by step {int(steps[i])}; lower the learning rate or "
                                   "the initialisation scale, and clip gradients")}
                prev = []
            else:
                prev = [int(steps[i]), float(walls[i]), float(sizes[i]), what, gate] if large[i] else []
        self.overflow_prev = prev
        return levels, info

    # --- alerts ---------------------------------------------------------------------------------

    def _emit(self, tag: str, levels: np.ndarray, steps: np.ndarray, info: Info) -> list[Alert]:
        alerts = []
        for i in self.events(KIND, tag, levels, steps, self.p["rearm"]):
            if int(i) not in info:  # cannot happen: a warning level begins where a streak completes
                continue
            d = dict(info[int(i)])
            step, wall, message = d.pop("step"), d.pop("wall"), d.pop("message")
            alerts.append(self.alert(kind=KIND, level=WARNING, step=step, wall_time=wall, tag=tag, message=message,
                                     evidence=d))
        return alerts

    def _nonfinite(self, view: RunView) -> list[Alert]:
        hists = [i.series for i in view.signal(GRAD_HISTOGRAM) if len(i.series)]
        counts = [i.series for i in view.signal(GRAD_NONFINITE) if len(i.series)]
        norms = [i.series for i in view.signal(GRAD_NORM) if len(i.series)]  # per-layer and total norms
        if not hists and (counts or norms):  # a live feed's usual points: all finite, only the quiet count moves
            count_values = np.concatenate([s.value for s in counts]) if counts else np.zeros(0)
            norm_values = np.concatenate([s.value for s in norms]) if norms else np.zeros(0)
            if not count_values.any() and np.isfinite(norm_values).all():
                self.quiet(KIND, "*nonfinite", count_values.size + norm_values.size, self.p["rearm"])
                return []
        parts = []
        for s in hists:
            assert isinstance(s, HistogramSeries)
            bad = ~(np.isfinite(s.min) & np.isfinite(s.max) & np.isfinite(s.sum) & np.isfinite(s.sum_squares))
            parts.append((s, bad, s.max))
        parts += [(s, ~(s.value == 0), s.value) for s in counts]
        parts += [(s, ~np.isfinite(s.value), s.value) for s in norms]  # a NaN/Inf norm is a NaN/Inf gradient
        if not parts:
            return []
        alerts = []
        merged = [(s.seq, s.step, bad.astype(int) * CRITICAL) for s, bad, _ in parts]
        for k, i in self.merged_events(KIND, "*nonfinite", merged, self.p["rearm"]):
            s, _, shown = parts[k]
            self.nonfinite_tag = s.tag
            alerts.append(self.alert(
                kind=KIND, level=CRITICAL, step=int(s.step[i]), wall_time=float(s.wall_time[i]), tag=s.tag,
                message=(f"non-finite gradient in {s.tag} at step {int(s.step[i])} (value {fmt_number(float(shown[i]))}); "
                         "lower the learning rate, clip gradients, or check for log(0)/division by zero"),
                evidence={"condition": "non_finite", "value": float(shown[i])},
            ))
        return alerts


def _group_totals(g: Groups) -> np.ndarray:
    """The total gradient norm of each group: exact from histogram RMS and element counts, else the
    root-sum-square of the per-layer norms (every parameter, as ``clip_grad_norm_`` counts them). A layer
    missing at that step (or NaN: the non-finite test reports it) is left out; +inf stays +inf."""
    v = g.values
    if g.source == HIST:
        v = v * np.sqrt(np.asarray(g.sizes, dtype=float))
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.sqrt(np.nansum(v * v, axis=1))
    return np.where(np.isnan(v).all(axis=1), np.nan, total)


def _early_levels(st: dict[str, Any], values: np.ndarray, full: int, least: int, factors: tuple[float, float]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per point, the early level it is judged against (the median of the finite values before it, up to
    ``full`` of them; NaN while none precede it) and how many values that median holds (``least`` or more:
    the ordinary growth threshold ``factors[0]``; fewer: the stricter ``factors[1]``). A value that is
    itself above the threshold is growth, not the early level, and does not join it (with one or two
    values before it, the median would otherwise take the blow-up in). Updates ``st["base"]``."""
    base = st["base"]
    if len(base) >= full:  # the usual case once the run is under way: one level, computed once
        if "level" not in st:
            st["level"] = float(np.median(base))
        return np.full(values.size, st["level"]), np.full(values.size, len(base))
    out = np.full(values.size, np.nan)
    count = np.zeros(values.size, dtype=np.int64)
    i = 0
    while i < values.size and len(base) < full:
        if base:
            out[i], count[i] = float(np.median(base)), len(base)
        grown = bool(base) and values[i] > (factors[0] if len(base) >= least else factors[1]) * out[i]
        if np.isfinite(values[i]) and not grown:
            base.append(float(values[i]))
        i += 1
    if len(base) >= full:
        st["level"] = float(np.median(base))
    out[i:] = float(np.median(base)) if i < values.size else 0.0
    count[i:] = len(base)
    st["base"] = base
    return out, count


def _merge_losses(seq: np.ndarray, steps: np.ndarray, walls: np.ndarray, values: np.ndarray,
                  bad_loss: list[list[float]], in_run: bool
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A total-norm series with the non-finite training losses merged in by seq as NaN points, a run of
    them with no norm point in between counted once (``in_run``: the previous batch ended in one)."""
    if not bad_loss:
        return seq, steps, walls, values, np.zeros(seq.size, dtype=bool)
    q = np.concatenate([seq, np.array([r[0] for r in bad_loss], dtype=np.int64)])
    order = np.argsort(q, kind="stable")
    st = np.concatenate([steps, np.array([r[1] for r in bad_loss], dtype=np.int64)])[order]
    wt = np.concatenate([walls, np.array([r[2] for r in bad_loss], dtype=float)])[order]
    v = np.concatenate([values, np.full(len(bad_loss), np.nan)])[order]
    virtual = np.concatenate([np.zeros(seq.size, dtype=bool), np.ones(len(bad_loss), dtype=bool)])[order]
    keep = ~(virtual & np.concatenate([[in_run], virtual[:-1]]))
    return q[order][keep], st[keep], wt[keep], v[keep], virtual[keep]
