"""How far a run's weights move per step, from the trainer shim's ``update_ratio/<p>`` scalars.

The shim writes ``update_ratio/<p>`` = ‖Δw‖/‖w‖ on a fixed weight subsample since the parameter's previous
histogram log. Divided by the steps between the two logs it is a per-step relative update; the median over
the weight tensors at a logged step is the model's. A model whose median has never come near CS231n's rule of
thumb (~1e-3 per step) is not moving: a learning rate far too low for it, or frozen weights. Biases are left
out (most start at zero, so any change is a large share of them); normalisation gains count as weights (the
sampled corpus's LayerNorm and BatchNorm nets are in the measurement the bar rests on, ``not_learning``).
"""

from __future__ import annotations

import math
from statistics import median
from typing import Any

from tbmon.analyzers.base import RunView
from tbmon.analyzers.layers import is_weight
from tbmon.analyzers.signals import UPDATE_RATIO


class UpdateSize:
    """The largest per-step median weight update so far, as known at any point of the run, by ``seq``.

    A logged step's median counts from the first update-ratio point of a later step on: only then are all of
    its parameters in, in any chunking. NaN until a step has closed (no ratios logged: no evidence).
    """

    def __init__(self) -> None:
        self.open_step: int | None = None
        self.open: dict[str, float] = {}  # per-step updates of the open step, by parameter
        self.previous: dict[str, int] = {}  # each weight's last logged step
        self.peak = math.nan
        self._before = math.nan
        self._events: list[tuple[int, float]] = []  # this batch: (seq usable from, peak)

    def state(self) -> dict[str, Any]:
        return {"open_step": self.open_step, "open": self.open, "previous": self.previous, "peak": self.peak}

    def load(self, data: dict[str, Any]) -> None:
        self.open_step, self.open = data["open_step"], dict(data["open"])
        self.previous, self.peak = dict(data["previous"]), float(data["peak"])

    def update(self, view: RunView) -> None:
        """Take this batch's update ratios; call before ``at``."""
        self._before, self._events = self.peak, []
        points = [
            (int(seq), int(step), item.match.param, float(value))
            for item in view.signal(UPDATE_RATIO)
            if item.match.param is not None and is_weight(item.match.param)
            for seq, step, value in zip(item.series.seq, item.series.step, item.series.value, strict=True)
        ]
        for seq, step, param, value in sorted(points):
            if self.open_step is not None and step != self.open_step:
                self._close(seq)
            self.open_step = step
            before, self.previous[param] = self.previous.get(param), step
            if before is not None and step > before and math.isfinite(value):  # the first log has no interval
                self.open[param] = value / (step - before)

    def _close(self, seq: int) -> None:
        if self.open:
            step_median = median(self.open.values())
            self.peak = step_median if math.isnan(self.peak) else max(self.peak, step_median)
            self._events.append((seq, self.peak))
        self.open = {}

    def at(self, seq: int) -> float:
        """The largest per-step median update of the steps closed by ``seq``."""
        peak = self._before
        for usable, value in self._events:
            if usable > seq:
                break
            peak = value
        return peak
