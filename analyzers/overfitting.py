"""`overfitting`: validation loss climbs meaningfully above its best while training loss keeps falling.

Judged once per evaluation (validation point), against the training loss of the same stretch
of training (median of the training points logged since the previous evaluation, at least the
last ``MIN_TRAIN_POINTS``: with evaluations a few steps apart, one or two noisy minibatch losses
made a healthy run's training loss "fall" by chance). The
*best* is the lowest median of ``smooth_evals`` consecutive evaluations, dated at the lowest
evaluation of that window (the sampled corpus's labeller defines the minimum the same way: a
single lucky evaluation is not where the validation loss bottomed out; taken as the best, one
7-35 % below its neighbours dated the warning hundreds of steps before the real minimum on two
development runs, s0568 and s0730, and inflated a 9 % rise into 10.5 % on the healthy s0752). An
evaluation *counts* when all hold:

* the validation loss, smoothed the same way (median of the last ``smooth_evals``), is above
  its best by more than ``min_rise`` × |best| and by more than ``noise_sigma`` × the
  evaluation-to-evaluation noise (robust σ of the differences; of the second differences once
  there are ``MIN_CURVATURE_EVALS`` evaluations, so the steps of the descent before the minimum
  do not count as noise: on s0586 they made 3 σ 0.04 against a 30 % rise of 0.05 after a flat
  minimum, and the rule never fired), so a plateau or a noisy validation loss does not count;
* the training loss is below its level at the best evaluation (a median of the points within
  half an evaluation interval on both sides of it, at least as far as its last 5 points before
  it reach, once training has gone past it: the same scale as the level it is compared with;
  5 points of a batch-14 loss on s0474 gave 0.34 where the interval's median is 0.50) by
  ``min_train_fall`` × |level|
  (it keeps improving: the model fits the training data better while generalising worse; if
  both rise, that is divergence, not overfitting);
* the validation loss is above the training loss by ``min_gap`` × |train| (SageMaker's Overfit
  ratio, 0.1).

``patience`` consecutive counting evaluations raise one warning dated at the step where the
validation loss bottomed out. Keras ``train``/``validation`` sibling runs are judged together
(the engine pairs them; the alert goes on their parent directory) and matched by step.
"""

from __future__ import annotations

from math import sqrt
from statistics import median
from typing import Any, ClassVar

import numpy as np

from tbmon.analyzers.alerts import Alert
from tbmon.analyzers.base import BaseRule, RunView
from tbmon.analyzers.numbers import fmt_number
from tbmon.analyzers.signals import TRAIN_LOSS, VAL_LOSS
from tbmon.analyzers.windows import MAD_TO_SIGMA

