"""`vanishing_gradients`: the input-side layers get almost no gradient compared with the output side.

Per logged step, from gradient histograms (RMS) or per-layer gradient-norm scalars
(see ``layers.py``): the condition holds when the first layer's gradient is below
``ratio`` × the last layer's (AUTOTRAINER's β1 = 1e-3) for ``patience`` consecutive logged
steps, and for at least ``min_share`` (1 %) of the gradient logs seen so far. The relative test is
what keeps a converged model (all gradients small, e.g. 1e-6 after fitting the training set) from
alerting. Warning, dated at the first step of the streak; the message names the layers below the
ratio.

``min_share`` is what makes the patience mean the same at any logging density. Per-layer norm
scalars logged every step (Lightning's ``grad_2.0_norm/*`` with ``log_every_n_steps=1``) flicker:
the sampled development corpus' s12480 (a tanh CNN under an lr ramp) had its first/last ratio
below 1e-3 for 4 steps at step 2,109 and for 2 at 2,189, back at 1e-2–1e-1 in between, 130 steps
before its gradients vanished for good at 2,242 (its histograms, every 20 steps, saw nothing
before then). Two logs there are two steps of a 2,473-step run; 1 % of the logs is what a run
logging every 100 steps already asks of two logs, and costs at most 1 % of the run in notice
delay (the streak is still dated at its first log).

Said again after ``rearm`` (3) gradient logs without the condition (it was 10): gradients are
logged sparsely, and a ratio that hovers at the bar flickers across it. The
27th development batch's s18162 (a 17-layer ReLU MLP at 1.7x Kaiming init under Adam, histograms
every 98 steps) read 6e-4 and 8e-4 at 2,744-2,842, then 1.9e-3-2e-2 for 8 logs (two single logs
under the bar among them), and stayed under it from 3,724: its only warning was the early one.
Three quiet logs end an episode as three logs under the bar make one for the corpus labeller.
Asking three logs to *start* one instead (``patience`` 3) also catches it, but doubled the median
notice delay on the development part (3.4 % -> 6.7 % of a run) and dated persistent but flickering
vanishing later (s18032: 5.6 % -> 19.6 % of its run after the onset). On the 133 development runs
with a vanishing label, borderline or alert, 3 against 10: vanishing 92 -> 93 of 93, the same runs
warned, 151 -> 177 warnings (repeats on flickering RNN input layers).

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

A non-finite training loss logged after a group where the condition held completes its streak
(never starts one; ``overflow.py``): the streak is due at once, dated at its first group, and the
message says the run overflowed by the loss's step. A run can vanish and blow up at once: a 30-layer
ReLU MLP at default init under AdamW at lr 0.64 (the sampled corpus' s0500) has 25 of its 31 weight
layers below 1e-3x the head's gradient at its only gradient log (histograms every 171 steps, at step
0; first layer RMS 3.4e-13 vs 0.23, a ratio of 1.5e-12); its loss is NaN from step 2 on, and
tensorboardX writes no more histograms. Waiting for a second log, the rule never
saw it, though the condition held until the run broke (the corpus labeller, which for runs with fewer
than three gradient logs asks for a ratio below 1e-3 at every one, calls it vanishing). A finite loss
after that one log, or a NaN loss before any group where the condition held, completes nothing.
Nor does an overflow after a group whose *last* layer's gradient is itself above exploding_gradients'
gates (per-weight RMS ``exploding_rms`` = 1, a norm ``exploding_norm`` = 100): the input side's zero
gradient is then ReLUs killed by the blow-up (the demo's diverging run: first layer 0, head RMS 4e12 at
its last log before the NaN), which exploding_gradients reports; s0500's head was at 0.23.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from tbmon.analyzers.alerts import Alert
from tbmon.analyzers.base import BaseRule, RunView
from tbmon.analyzers.exploding_gradients import ExplodingGradients
from tbmon.analyzers.layers import HIST, Groups, LayerGroups, compared_layers
from tbmon.analyzers.numbers import fmt_number
from tbmon.analyzers.overflow import Loss, Overflow, nonfinite_train_losses
from tbmon.analyzers.windows import Streak, continued_streak, streak_due, streak_update

KIND = "vanishing_gradients"
WARNING = 1


class VanishingGradients(BaseRule):
    name: ClassVar[str] = "vanishing_gradients"
    defaults: ClassVar[dict[str, Any]] = {"ratio": 1e-3, "absolute": float("inf"), "patience": 2, "min_share": 0.01,
                                          "rearm": 3,
                                          # exploding_gradients' magnitude gates, so the two cannot drift apart
                                          "exploding_rms": ExplodingGradients.defaults["min_rms"],
                                          "exploding_norm": ExplodingGradients.defaults["min_norm"]}

    def __init__(self, run: str, params: dict[str, Any]) -> None:
        super().__init__(run, params)
        self.groups = LayerGroups()
        self.streak = Streak()
        self.overflow = Overflow()  # non-finite training losses among the groups
        self.logs = 0  # gradient logs (group rows) judged so far, for ``min_share``
        # What the alert says of the last judged group when the condition held there ({} otherwise): a
        # non-finite loss in a later batch completes that streak and reports this group's layers.
        self.last_held: dict[str, Any] = {}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "groups": self.groups.state(), "streak": self.streak.to_json(),
                "overflow": self.overflow.state(), "last_held": self.last_held, "logs": self.logs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.groups.load(state["groups"])
        self.streak = Streak.from_json(state["streak"])
        self.overflow.load(state.get("overflow", {}))  # a state saved before the overflow completion: none waits
        self.last_held = dict(state.get("last_held", {}))
        self.logs = int(state.get("logs", 0))

    def feed(self, view: RunView) -> list[Alert]:
        bad = nonfinite_train_losses(view)
        groups = [g for g in self.groups.update(view) if len(compared_layers(g)) >= 2]
        ready = self.overflow.ready(bad, self.groups)
        if not groups and not ready:
            return []
        if not ready:  # the usual case: no non-finite loss, the groups one after the other
            self.overflow.saw_groups()
            return [a for g in groups for a in self._judge(g)]
        return self._judge_overflow(groups, ready)

    def _condition(self, g: Groups) -> tuple[list[int], np.ndarray, np.ndarray]:
        idx = compared_layers(g)
        first, last = g.values[:, idx[0]], g.values[:, idx[-1]]
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = first / last
            cond = (ratio < self.p["ratio"]) & (first < self.p["absolute"])
        return idx, ratio, cond

    def _patience(self, is_log: np.ndarray) -> np.ndarray:
        """The streak length each point needs: ``patience`` logs, and ``min_share`` of the gradient logs
        seen up to it (``is_log``: which points are logs; a non-finite loss between them is not)."""
        seen = self.logs + np.cumsum(is_log)
        self.logs = int(seen[-1]) if seen.size else self.logs
        return np.maximum(self.p["patience"], np.ceil(self.p["min_share"] * seen))

    def _judge(self, g: Groups) -> list[Alert]:
        idx, ratio, cond = self._condition(g)
        carried = (self.streak.start_step, self.streak.start_wall)
        run_len, start = streak_update(cond, self.streak, g.steps, g.walls, ratio)
        levels = (run_len >= self._patience(np.ones(len(cond), dtype=np.int64))).astype(int) * WARNING
        alerts = []
        for i in self.events(KIND, g.tags[idx[0]], levels, g.steps, self.p["rearm"]):
            k = int(start[i])
            step, wall = carried if k < 0 else (int(g.steps[k]), float(g.walls[k]))
            alerts.append(self._alert(self._held(g, idx, int(i)), step, wall, int(g.steps[i])))
        self.last_held = self._held(g, idx, len(cond) - 1) if len(cond) and cond[-1] else {}
        return alerts

    def _judge_overflow(self, groups: list[Groups], ready: list[Loss]) -> list[Alert]:
        """Groups and non-finite training losses in seq order (``overflow.Overflow``): a loss right after a
        group where the condition held continues its streak and makes it due (one group and an overflow,
        ``windows.streak_due``), never begins one. Each group keeps its episode tag as in ``_judge``; a
        loss point joins the episode of the group before it only where it is due (a NaN loss is no quiet
        gradient log: it does not count toward re-arming)."""
        # (``seen``: a loss before the run's first group can continue no streak here, so none is dropped.)
        m = self.overflow.merge(groups, ready, seen=True)
        n = len(m)
        if not n:  # a loss in a run of them already counted
            return []
        cond, ratio = np.zeros(n, dtype=bool), np.full(n, np.nan)
        rows: dict[int, tuple[Groups, list[int], int]] = {}  # merged index of a group -> (groups, layers, row)
        for g in groups:
            at = m.where[id(g)]
            idx, ratio[at], cond[at] = self._condition(g)
            rows.update({int(k): (g, idx, j) for j, k in enumerate(at)})
        # A loss continues the streak only if the condition held at the group just before it (for a loss
        # before this batch's first group: the previous batch's last one, ``last_held``; a state saved before
        # it existed has none), and only if the head's gradient there was not exploding itself: then the
        # input side's zero is ReLUs killed by the blow-up, which exploding_gradients reports.
        calm = np.zeros(n, dtype=bool)
        held_before: dict[int, dict[str, Any]] = {}  # a loss's index -> what the group before it showed
        for i in np.flatnonzero(m.virtual):
            before = self.last_held if i == 0 else (self._held(*rows[i - 1]) if not m.virtual[i - 1] else {})
            held_before[int(i)], calm[i] = before, bool(before) and self._calm(before)
        cont = cond | (m.virtual & calm)
        carried = (self.streak.start_step, self.streak.start_wall)
        run_len, first, _ = continued_streak(cond, cont, ratio, self.streak, m.steps, m.walls)
        levels = streak_due(run_len, m.virtual, self._patience(~m.virtual)).astype(int) * WARNING
        segments: list[tuple[str, list[int]]] = []  # (episode tag, merged indices): a group, its due losses after it
        owner: Groups | None = None
        for i in range(n):
            if not m.virtual[i]:
                g, idx, _ = rows[i]
                if g is not owner:
                    segments.append((g.tags[idx[0]], []))
                    owner = g
                segments[-1][1].append(i)
            elif levels[i]:
                if not segments:
                    segments.append((str(self.last_held["tag"]), []))
                segments[-1][1].append(i)
        alerts = []
        for tag, at in segments:
            sel = np.asarray(at, dtype=np.int64)
            for e in self.events(KIND, tag, levels[sel], m.steps[sel], self.p["rearm"]):
                i = int(sel[e])
                k = int(first[i])
                step, wall = carried if k < 0 else (int(m.steps[k]), float(m.walls[k]))
                if m.virtual[i]:
                    alerts.append(self._alert(held_before[i], step, wall, int(m.steps[i]), overflow=True))
                else:
                    alerts.append(self._alert(self._held(*rows[i]), step, wall, int(m.steps[i])))
        self.last_held = self._held(*rows[n - 1]) if cond[n - 1] else {}
        return alerts

    def _calm(self, held: dict[str, Any]) -> bool:
        """Whether the last layer's gradient in ``held`` is below exploding_gradients' gates (per-weight RMS
        ``exploding_rms`` = 1, a norm ``exploding_norm`` = 100): an overflow completes a vanishing streak only
        then."""
        gate = self.p["exploding_rms"] if held["source"] == HIST else self.p["exploding_norm"]
        return bool(held["last"] <= gate)

    def _held(self, g: Groups, idx: list[int], i: int) -> dict[str, Any]:
        """What an alert says of group row ``i`` (JSON-ready: kept for a streak a later overflow completes)."""
        row = g.values[i]
        last = row[idx[-1]]
        with np.errstate(invalid="ignore", divide="ignore"):
            small = [g.layers[k] for k in idx[:-1] if row[k] / last < self.p["ratio"]]
        return {"tag": g.tags[idx[0]], "first_layer": g.layers[idx[0]], "last_layer": g.layers[idx[-1]],
                "first": float(row[idx[0]]), "last": float(last), "layers_below_ratio": small, "source": g.source,
                "compared": len(idx)}

    def _alert(self, held: dict[str, Any], step: int, wall: float, noticed: int, overflow: bool = False) -> Alert:
        small = held["layers_below_ratio"]
        unit = "RMS" if held["source"] == "histogram_rms" else "norm"
        named = ", ".join(small[:4]) + (f" and {len(small) - 4} more" if len(small) > 4 else "")
        broke = f", and the run overflowed (non-finite loss) by step {noticed}" if overflow else ""
        message = (
            f"vanishing gradients since step {step}: {len(small)} of {held['compared']} layers get < "
            f"{fmt_number(self.p['ratio'])}x the gradient of the last layer {held['last_layer']} ({named}; first layer "
            f"{unit} {fmt_number(held['first'])} vs {fmt_number(held['last'])}){broke}; use ReLU-family activations, "
            "residual connections, normalisation or a better initialisation"
        )
        evidence = {k: held[k] for k in ("first_layer", "last_layer", "first", "last", "layers_below_ratio", "source")}
        evidence["noticed_step"] = noticed
        if overflow:
            evidence["overflow_step"] = noticed
        return self.alert(kind=KIND, level=WARNING, step=step, wall_time=wall, tag=held["tag"], message=message,
                          evidence=evidence)
