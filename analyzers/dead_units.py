"""`dead_units` (warning): most of a layer's units get no gradient at all, log after log.

A unit whose ReLU is inactive for every example of the batch (a too-high learning rate or a bad
bias pushed its pre-activation below 0 for every input) gets exactly zero gradient. Sources: the
trainer shim's exact ``grad_zero_frac/<p>`` scalars, and gradient histograms that are entirely zero
(min = max = 0) until the run's first exact scalar (by seq).

A layer is judged by its **bias** when it logs one: a bias entry is one unit (a channel of a
convolution), zero exactly when no example activated it. A weight entry is zero when its unit is
dead *or* its input is, so weight entries count a dead unit twice and blame the layer after it: the
twenty-third development batch's s16166 (healthy; an 8-layer ReLU CNN at 2.05x He init, validation
327 -> 0.97) lost 10 of net.3's 16 channels at its first update (bias 0.625); net.3's weight entries
read 0.70 with net.0's two dead channels counted again, and net.5's 0.77 while 15 of its 16 units
were alive, a warning on a layer with nothing dead. A layer with no bias (a convolution before
BatchNorm) is judged by its weight's entries, as before.

| parameter | default | why |
|---|---|---|
| ``zero_frac`` | 0.7 | DeepDiagnosis' 70 % of a layer's ReLU outputs (AUTOTRAINER's γ on gradient entries; SageMaker Debugger fires at 50 % of units). Measured with the shim on a ReLU MLP on sklearn digits: healthy layers 0.09–0.36 exactly-zero entries (the input's blank border pixels), dead-ReLU runs (bias −3, or lr 2.0) 1.0. On the 409 shim-written development runs, the highest share held for 2 logs on a healthy run: units 0.625 (s16166), then 0.45; weight entries 0.77 (s16166), then 0.59. |
| ``patience`` | 2 | consecutive logs, so one all-zero batch does not count |
| ``rearm`` | 10 | quiet points before the run's episode re-arms, and quiet logs of its own before a layer already said is said again |

Not judged: the first layer's weight (sparse inputs, e.g. bag-of-words or zero pixels, make its
gradient mostly zero in healthy runs; its bias is judged: a dead first hidden layer is the commonest
dead layer of all) and parameters named like embeddings (only the rows of tokens in the batch get
gradient). A wholly dead layer zeroes the gradient of every layer below it too, and the alert names the
first layer (by seq) whose units got none: its units did get no gradient, but the dead ones may sit
above it. Whether a weight's layer has a bias is decided by seq, like the
first layer: the weight is judged until its bias's first point. One episode per run, and
one alert per layer's streak: a re-armed episode does not say again what a layer still dead since
the same log already said (a 31-layer ReLU MLP at 1.6x He, development run s1316, logged one
dead layer's unbroken streak 16 times, each dated at its step 0, because the other layers' quiet
logs re-armed the run's episode between two of its logs), nor what a layer back over the bar within
``rearm`` of its own logs under it already said: the run's episode re-arms after ``rearm`` quiet points
summed over all its layer tags, under one log, and the twenty-fifth development batch's s17456 (a 6-layer
ReLU MLP at dropout 0.48 and batch 9, whose last hidden layer's share sat at 0.52-0.89 after a first
stretch of 0.83-1.0) was said four times as the share flickered around the bar.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from tbmon.analyzers.alerts import Alert
from tbmon.analyzers.base import BaseRule, RunView
from tbmon.analyzers.layers import bias_of, is_bias, is_weight, model_order
from tbmon.analyzers.numbers import fmt_number
from tbmon.analyzers.series import HistogramSeries
from tbmon.analyzers.signals import GRAD_HISTOGRAM, GRAD_ZERO_FRAC
from tbmon.analyzers.windows import Streak, streak_update

KIND = "dead_units"
WARNING = 1
_NEVER = 1 << 30  # logs under the bar "before" a layer's first stretch over it: as many as it takes


class DeadUnits(BaseRule):
    name: ClassVar[str] = "dead_units"
    defaults: ClassVar[dict[str, Any]] = {"zero_frac": 0.7, "patience": 2, "rearm": 10}

    def __init__(self, run: str, params: dict[str, Any]) -> None:
        super().__init__(run, params)
        self.layers: list[str] = []  # first-appearance order
        self.layer_seq: list[int] = []  # seq of each layer's first point (ascending)
        self.exact_from = -1  # seq of the first grad_zero_frac point; histograms count only before it
        self.alerted_tag = ""
        self.alerted_streaks: dict[str, int] = {}  # tag -> first step of the streak last alerted on it

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "layers": self.layers, "layer_seq": self.layer_seq,
                "exact_from": self.exact_from, "alerted": self.alerted_tag, "alerted_streaks": self.alerted_streaks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.layers, self.layer_seq = list(state["layers"]), [int(q) for q in state["layer_seq"]]
        self.exact_from, self.alerted_tag = int(state["exact_from"]), state["alerted"]
        self.alerted_streaks = {t: int(v) for t, v in state.get("alerted_streaks", {}).items()}  # states saved before 2026-12-05 lack it

    def episodes(self) -> list[dict[str, Any]]:
        return [{**e, "tag": self.alerted_tag} for e in super().episodes()]

    def feed(self, view: RunView) -> list[Alert]:
        points = self._points(view)
        for _, param, seq, *_ in sorted(points, key=lambda p: int(p[2][0])):
            if param not in self.layers:  # in seq order, so layer_seq stays ascending
                self.layers.append(param)
                self.layer_seq.append(int(seq[0]))
        parts = []
        for tag, param, seq, step, wall, frac, source in points:
            judged = self._judged(param, seq)
            if not judged.any():
                continue
            seq, step, wall, frac = seq[judged], step[judged], wall[judged], frac[judged]
            st = self.tags.setdefault(f"zero:{tag}", {"streak": Streak().to_json()})
            streak = Streak.from_json(st["streak"])
            with np.errstate(invalid="ignore"):
                cond = frac >= self.p["zero_frac"]
            carried = (streak.start_step, streak.start_wall)
            run_len, start = streak_update(cond, streak, step, wall, frac)
            st["streak"] = streak.to_json()
            levels = (run_len >= self.p["patience"]).astype(int) * WARNING
            parts.append((tag, param, seq, step, wall, frac, source, levels, start, carried, _quiet_before(st, cond)))
        if not parts:
            return []
        alerts = []
        for n, i in self.merged_events(KIND, "run", [(p[2], p[3], p[7]) for p in parts], self.p["rearm"]):
            tag, param, _, step, wall, frac, source, _, start, carried, quiet = parts[n]
            k = int(start[i])  # dated at the first log of the streak, which may lie in an earlier batch
            first_step, first_wall = carried if k < 0 else (int(step[k]), float(wall[k]))
            said = self.alerted_streaks.get(tag)
            self.alerted_streaks[tag] = first_step
            if said == first_step or (said is not None and quiet[i] < self.p["rearm"]):  # already said, or the
                continue  # same layer back over the bar within ``rearm`` of its logs: the episode goes on
            self.alerted_tag = tag
            alerts.append(self.alert(
                kind=KIND, level=WARNING, step=first_step, wall_time=first_wall, tag=tag,
                message=(_share(param, float(frac[i]), f"≥ {fmt_number(100 * self.p['zero_frac'])}% for "
                                f"{self.p['patience']} logs, from {source}") + ": dead ReLU units; lower the learning "
                         "rate, check bias initialisation, or use LeakyReLU/GELU"),
                evidence={"zero_frac": float(frac[i]), "layer": param, "counted": "units" if is_bias(param) else
                          "gradient entries", "source": source, "noticed_step": int(step[i])},
            ))
        return alerts

    def _points(self, view: RunView) -> list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]]:
        """Per tag: (tag, layer, seq, step, wall, zero fraction, source) of the points to judge.

        The exact ``grad_zero_frac`` scalars win over histograms from their first point on (by
        seq, so the choice does not depend on how the stream was chunked)."""
        exact = [i for i in view.signal(GRAD_ZERO_FRAC) if len(i.series)]
        if exact and self.exact_from < 0:
            self.exact_from = min(int(i.series.seq[0]) for i in exact)
        out = []
        for item in exact:
            s = item.series
            out.append((s.tag, item.match.param or s.tag, s.seq, s.step, s.wall_time, s.value, "grad_zero_frac"))
        for item in view.signal(GRAD_HISTOGRAM):
            s = item.series
            assert isinstance(s, HistogramSeries)
            keep = s.seq < self.exact_from if self.exact_from >= 0 else np.ones(len(s), dtype=bool)
            if keep.any():
                frac = np.where((s.min == 0) & (s.max == 0), 1.0, 0.0)[keep]  # only all-zero is exact
                out.append((s.tag, item.match.param or s.tag, s.seq[keep], s.step[keep], s.wall_time[keep], frac,
                            "histogram"))
        return out

    def _judged(self, param: str, seq: np.ndarray) -> np.ndarray:
        """Per point: whether this parameter is judged, knowing the parameters that had appeared by then (by
        seq, so a layer that appears late changes the first layer, and a bias the weight beside it, from then
        on only): a bias (its entries are the layer's units), a weight when its layer has shown no bias and is
        not the first layer."""
        if "embed" in param.lower() or not (is_bias(param) or is_weight(param)):
            return np.zeros(seq.size, dtype=bool)
        if is_bias(param):
            return np.ones(seq.size, dtype=bool)
        known = np.searchsorted(np.asarray(self.layer_seq), seq, side="right")
        judged = np.zeros(seq.size, dtype=bool)
        for k in np.unique(known):
            names = self.layers[: int(k)]
            order = model_order(names)
            first = names[order[0]] if order else param
            judged[known == k] = first != param and bias_of(param) not in names
        return judged


def _quiet_before(st: dict[str, Any], cond: np.ndarray) -> np.ndarray:
    """Per log: how many of the layer's logs in a row were under the bar right before its current stretch over it
    began (a large number before any), carried in ``st`` across feeds."""
    below, gap = int(st.get("below", _NEVER)), int(st.get("gap", _NEVER))
    gaps = np.empty(cond.size, dtype=np.int64)
    for j, over in enumerate(cond.tolist()):
        if over:
            gap, below = (below if below else gap), 0
        else:
            below += 1
        gaps[j] = gap
    st["below"], st["gap"] = below, gap
    return gaps


def _share(param: str, frac: float, bar: str) -> str:
    """What the zero fraction of ``param`` says, with the bar it passed: a bias's is its layer's share of units
    that got no gradient."""
    pct = fmt_number(100 * frac)
    if not is_bias(param):
        return f"{param}: {pct}% of its gradient entries are exactly zero ({bar})"
    layer = param[: -len(".bias")] if param.lower().endswith((".bias", "/bias")) else param
    return f"{layer}: {pct}% of its units got no gradient from any example of the batch ({param}; {bar})"