KIND = "overfitting"
WARNING = 1
MAX_PENDING = 256  # evaluations waiting for the training side to catch up (bounded memory)
MAX_TRAIN_POINTS = 2048  # training points kept per evaluation interval (median of the latest)
MIN_TRAIN_POINTS = 10  # the training level is a median of at least this many points
AROUND_BEST = MIN_TRAIN_POINTS // 2  # training points before the best evaluation that set its level's window
MAX_EVALS = 64  # evaluations kept per validation tag (the noise estimate's reach)
MIN_CURVATURE_EVALS = 16  # evaluations before noise is judged on second differences (a jump spoils 3 of them)


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
        "rearm": 10,
    }

    def __init__(self, run: str, params: dict[str, Any]) -> None:
        super().__init__(run, params)
        self.alerted_minimum: dict[str, int] = {}  # validation tag → step of the minimum last reported

    def feed(self, view: RunView) -> list[Alert]:
        """Walk the batch in ``seq`` order, judging each evaluation as soon as training reaches its step.

        Judging at that exact point (never later) means the bounded training buffer always holds
        the same points when an evaluation is judged, however the stream was chunked.
        """
        trains = [i.series for i in view.signal(TRAIN_LOSS) if len(i.series)]
        evals = []
        for item in view.signal(VAL_LOSS):
            s = item.series
            for k in np.flatnonzero(np.isfinite(s.value)):  # non-finite: divergence's business
                evals.append((int(s.seq[k]), s.tag, int(s.step[k]), float(s.wall_time[k]), float(s.value[k])))
        evals.sort(key=lambda e: e[0])
        cursors = [0] * len(trains)
        alerts: list[Alert] = []
        for seq, tag, step, wall, value in evals:
            alerts += self._advance(trains, cursors, seq)
            st = self._val_state(tag)
            st["pending"] = (st["pending"] + [[step, wall, value]])[-MAX_PENDING:]
            alerts += self._judge_all()
        return alerts + self._advance(trains, cursors, np.iinfo(np.int64).max)

    def _advance(self, trains: list[Any], cursors: list[int], upto_seq: int) -> list[Alert]:
        """Add training points with seq below ``upto_seq``, pausing where one reaches a waiting evaluation."""
        alerts: list[Alert] = []
        for n, s in enumerate(trains):
            a, b = cursors[n], int(np.searchsorted(s.seq, upto_seq))
            while a < b:
                waiting = [int(p[0]) for k, st in self.tags.items() if k.startswith("val:") for p in st["pending"][:1]]
                cut = b
                if waiting:
                    reached = np.flatnonzero(s.step[a:b] >= min(waiting))
                    cut = a + int(reached[0]) + 1 if reached.size else b
                self._add_train(s.tag, s.step[a:cut], s.value[a:cut])
                a = cut
                alerts += self._judge_all()
            cursors[n] = b
        return alerts

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["tags"] = {k: ({**v, "points": v["points"].tolist()} if k.startswith("train:") else v)
                         for k, v in state["tags"].items()}
        return {**state, "alerted_minimum": self.alerted_minimum}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.alerted_minimum = {str(k): int(v) for k, v in state["alerted_minimum"].items()}
        for key, st in self.tags.items():
            if key.startswith("train:"):
                st["points"] = np.asarray(st["points"], dtype=float).reshape(-1, 2)

    def _judge_all(self) -> list[Alert]:
        alerts: list[Alert] = []
        for key in sorted(k for k in self.tags if k.startswith("val:")):
            alerts += self._judge(key[4:], self.tags[key])
        self._trim_train()
        return alerts

    # --- training side ------------------------------------------------------------------------

    def _add_train(self, tag: str, steps: np.ndarray, values: np.ndarray) -> None:
        ok = np.isfinite(values)
        if not ok.any():
            return
        st = self.tags.setdefault(f"train:{tag}", {"points": np.zeros((0, 2)), "max_step": None})
        st["points"] = np.concatenate([st["points"], np.column_stack([steps[ok], values[ok]])])[-MAX_TRAIN_POINTS:]
        top = int(steps.max())
        st["max_step"] = top if st["max_step"] is None else max(st["max_step"], top)

    def _train_tag(self, val_tag: str) -> str | None:
        """The training tag to compare with: same name (Keras epoch_loss), else an epoch-level one, else the first."""
        names = [t[6:] for t in self.tags if t.startswith("train:")]
        if not names:
            return None
        base = val_tag.rsplit("/", 1)[-1]
        for pick in ([n for n in names if n.rsplit("/", 1)[-1] == base], [n for n in names if "epoch" in n], names):
            if pick:
                return pick[0]
        return None

    def _train_level(self, train: dict[str, Any], prev_step: float, step: int) -> float:
        pts = train["points"]
        upto = pts[pts[:, 0] <= step]
        if upto.size == 0:
            return float("nan")
        since = upto[upto[:, 0] > prev_step]
        if len(since) < MIN_TRAIN_POINTS:  # evaluations a few steps apart: a median of 2 points is noise
            since = upto[-MIN_TRAIN_POINTS:]
        return float(np.median(since[:, 1]))

    def _trim_train(self) -> None:
        """Drop training points no evaluation can need again (all validation tags judged past them)."""
        judged = []
        back = self.p["smooth_evals"] - 1  # evaluations that a later smoothing window still holds
        for key, st in self.tags.items():
            if key.startswith("val:"):
                judged += [st["prev_step"]] + [e[2] for e in st["evals"][max(0, len(st["evals"]) - back):]]
        if not judged or None in judged:
            return
        upto = min(judged)
        for key, train in self.tags.items():
            if key.startswith("train:"):
                pts = train["points"]
                keep_from = max(0, int(np.searchsorted(pts[:, 0], upto, side="right")) - MIN_TRAIN_POINTS)
                train["points"] = pts[keep_from:]

    # --- validation side ----------------------------------------------------------------------

    def _val_state(self, tag: str) -> dict[str, Any]:
        return self.tags.setdefault(
            f"val:{tag}",
            {"pending": [], "evals": [], "best": None, "around_best": [], "best_until": None, "streak": 0,
             "prev_step": None},
        )

    def reset(self, tag: str) -> None:
        for key in (f"val:{tag}", f"train:{tag}"):
            self.tags.pop(key, None)

    def _judge(self, val_tag: str, st: dict[str, Any]) -> list[Alert]:
        train_tag = self._train_tag(val_tag)
        if train_tag is None:
            return []
        train = self.tags[f"train:{train_tag}"]
        p = self.p
        alerts = []
        while st["pending"] and train["max_step"] is not None and st["pending"][0][0] <= train["max_step"]:
            step, wall, value = st["pending"].pop(0)
            step = int(step)
            prev = -np.inf if st["prev_step"] is None else st["prev_step"]
            level = self._train_level(train, prev, step)
            st["prev_step"] = step
            if not np.isfinite(level):
                continue
            st["evals"] = (st["evals"] + [[value, level, step, wall]])[-MAX_EVALS:]
            window = st["evals"][-p["smooth_evals"]:]
            smooth = median(e[0] for e in window)
            if len(window) == p["smooth_evals"] and (st["best"] is None or smooth < st["best"][0]):
                low = min(window, key=lambda e: e[0])  # the window's lowest evaluation dates the minimum
                st["best"] = [smooth, low[1], int(low[2]), low[3]]
                k = next(i for i in range(len(st["evals"]) - 1, -1, -1) if st["evals"][i] is low)
                gap = low[2] - st["evals"][k - 1][2] if k > 0 else 0
                self._start_best(train, st, int(low[2]), gap / 2)
            if st["best"] is None:
                continue
            self._settle_best(train, st, step)
            counting = self._counts(st, value, level)
            st["streak"] = st["streak"] + 1 if counting else 0
            cond = np.array([1 if st["streak"] >= p["patience"] else 0])
            # A flickering condition may close and reopen the episode; with the same validation
            # minimum it is the same overfitting, so it is reported once (kept across restarts too).
            due = self.events(KIND, val_tag, cond, np.array([step]), p["rearm"]).size
            if due and self.alerted_minimum.get(val_tag) != st["best"][2]:
                self.alerted_minimum[val_tag] = st["best"][2]
                alerts.append(self._alert(val_tag, train_tag, st, value, level, step))
        return alerts

    def _start_best(self, train: dict[str, Any], st: dict[str, Any], best_step: int, half: float) -> None:
        """Open the window of training points whose median will be the training level at the best:
        ``half`` steps (half an evaluation interval) on each side, or as many as its last
        ``AROUND_BEST`` points before it span if that is more."""
        pts = train["points"]
        upto = pts[pts[:, 0] <= best_step]
        if upto.size == 0:  # the buffer no longer reaches back there (more points than it holds per evaluation)
            upto = pts[:1]
        half = max(half, best_step - float(upto[-AROUND_BEST:][0, 0]))
        st["around_best"] = upto[upto[:, 0] >= best_step - half].tolist() or upto[-1:].tolist()
        st["best_until"] = best_step + half

    def _settle_best(self, train: dict[str, Any], st: dict[str, Any], step: int) -> None:
        """Once training has passed the best evaluation by as many steps as its last points before
        it span, take the training level there from the points on both sides.

        A trailing median taken while the loss still fell steeply sits above the level at the best
        (10 points logged every 5 steps reach back 50 steps), and "training kept falling" then holds
        by lag alone: an HF run whose training loss was flat after its validation minimum got an
        overfitting warning that way. Symmetric in steps rather than in points, so a loss that
        drops fast right after the best does not pull the level down either.
        """
        if st["best_until"] is None:
            return
        pts = train["points"]
        last = st["around_best"][-1][0]
        new = pts[(pts[:, 0] > last) & (pts[:, 0] <= min(step, st["best_until"]))]
        st["around_best"] = (st["around_best"] + new.tolist())[:MAX_TRAIN_POINTS]  # bounded if logging gets denser
        if step >= st["best_until"]:
            st["best"][1] = float(np.median([v for _, v in st["around_best"]]))
            st["best_until"], st["around_best"] = None, []

    def _counts(self, st: dict[str, Any], value: float, level: float) -> bool:
        p = self.p
        vals = [e[0] for e in st["evals"]]
        best, best_train = st["best"][0], st["best"][1]
        rise = median(vals[-p["smooth_evals"] :]) - best
        if not (rise > p["min_rise"] * abs(best)
                and best_train - level > p["min_train_fall"] * abs(best_train)
                and value - level > p["min_gap"] * abs(level)):
            return False
        diffs = [b - a for a, b in zip(vals, vals[1:])]
        scale = sqrt(2.0)  # var(e1 - e0) = 2 σ²
        if len(vals) >= MIN_CURVATURE_EVALS:  # a descent's steps are trend, not noise: take it out
            diffs, scale = [b - a for a, b in zip(diffs, diffs[1:])], sqrt(6.0)  # var(e2 - 2 e1 + e0) = 6 σ²
        if len(diffs) < 4:
            return True
        centre = median(diffs)
        noise = MAD_TO_SIGMA * median([abs(d - centre) for d in diffs]) / scale
        return rise > p["noise_sigma"] * noise

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
