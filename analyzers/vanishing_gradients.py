"""`vanishing_gradients`: the input-side layers get almost no gradient compared with the output side.

Per logged step, from gradient histograms (RMS) or per-layer gradient-norm scalars
(see ``layers.py``): the condition holds when the first layer's gradient is below
``ratio`` × the last layer's (AUTOTRAINER's β1 = 1e-3) for ``patience`` consecutive logged
steps. The relative test is what keeps a converged model (all gradients small, e.g. 1e-6
after fitting the training set) from alerting. Warning, dated at the first step of the
streak; the message names the layers below the ratio.

``absolute`` (off by default: ``inf``) additionally requires the first layer's gradient below
that value (AUTOTRAINER's β2 = 1e-4, which it applies to the layer's *norm*). Applied to the
RMS, as it was, it hid real vanishing: a tanh CNN under an exponential lr ramp whose first
layer saturated got 5.4e-4 × the last layer's gradient at two consecutive logs (labelled
vanishing by the sampled corpus' first/last RMS < 1e-3 criterion), with a first-layer RMS of
1.7e-4 (its norm 2e-3) because the ramp had made the last layer's gradient large (0.31).
Measured on the sampled development corpus (400 runs, first/last weight-gradient RMS or norm
ratio at every gradient log): no healthy-labelled run goes below 0.023 at two consecutive
logs (0.0061 at one), 23× above ``ratio``, so the relative test alone does not fire on them;
vanishing-labelled runs sit at 1e-19–5.4e-4.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from tbmon.analyzers.alerts import Alert
from tbmon.analyzers.base import BaseRule, RunView
from tbmon.analyzers.layers import Groups, LayerGroups, compared_layers
from tbmon.analyzers.numbers import fmt_number
from tbmon.analyzers.windows import Streak, streak_update

KIND = "vanishing_gradients"
WARNING = 1


class VanishingGradients(BaseRule):
    name: ClassVar[str] = "vanishing_gradients"
    defaults: ClassVar[dict[str, Any]] = {"ratio": 1e-3, "absolute": float("inf"), "patience": 2, "rearm": 10}

    def __init__(self, run: str, params: dict[str, Any]) -> None:
        super().__init__(run, params)
        self.groups = LayerGroups()
        self.streak = Streak()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "groups": self.groups.state(), "streak": self.streak.to_json()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.groups.load(state["groups"])
        self.streak = Streak.from_json(state["streak"])

    def feed(self, view: RunView) -> list[Alert]:
        return [a for g in self.groups.update(view) for a in self._judge(g)]

    def _judge(self, g: Groups) -> list[Alert]:
        idx = compared_layers(g)
        if len(idx) < 2:
            return []
        first, last = g.values[:, idx[0]], g.values[:, idx[-1]]
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = first / last
            cond = (ratio < self.p["ratio"]) & (first < self.p["absolute"])
        carried = (self.streak.start_step, self.streak.start_wall)
        run_len, start = streak_update(cond, self.streak, g.steps, g.walls, ratio)
        levels = (run_len >= self.p["patience"]).astype(int) * WARNING
        alerts = []
        for i in self.events(KIND, g.tags[idx[0]], levels, g.steps, self.p["rearm"]):
            k = int(start[i])
            step, wall = carried if k < 0 else (int(g.steps[k]), float(g.walls[k]))
            alerts.append(self._alert(g, idx, int(i), step, wall))
        return alerts

    def _alert(self, g: Groups, idx: list[int], i: int, step: int, wall: float) -> Alert:
        row = g.values[i]
        last = row[idx[-1]]
        with np.errstate(invalid="ignore", divide="ignore"):
            small = [g.layers[k] for k in idx[:-1] if row[k] / last < self.p["ratio"]]
        unit = "RMS" if g.source == "histogram_rms" else "norm"
        named = ", ".join(small[:4]) + (f" and {len(small) - 4} more" if len(small) > 4 else "")
        message = (
            f"vanishing gradients since step {step}: {len(small)} of {len(idx)} layers get < "
            f"{fmt_number(self.p['ratio'])}x the gradient of the last layer {g.layers[idx[-1]]} ({named}; first layer "
            f"{unit} {fmt_number(row[idx[0]])} vs {fmt_number(last)}); use ReLU-family activations, residual connections, "
            "normalisation or a better initialisation"
        )
        return self.alert(
            kind=KIND, level=WARNING, step=step, wall_time=wall, tag=g.tags[idx[0]], message=message,
            evidence={"first_layer": g.layers[idx[0]], "last_layer": g.layers[idx[-1]], "first": float(row[idx[0]]),
                      "last": float(last), "layers_below_ratio": small, "source": g.source,
                      "noticed_step": int(g.steps[i])},
        )
