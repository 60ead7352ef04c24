"""`divergence`: the loss (or the total gradient norm) went non-finite, spiked, exploded or blew up.

Watched tags: training loss, validation loss, total gradient norm. Their points are merged by
``seq`` into one episode per run (a NaN seen in the loss, the grad norm and the validation loss
is one alert); a later, more severe condition in the same episode is reported once as an
escalation (spike warning → critical).

* non-finite value → critical at that point (Keras TerminateOnNaN, Lightning ``check_finite``,
  SageMaker ExplodingTensor). A NaN grad norm beside a loss of exactly 0.0 at the same step is
  called out: HF Transformers' ``logging_nan_inf_filter`` hides NaN losses that way.
* spike (training loss) → warning: more than ``spike_sigma`` robust σ (1.4826·MAD) above the
  median of the previous ``spike_window`` finite values (OLMo-core's 6σ / 128 rule, with
  median/MAD so the spike itself and heavy-tailed minibatch noise do not inflate σ; non-finite
  values never enter the window), once ``spike_min_history`` values exist, and at least
  ``spike_min_rise`` × |median| above it (the loss at least doubled).
* explosion → critical: a spike more than ``explosion_factor`` × max(|median|, |initial loss|)
  above the median: an order of magnitude worse than an untrained model.
* blow-up → critical, dated at its first point: the smoothed training loss (median of the last
  ``smooth_window`` values) stays above its best by more than ``blowup_fraction`` of the progress
  made (initial − best, at least ``blowup_floor`` × |initial|) and more than
  ``blowup_noise_sigma`` robust σ, for ``blowup_patience`` consecutive points.

Why these numbers: docs/analyzers.md (measured on the tests/scenarios corpus).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from tbmon.analyzers.alerts import Alert
from tbmon.analyzers.base import BaseRule, RunView, ScalarContext, Tagged
from tbmon.analyzers.numbers import fmt_number
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
STRIDE = 8  # window statistics are refreshed every 8 values (one median per block: 8x cheaper)
WARNING, CRITICAL = 1, 2


def lr_advice(lr: float, peak: float, first: float) -> str:
    """One likely cause and fix, using the learning rate when the run logs it."""
    if np.isnan(lr):
        return "a learning rate that is too high is the usual cause: lower it or clip gradients"
    if np.isfinite(peak) and first > 0 and peak > 1.5 * first:
        return f"after lr warm-up reached {fmt_number(peak)}; try a lower peak lr or gradient clipping"
    return f"at lr {fmt_number(lr)}; try a lower lr or gradient clipping"


class Divergence(BaseRule):
    name: ClassVar[str] = "divergence"
    defaults: ClassVar[dict[str, Any]] = {
        "spike_window": 128,
        "spike_min_history": 16,
        "spike_sigma": 6.0,
        "spike_min_rise": 1.0,
        "smooth_window": 9,
        "initial_points": 8,
        "blowup_fraction": 0.5,
        "blowup_floor": 1.0,
        "blowup_patience": 20,
        "blowup_noise_sigma": 3.0,
        "explosion_factor": 10.0,
        "rearm": 200,
    }

    def __init__(self, run: str, params: dict[str, Any]) -> None:
        super().__init__(run, params)
        self.lr = ScalarContext()
        self.loss = ScalarContext()
        self.alerted_tag = ""

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "lr": self.lr.state(), "loss": self.loss.state(), "alerted": self.alerted_tag}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.lr.load(state["lr"])
        self.loss.load(state["loss"])
        self.alerted_tag = state["alerted"]

    def feed(self, view: RunView) -> list[Alert]:
        self.lr.update(view.signal(LEARNING_RATE))
        self.loss.update(view.signal(TRAIN_LOSS))
        parts: list[tuple[ScalarSeries, np.ndarray, dict[int, dict[str, Any]]]] = []
        for item in view.scalars:
            signal = item.match.signal
            watched = signal in (TRAIN_LOSS, VAL_LOSS) or (signal == GRAD_NORM and item.match.param is None)
            if watched and len(item.series):
                parts.append(self._levels(item, train=signal == TRAIN_LOSS))
        if not parts:
            return []
        # One episode per run across every watched tag.
        alerts = []
        for k, i in self.merged_events(KIND, "run", [(s.seq, s.step, lv) for s, lv, _ in parts], self.p["rearm"]):
            s, lv, info = parts[k]
            alerts.append(self._alert(s, i, int(lv[i]), info))
        if alerts:
            self.alerted_tag = alerts[-1].tag
        return alerts

    def episodes(self) -> list[dict[str, Any]]:
        return [{**e, "tag": self.alerted_tag} for e in super().episodes()]

    def _levels(self, item: Tagged, *, train: bool) -> tuple[ScalarSeries, np.ndarray, dict[int, dict[str, Any]]]:
        """Per point: 0 fine, WARNING spike, CRITICAL non-finite / explosion / blow-up; with evidence."""
        s = item.series
        assert isinstance(s, ScalarSeries)
        p = self.p
        st = self.tags.setdefault(s.tag, {"hist": [], "n": 0, "init": [], "best": None, "streak": Streak().to_json()})
        levels = np.where(np.isfinite(s.value), 0, CRITICAL)
        info: dict[int, dict[str, Any]] = {}
        fidx = np.flatnonzero(levels == 0)
        fv = s.value[fidx]
        hist = np.asarray(st["hist"], dtype=float)
        if train and fv.size:
            med, mad, st["spike_block"] = trailing_window_stats(
                hist, fv, p["spike_window"], p["spike_min_history"], offset=st["n"], stride=STRIDE,
                last=st.get("spike_block"),
            )
            sigma = MAD_TO_SIGMA * mad
            rise = fv - med
            initial, initial_level = self._initial_level(st, fv)
            scale = np.fmax(np.abs(med), np.abs(initial_level))
            with np.errstate(invalid="ignore"):
                spike = (rise > p["spike_sigma"] * sigma) & (rise > p["spike_min_rise"] * np.abs(med))
                explosion = spike & (rise > p["explosion_factor"] * scale)
            for j in np.flatnonzero(spike):
                info[int(fidx[j])] = {"condition": "explosion" if explosion[j] else "spike",
                                      "median": float(med[j]), "robust_sigma": float(sigma[j])}
            levels[fidx[spike]] = np.where(explosion[spike], CRITICAL, WARNING)
            self._blowup(st, s, fidx, fv, hist, initial, self._noise(st, hist, fv), levels, info)
        st["hist"] = np.concatenate([hist, fv])[-(p["spike_window"] + STRIDE + 1) :].tolist()
        st["n"] += int(fv.size)
        return s, levels, info

    def _initial_level(self, st: dict[str, Any], fv: np.ndarray) -> tuple[float, np.ndarray]:
        """The median of the tag's first ``initial_points`` finite values (collected here), NaN
        until they have all been seen; and the same per point, NaN before its point. Known per
        point, not per batch, so a live feed and a one-shot report judge each point against the
        same level."""
        n_init = self.p["initial_points"]
        if len(st["init"]) < n_init:
            st["init"] = st["init"] + fv[: n_init - len(st["init"])].tolist()
            if len(st["init"]) < n_init:
                return float("nan"), np.full(fv.size, np.nan)
        if "initial" not in st:  # fixed from now on: kept, and recomputed if a saved state lacks it
            st["initial"] = float(np.median(st["init"]))
        initial = st["initial"]
        known = st["n"] + np.arange(fv.size) >= n_init
        return initial, np.where(known, initial, np.nan)

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

    def _alert(self, s: ScalarSeries, i: int, level: int, info: dict[int, dict[str, Any]]) -> Alert:
        p = self.p
        lr, _, peak = self.lr.at(int(s.seq[i]))
        advice = lr_advice(lr, peak, self.lr.first)
        value = float(s.value[i])
        step, wall = int(s.step[i]), float(s.wall_time[i])
        evidence: dict[str, Any] = {"value": value, "lr": lr, **info.get(i, {})}
        condition = evidence.get("condition")
        if not np.isfinite(value):
            evidence["condition"] = "non_finite"
            message = f"{s.tag} is {fmt_number(value)} at step {step}"
            loss, loss_step, _ = self.loss.at(int(s.seq[i]))
            if s.tag != self.loss.tag and loss == 0.0 and loss_step == step:
                evidence["loss_hidden"] = True
                message += (
                    f" while {self.loss.tag} reads exactly 0.0: the trainer is hiding the NaN loss "
                    "(HF Transformers logging_nan_inf_filter)"
                )
            message += f" ({advice})"
        elif condition == "blowup":
            step, wall = evidence.pop("start_step"), evidence.pop("start_wall")
            evidence["value"] = evidence.pop("start_value")
            message = (
                f"{s.tag} blew up: its smoothed value rose from its best {fmt_number(evidence['best'])} to "
                f"{fmt_number(evidence['smoothed'])} and stayed up for {p['blowup_patience']} points since step {step} "
                f"({advice})"
            )
        else:
            med, sigma = evidence["median"], evidence["robust_sigma"]
            sigmas = (value - med) / sigma if sigma > 0 else float("inf")
            what = "exploded" if condition == "explosion" else "spiked"
            hint = advice if condition == "explosion" else f"if spikes recur: {advice}"
            message = (
                f"{s.tag} {what} to {fmt_number(value)} at step {step}, {fmt_number(value / med) if med > 0 else fmt_number(sigmas)}"
                f"{'x' if med > 0 else 'σ'} its recent median {fmt_number(med)} ({hint})"
            )
        return self.alert(kind=KIND, level=level, step=step, wall_time=wall, tag=s.tag, message=message,
                          evidence=evidence)

    def _blowup(
        self,
        st: dict[str, Any],
        s: ScalarSeries,
        fidx: np.ndarray,
        fv: np.ndarray,
        hist: np.ndarray,
        initial: float,
        sigma: np.ndarray,
        levels: np.ndarray,
        info: dict[int, dict[str, Any]],
    ) -> None:
        """Blow-up levels and evidence, from the point where ``initial`` became known."""
        p = self.p
        if np.isnan(initial):
            return
        if st["best"] is None:
            st["best"] = initial
        first = max(p["initial_points"] - st["n"], 0)
        smooth = trailing_median(hist, fv, p["smooth_window"])
        sm, idx, noise = smooth[first:], fidx[first:], sigma[first:]
        if sm.size == 0:
            return
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
        blown = run_len >= p["blowup_patience"]
        levels[idx[blown]] = np.maximum(levels[idx[blown]], CRITICAL)
        for j in np.flatnonzero(blown):
            i = int(idx[j])
            k = int(start[j])
            start_step, start_wall, start_value = carried if k < 0 else (
                int(s.step[idx[k]]), float(s.wall_time[idx[k]]), float(s.value[idx[k]]))
            info[i] = {"condition": "blowup", "best": float(best_prev[j]), "smoothed": float(sm[j]),
                       "start_step": start_step, "start_wall": start_wall, "start_value": start_value}
