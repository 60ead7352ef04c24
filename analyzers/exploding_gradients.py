"""`exploding_gradients`: non-finite gradients, gradients growing by orders of magnitude, or
input-side layers getting far more gradient than the output side.

* non-finite (critical, at the first point): a gradient histogram whose min/max/sum/sum_squares
  is NaN/Inf, a ``grad_nonfinite/<p>`` count above 0, or a non-finite per-layer gradient norm
  (SageMaker ExplodingTensor). One episode per run across layers.
* growth (warning): the total gradient norm (``grad_norm`` and friends; without one, and before
  its first logged step, the root-sum-square of the per-layer values) above ``growth`` × its own early level (median of
  its first ``baseline_points`` finite values) for ``growth_patience`` consecutive points (one
  benign clipped spike does not count; a NaN norm, i.e. overflowed gradients, continues a streak
  begun by a value above the threshold, since a job often logs one huge norm and then NaN);
  dated at the first of them. 100× = two orders of magnitude, far beyond warm-up growth (≤ 4× in the
  healthy corpus runs).
* ratio (warning): the largest gradient among the input-side half of the layers above ``ratio`` ×
  the last layer's (AUTOTRAINER's β3 = 70, which compares the first layer) for ``ratio_patience``
  consecutive logged steps. The largest rather than the first, because with per-layer *norms* a
  small first layer (a 3×3 conv stem) can hide an explosion that its neighbours show.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from tbmon.analyzers.alerts import Alert
from tbmon.analyzers.base import BaseRule, RunView
from tbmon.analyzers.layers import Groups, LayerGroups, compared_layers
from tbmon.analyzers.numbers import fmt_number
from tbmon.analyzers.series import HistogramSeries
from tbmon.analyzers.signals import GRAD_HISTOGRAM, GRAD_NONFINITE, GRAD_NORM
from tbmon.analyzers.windows import Streak, streak_update

KIND = "exploding_gradients"
WARNING, CRITICAL = 1, 2
ALL_LAYERS = "grad (all layers)"


class ExplodingGradients(BaseRule):
    name: ClassVar[str] = "exploding_gradients"
    defaults: ClassVar[dict[str, Any]] = {
        "growth": 100.0,
        "baseline_points": 10,
        "ratio": 70.0,
        "growth_patience": 2,
        "ratio_patience": 2,
        "rearm": 200,
    }

    def __init__(self, run: str, params: dict[str, Any]) -> None:
        super().__init__(run, params)
        self.groups = LayerGroups()
        self.ratio_streak = Streak()
        self.nonfinite_tag = ""
        self.total_step = -1  # step of the run's first total-norm point (-1: none yet)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "groups": self.groups.state(), "ratio_streak": self.ratio_streak.to_json(),
                "nonfinite_tag": self.nonfinite_tag, "total_step": self.total_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.groups.load(state["groups"])
        self.ratio_streak = Streak.from_json(state["ratio_streak"])
        self.nonfinite_tag, self.total_step = state["nonfinite_tag"], int(state["total_step"])

    def episodes(self) -> list[dict[str, Any]]:
        return [{**e, "tag": self.nonfinite_tag} if e["tag"] == "*nonfinite" else e for e in super().episodes()]

    def feed(self, view: RunView) -> list[Alert]:
        alerts = self._nonfinite(view)
        totals = [i for i in view.signal(GRAD_NORM) if i.match.param is None and len(i.series)]
        if totals and self.total_step < 0:
            first = min(totals, key=lambda i: int(i.series.seq[0])).series
            self.total_step = int(first.step[0])
        for item in totals:
            s = item.series
            levels, info = self._growth(s.tag, s.step, s.wall_time, s.value)
            alerts += self._emit(s.tag, levels, s.step, info)
        for g in self.groups.update(view):
            alerts += self._judge(g)
        return alerts

    def _judge(self, g: Groups) -> list[Alert]:
        idx = compared_layers(g)
        levels = np.zeros(len(g.steps), dtype=int)
        info: dict[int, dict[str, Any]] = {}
        if len(idx) >= 2:
            levels, info = self._ratio(g, idx)
        # Before the run's first total-norm step (or without one), the layers' root-sum-square stands
        # in for it, and layer-ratio and growth share one episode (a blown-up first layer shows in
        # both). Decided by step, not by batch, so a watcher and a one-shot report agree.
        stand_in = np.flatnonzero(g.steps < self.total_step) if self.total_step >= 0 else np.arange(len(g.steps))
        if stand_in.size:
            with np.errstate(invalid="ignore"):
                rss = np.sqrt(np.nansum(g.values[stand_in][:, idx] ** 2, axis=1))
            grow, grow_info = self._growth(ALL_LAYERS, g.steps[stand_in], g.walls[stand_in], rss)
            info = {**{int(stand_in[j]): d for j, d in grow_info.items()}, **info}
            levels[stand_in] = np.maximum(levels[stand_in], grow)
        return self._emit(g.tags[idx[0]], levels, g.steps, info)

    def _emit(self, tag: str, levels: np.ndarray, steps: np.ndarray, info: dict[int, dict[str, Any]]) -> list[Alert]:
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
        parts = []
        for item in view.signal(GRAD_HISTOGRAM):
            s = item.series
            assert isinstance(s, HistogramSeries)
            bad = ~(np.isfinite(s.min) & np.isfinite(s.max) & np.isfinite(s.sum) & np.isfinite(s.sum_squares))
            parts.append((s, bad, s.max))
        for item in view.signal(GRAD_NONFINITE):
            s = item.series
            parts.append((s, ~(s.value == 0), s.value))
        for item in view.signal(GRAD_NORM):
            if item.match.param is not None:
                s = item.series
                parts.append((s, ~np.isfinite(s.value), s.value))
        parts = [p for p in parts if len(p[0])]
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

    def _growth(
        self, tag: str, steps: np.ndarray, walls: np.ndarray, values: np.ndarray
    ) -> tuple[np.ndarray, dict[int, dict[str, Any]]]:
        p = self.p
        levels = np.zeros(len(steps), dtype=int)
        st = self.tags.setdefault(f"total:{tag}", {"base": [], "streak": Streak().to_json()})
        need = p["baseline_points"] - len(st["base"])
        cut = 0
        if need > 0:
            finite = np.flatnonzero(np.isfinite(values))[:need]
            st["base"] = st["base"] + values[finite].tolist()
            if len(st["base"]) < p["baseline_points"]:
                return levels, {}
            cut = int(finite[-1]) + 1
        base = float(np.median(st["base"]))
        cond = np.zeros(len(steps), dtype=bool)
        with np.errstate(invalid="ignore"):
            # A NaN norm (the gradients overflowed) continues a streak; it cannot start one (below).
            cond[cut:] = (values[cut:] > p["growth"] * base) | np.isnan(values[cut:])
        streak = Streak.from_json(st["streak"])
        carried = (streak.start_step, streak.start_wall, streak.start_value)
        run_len, start = streak_update(cond[cut:], streak, steps[cut:], walls[cut:], values[cut:])
        st["streak"] = streak.to_json()
        rest = values[cut:]
        first_value = np.where(start < 0, carried[2], rest[np.clip(start, 0, max(rest.size - 1, 0))])
        grown = (run_len >= p["growth_patience"]) & ~np.isnan(first_value)
        levels[cut:] = grown.astype(int) * WARNING
        info = {}
        for j in np.flatnonzero(grown & (run_len == p["growth_patience"])):
            k, i = int(start[j]), int(j) + cut
            step, wall, first = carried if k < 0 else (int(steps[k + cut]), float(walls[k + cut]), float(values[k + cut]))
            info[i] = {
                "step": step, "wall": wall,
                "message": (f"{tag} grew to {fmt_number(float(values[i]))} ("
                            + (f"{fmt_number(float(values[i]) / base)}x " if np.isfinite(values[i]) else "overflow; ")
                            + f"early level {fmt_number(base)}) and stayed above {fmt_number(p['growth'])}x its early level since "
                            f"step {step}; clip gradients (e.g. max norm 1.0) or lower the learning rate"),
                "condition": "growth", "baseline": base, "value": first, "noticed_value": float(values[i]),
                "noticed_step": int(steps[i]),
            }
        return levels, info

    def _ratio(self, g: Groups, idx: list[int]) -> tuple[np.ndarray, dict[int, dict[str, Any]]]:
        # The input-side half's largest layer, not only the first: explosion grows toward the input, but
        # a tiny first layer (a 3x3 conv with 72 weights) has a small *norm* even when its RMS is huge.
        side = idx[: max(1, len(idx) // 2)]
        top = np.argmax(np.nan_to_num(g.values[:, side], nan=-np.inf), axis=1)  # a NaN layer is never the largest
        biggest = g.values[np.arange(len(g.steps)), np.asarray(side)[top]]
        last = g.values[:, idx[-1]]
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = biggest / last
        cond = ratio > self.p["ratio"]
        carried = (self.ratio_streak.start_step, self.ratio_streak.start_wall)
        run_len, start = streak_update(cond, self.ratio_streak, g.steps, g.walls, ratio)
        levels = (run_len >= self.p["ratio_patience"]).astype(int) * WARNING
        unit = "RMS" if g.source == "histogram_rms" else "norm"
        info = {}
        for i in np.flatnonzero(run_len == self.p["ratio_patience"]):
            k = int(start[i])
            step, wall = carried if k < 0 else (int(g.steps[k]), float(g.walls[k]))
            layer = g.layers[side[int(top[i])]]
            info[int(i)] = {
                "step": step, "wall": wall,
                "message": (f"exploding gradients since step {step}: input-side layer {layer} gets "
                            f"{fmt_number(float(ratio[i]))}x the gradient {unit} of the last layer {g.layers[idx[-1]]} "
                            f"(> {fmt_number(self.p['ratio'])}x); use a smaller initialisation scale, normalisation, or "
                            "gradient clipping"),
                "condition": "layer_ratio", "ratio": float(ratio[i]), "first_layer": g.layers[idx[0]],
                "input_side_layer": layer, "last_layer": g.layers[idx[-1]], "source": g.source,
                "noticed_step": int(g.steps[i]),
            }
        return levels, info
