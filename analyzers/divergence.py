"""`divergence`: the loss (or the total gradient norm) went non-finite, spiked, or blew up.

Three conditions, one episode per tag (a later, more severe condition in the same episode is
reported once as an escalation):

* non-finite loss / total grad norm → critical at the first such point (Keras TerminateOnNaN,
  Lightning ``check_finite``, SageMaker ExplodingTensor). A NaN grad norm beside a loss of
  exactly 0.0 is called out: HF Transformers' ``logging_nan_inf_filter`` hides NaN losses.
* spike: a training-loss value more than ``spike_sigma`` robust σ (1.4826·MAD) above the
  median of the previous ``spike_window`` finite values, once ``spike_min_history`` exist
  (OLMo-core's 6σ / 128 / 64 rule, made robust with median/MAD so the spike itself and
  heavy-tailed SGD noise do not inflate σ) and at least ``spike_min_rise`` × |median| above
  it (a σ of a very smooth curve can be tiny; a 5% wiggle is not a divergence) → warning.
* blow-up: the smoothed training loss (median of the last ``smooth_window`` values) stays
  above its best by more than ``blowup_fraction`` of the progress made (initial − best, at
  least ``blowup_floor`` × |initial|) for ``blowup_patience`` consecutive points → critical,
  dated at the first of those points.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from tbmon.analyzers.alerts import Alert
from tbmon.analyzers.base import BaseRule, RunView, ScalarContext, Tagged
from tbmon.analyzers.series import ScalarSeries
from tbmon.analyzers.signals import GRAD_NORM, LEARNING_RATE, TRAIN_LOSS, VAL_LOSS
from tbmon.analyzers.windows import (
    MAD_TO_SIGMA,
    Streak,
    running_min,
    streak_update,
    trailing_median,
    trailing_window_stats,
)

KIND = "divergence"
WARNING, CRITICAL = 1, 2


def fmt(x: float) -> str:
    if np.isnan(x):
        return "NaN"
    if np.isinf(x):
        return "+inf" if x > 0 else "-inf"
    return f"{x:.4g}"


def lr_advice(lr: float, peak: float, first: float) -> str:
    """One likely cause and fix, using the learning rate when the run logs it."""
    if np.isnan(lr):
        return "a learning rate that is too high is the usual cause: lower it or clip gradients"
    if np.isfinite(peak) and first > 0 and peak > 1.5 * first:
        return f"after lr warm-up reached {fmt(peak)}; try a lower peak lr or gradient clipping"
    return f"at lr {fmt(lr)}; try a lower lr or gradient clipping"


class Divergence(BaseRule):
    name: ClassVar[str] = "divergence"
    defaults: ClassVar[dict[str, Any]] = {
        "spike_window": 128,
        "spike_min_history": 64,
        "spike_sigma": 6.0,
        "spike_min_rise": 0.25,
        "smooth_window": 9,
        "initial_points": 8,
        "blowup_fraction": 0.5,
        "blowup_floor": 0.25,
        "blowup_patience": 20,
        "rearm": 100,
    }

    def __init__(self, run: str, params: dict[str, Any]) -> None:
        super().__init__(run, params)
        self.lr = ScalarContext()
        self.loss = ScalarContext()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "lr": self.lr.state(), "loss": self.loss.state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.lr.load(state["lr"])
        self.loss.load(state["loss"])

    def feed(self, view: RunView) -> list[Alert]:
        self.lr.update(view.signal(LEARNING_RATE))
        self.loss.update(view.signal(TRAIN_LOSS))
        alerts: list[Alert] = []
        for item in view.scalars:
            signal = item.match.signal
            if signal == TRAIN_LOSS:
                alerts += self._loss(item, train=True)
            elif signal == VAL_LOSS:
                alerts += self._loss(item, train=False)
            elif signal == GRAD_NORM and item.match.param is None:
                alerts += self._grad_norm(item.series)
        return alerts

    # --- training / validation loss -------------------------------------------------------

    def _loss(self, item: Tagged, *, train: bool) -> list[Alert]:
        s = item.series
        assert isinstance(s, ScalarSeries)
        n = len(s)
        if n == 0:
            return []
        st = self.tags.setdefault(s.tag, {"hist": [], "init": [], "best": None, "streak": Streak().to_json()})
        p = self.p
        levels = np.where(np.isfinite(s.value), 0, CRITICAL)
        fidx = np.flatnonzero(levels == 0)
        fv = s.value[fidx]
        hist = np.asarray(st["hist"], dtype=float)
        spike_info: dict[int, tuple[float, float]] = {}
        blow_start: dict[int, tuple[int, float, float]] = {}
        blow_info: dict[int, tuple[float, float]] = {}
        if train and fv.size:
            # Spike: robust z-score against the previous window of finite values.
            med, mad = trailing_window_stats(hist, fv, p["spike_window"], p["spike_min_history"])
            rise = fv - med
            with np.errstate(invalid="ignore"):
                spike = (rise > p["spike_sigma"] * MAD_TO_SIGMA * mad) & (rise > p["spike_min_rise"] * np.abs(med))
            for j in np.flatnonzero(spike):
                spike_info[int(fidx[j])] = (float(med[j]), float(mad[j]))
            levels[fidx[spike]] = WARNING
            # Blow-up: smoothed loss far above its best, for a while.
            self._blowup(st, s, fidx, fv, hist, levels, blow_start, blow_info)
        st["hist"] = np.concatenate([hist, fv])[-p["spike_window"] :].tolist()
        alerts = []
        for i in self.events(KIND, s.tag, levels, s.step, p["rearm"]):
            i = int(i)
            lr, _, peak = self.lr.at(int(s.seq[i]))
            advice = lr_advice(lr, peak, self.lr.first)
            value = float(s.value[i])
            evidence: dict[str, Any] = {"value": value, "lr": lr}
            if not np.isfinite(value):
                step, wall = int(s.step[i]), float(s.wall_time[i])
                message = f"{s.tag} is {fmt(value)} at step {step} ({advice})"
                evidence["condition"] = "non_finite"
            elif i in blow_info:
                step, wall, start_value = blow_start[i]
                best, level = blow_info[i]
                message = (
                    f"{s.tag} blew up: smoothed loss rose from its best {fmt(best)} to {fmt(level)} "
                    f"and stayed up for {p['blowup_patience']} points since step {step} ({advice})"
                )
                evidence.update(condition="blowup", best=best, smoothed=level, value=start_value)
            else:
                step, wall = int(s.step[i]), float(s.wall_time[i])
                med, mad = spike_info[i]
                sigmas = (value - med) / (MAD_TO_SIGMA * mad) if mad > 0 else float("inf")
                message = (
                    f"{s.tag} spiked to {fmt(value)} at step {step}, {fmt(sigmas)}σ above its recent "
                    f"median {fmt(med)} (if spikes recur: {advice})"
                )
                evidence.update(condition="spike", median=med, robust_sigma=MAD_TO_SIGMA * mad)
            alerts.append(
                self.alert(
                    kind=KIND, level=int(levels[i]), step=step, wall_time=wall, tag=s.tag,
                    message=message, evidence=evidence,
                )
            )
        return alerts

    def _blowup(
        self,
        st: dict[str, Any],
        s: ScalarSeries,
        fidx: np.ndarray,
        fv: np.ndarray,
        hist: np.ndarray,
        levels: np.ndarray,
        blow_start: dict[int, tuple[int, float, float]],
        blow_info: dict[int, tuple[float, float]],
    ) -> None:
        p = self.p
        smooth = trailing_median(hist, fv, p["smooth_window"])
        need = p["initial_points"] - len(st["init"])
        if need > 0:
            st["init"] = st["init"] + fv[:need].tolist()
            if len(st["init"]) < p["initial_points"]:
                return
            st["best"] = float(np.median(st["init"]))
        first = max(need, 0)
        sm, idx = smooth[first:], fidx[first:]
        if sm.size == 0:
            return
        initial = float(np.median(st["init"]))
        best_prev = running_min(st["best"], np.concatenate([[st["best"]], sm[:-1]]))
        threshold = p["blowup_fraction"] * np.maximum(initial - best_prev, p["blowup_floor"] * abs(initial))
        cond = sm - best_prev > threshold
        streak = Streak.from_json(st["streak"])
        carried = (streak.start_step, streak.start_wall, streak.start_value)
        run_len, start = streak_update(cond, streak, s.step[idx], s.wall_time[idx], s.value[idx])
        st["streak"] = streak.to_json()
        st["best"] = float(min(best_prev[-1], sm[-1]))
        blown = run_len >= p["blowup_patience"]
        levels[idx[blown]] = np.maximum(levels[idx[blown]], CRITICAL)
        for j in np.flatnonzero(blown):
            i = int(idx[j])
            k = int(start[j])
            blow_start[i] = carried if k < 0 else (int(s.step[idx[k]]), float(s.wall_time[idx[k]]), float(s.value[idx[k]]))
            blow_info[i] = (float(best_prev[j]), float(sm[j]))

    # --- total gradient norm ----------------------------------------------------------------

    def _grad_norm(self, s: ScalarSeries) -> list[Alert]:
        if len(s) == 0:
            return []
        levels = np.where(np.isfinite(s.value), 0, CRITICAL)
        alerts = []
        for i in self.events(KIND, s.tag, levels, s.step, self.p["rearm"]):
            i = int(i)
            step, value = int(s.step[i]), float(s.value[i])
            lr, _, peak = self.lr.at(int(s.seq[i]))
            loss, loss_step, _ = self.loss.at(int(s.seq[i]))
            hidden = loss == 0.0 and loss_step == step
            message = f"{s.tag} is {fmt(value)} at step {step}"
            if hidden:
                message += (
                    f" while {self.loss.tag} reads exactly 0.0 — the trainer is hiding the NaN loss "
                    "(HF Transformers logging_nan_inf_filter)"
                )
            message += f" ({lr_advice(lr, peak, self.lr.first)})"
            alerts.append(
                self.alert(
                    kind=KIND, level=CRITICAL, step=step, wall_time=float(s.wall_time[i]), tag=s.tag,
                    message=message,
                    evidence={"value": value, "condition": "non_finite_grad_norm", "loss": loss,
                              "loss_hidden": hidden, "lr": lr},
                )
            )
        return alerts
