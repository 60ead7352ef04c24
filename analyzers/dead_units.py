"""`dead_units` (warning): most of a layer's gradient entries are exactly zero, log after log.

Exactly-zero weight gradients mean the units feeding or fed by the layer are inactive for the
whole batch: dead ReLUs (a too-high learning rate or a bad bias pushed pre-activations below 0
for every input). Sources: the trainer shim's exact ``grad_zero_frac/<p>`` scalars, and gradient
histograms that are entirely zero (min = max = 0).

| parameter | default | why |
|---|---|---|
| ``zero_frac`` | 0.7 | AUTOTRAINER's γ (and DeepDiagnosis' 70% dead-ReLU share). Measured with the shim on a ReLU MLP on sklearn digits: healthy layers 0.09–0.36 exactly-zero entries (the input's blank border pixels), dead-ReLU runs (bias −3, or lr 2.0) 1.0. |
| ``patience`` | 2 | consecutive logs, so one all-zero batch does not count |

Not judged: biases (weights only, as AUTOTRAINER), the first weight layer (sparse inputs, e.g.
bag-of-words or zero pixels, make its gradient mostly zero in healthy runs) and parameters named
like embeddings (only the rows of tokens in the batch get gradient). One episode per run.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from tbmon.analyzers.alerts import Alert
from tbmon.analyzers.base import BaseRule, RunView
from tbmon.analyzers.divergence import fmt
from tbmon.analyzers.layers import is_weight, model_order
from tbmon.analyzers.series import HistogramSeries
from tbmon.analyzers.signals import GRAD_HISTOGRAM, GRAD_ZERO_FRAC
from tbmon.analyzers.windows import EpisodeState, Streak, episode_events, streak_update

KIND = "dead_units"
WARNING = 1


class DeadUnits(BaseRule):
    name: ClassVar[str] = "dead_units"
    defaults: ClassVar[dict[str, Any]] = {"zero_frac": 0.7, "patience": 2, "rearm": 10}

    def __init__(self, run: str, params: dict[str, Any]) -> None:
        super().__init__(run, params)
        self.layers: list[str] = []
        self.alerted_tag = ""

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "layers": self.layers, "alerted": self.alerted_tag}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.layers, self.alerted_tag = list(state["layers"]), state["alerted"]

    def episodes(self) -> list[dict[str, Any]]:
        return [{**e, "tag": self.alerted_tag} for e in super().episodes()]

    def feed(self, view: RunView) -> list[Alert]:
        items = [i for i in view.signal(GRAD_ZERO_FRAC) if len(i.series)]
        source = "grad_zero_frac"
        if not items and not any(t.startswith("zero:") for t in self.tags):
            items, source = [i for i in view.signal(GRAD_HISTOGRAM) if len(i.series)], "histogram"
        for item in items:  # know every layer of the batch before deciding which is the first
            if (item.match.param or item.tag) not in self.layers:
                self.layers.append(item.match.param or item.tag)
        parts = []
        for item in items:
            param = item.match.param or item.tag
            if not self._judged(param):
                continue
            s = item.series
            if isinstance(s, HistogramSeries):
                frac = np.where((s.min == 0) & (s.max == 0), 1.0, 0.0)  # only all-zero is exact
            else:
                frac = s.value
            st = self.tags.setdefault(f"zero:{s.tag}", {"streak": Streak().to_json()})
            streak = Streak.from_json(st["streak"])
            with np.errstate(invalid="ignore"):
                cond = frac >= self.p["zero_frac"]
            carried = (streak.start_step, streak.start_wall)
            run_len, start = streak_update(cond, streak, s.step, s.wall_time, frac)
            st["streak"] = streak.to_json()
            levels = (run_len >= self.p["patience"]).astype(int) * WARNING
            parts.append((s, param, frac, levels, start, carried))
        if not parts:
            return []
        order = np.argsort(np.concatenate([p[0].seq for p in parts]), kind="stable")
        levels = np.concatenate([p[3] for p in parts])[order]
        steps = np.concatenate([p[0].step for p in parts])[order]
        owner = np.concatenate([np.full(len(p[0]), k) for k, p in enumerate(parts)])[order]
        index = np.concatenate([np.arange(len(p[0])) for p in parts])[order]
        episode = self._episodes.setdefault(f"{KIND}|run", EpisodeState())
        alerts = []
        for j in episode_events(levels, steps, episode, self.p["rearm"]):
            s, param, frac, _, start, carried = parts[int(owner[j])]
            i = int(index[j])
            k = int(start[i])  # dated at the first log of the streak, which may lie in an earlier batch
            step, wall = carried if k < 0 else (int(s.step[k]), float(s.wall_time[k]))
            self.alerted_tag = s.tag
            alerts.append(self.alert(
                kind=KIND, level=WARNING, step=step, wall_time=wall, tag=s.tag,
                message=(f"{param}: {fmt(100 * float(frac[i]))}% of its gradient entries are exactly zero "
                         f"(≥ {fmt(100 * self.p['zero_frac'])}% for {self.p['patience']} logs, from {source}): "
                         "dead ReLU units; lower the learning rate, check bias initialisation, or use "
                         "LeakyReLU/GELU"),
                evidence={"zero_frac": float(frac[i]), "layer": param, "source": source, "noticed_step": int(s.step[i])},
            ))
        return alerts

    def _judged(self, param: str) -> bool:
        if "embed" in param.lower() or not is_weight(param):
            return False
        order = model_order(self.layers)
        return bool(order) and self.layers.index(param) != order[0]
