"""`overfitting`: validation loss climbs meaningfully above its best while training loss keeps falling.

Judged once per evaluation (validation point), against the training loss of the same stretch
of training (median of the training points logged since the previous evaluation). An
evaluation *counts* when all hold:

* the validation loss, smoothed over the last ``smooth_evals`` evaluations (median), is above
  its best by more than ``min_rise`` × |best| and by more than ``noise_sigma`` × the
  evaluation-to-evaluation noise (robust σ of the differences), so a plateau or a noisy
  validation loss does not count;
* the training loss is below its level at the best evaluation by ``min_train_fall`` × |level|
  (it keeps improving: the model fits the training data better while generalising worse; if
  both rise, that is divergence, not overfitting);
* the validation loss is above the training loss by ``min_gap`` × |train| (SageMaker's Overfit
  ratio, 0.1).

``patience`` consecutive counting evaluations raise one warning dated at the step where the
validation loss bottomed out. Keras ``train``/``validation`` sibling runs are judged together
(the engine pairs them; the alert goes on their parent directory) and matched by step.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from tbmon.analyzers.alerts import Alert
from tbmon.analyzers.base import BaseRule, RunView
from tbmon.analyzers.divergence import fmt
from tbmon.analyzers.series import ScalarSeries
from tbmon.analyzers.signals import TRAIN_LOSS, VAL_LOSS
from tbmon.analyzers.windows import MAD_TO_SIGMA

KIND = "overfitting"
WARNING = 1
MAX_PENDING = 256  # evaluations waiting for the training side to catch up (bounded memory)
MAX_TRAIN_POINTS = 2048  # training points kept per evaluation interval (median of the latest)


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

    def feed(self, view: RunView) -> list[Alert]:
        for item in view.signal(TRAIN_LOSS):
            self._add_train(item.series)
        alerts: list[Alert] = []
        for item in view.signal(VAL_LOSS):
            s = item.series
            assert isinstance(s, ScalarSeries)
            st = self._val_state(s.tag)
            ok = np.isfinite(s.value)  # non-finite validation losses are divergence's business
            st["pending"] = (st["pending"] + np.column_stack(
                [s.step[ok], s.wall_time[ok], s.value[ok]]).tolist())[-MAX_PENDING:]
        for tag in sorted(t for t in self.tags if t.startswith("val:")):
            alerts += self._judge(tag[4:], self.tags[tag])
        return alerts

    # --- training side ------------------------------------------------------------------------

    def _add_train(self, s: Any) -> None:
        ok = np.isfinite(s.value)
        if not ok.any():
            return
        st = self.tags.setdefault(f"train:{s.tag}", {"points": [], "max_step": None})
        st["points"] = (st["points"] + np.column_stack([s.step[ok], s.value[ok]]).tolist())[-MAX_TRAIN_POINTS:]
        st["max_step"] = int(s.step[-1]) if st["max_step"] is None else max(st["max_step"], int(s.step.max()))

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
        pts = np.asarray(train["points"], dtype=float).reshape(-1, 2)
        upto = pts[pts[:, 0] <= step]
        if upto.size == 0:
            return float("nan")
        since = upto[upto[:, 0] > prev_step]
        level = float(np.median(since[:, 1])) if since.size else float(upto[-1, 1])
        # Keep only what the next evaluation can need: the last point at or before this one and later ones.
        keep_from = max(0, int(np.searchsorted(pts[:, 0], step, side="right")) - 1)
        train["points"] = pts[keep_from:].tolist()
        return level

    # --- validation side ----------------------------------------------------------------------

    def _val_state(self, tag: str) -> dict[str, Any]:
        return self.tags.setdefault(
            f"val:{tag}",
            {"pending": [], "evals": [], "best": None, "streak": 0, "prev_step": None},
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
            st["evals"] = (st["evals"] + [[value, level]])[-64:]
            if st["best"] is None or value < st["best"][0]:
                st["best"] = [value, level, step, wall]
            counting = self._counts(st, value, level)
            st["streak"] = st["streak"] + 1 if counting else 0
            cond = np.array([1 if st["streak"] >= p["patience"] else 0])
            if self.events(KIND, val_tag, cond, np.array([step]), p["rearm"]).size:
                alerts.append(self._alert(val_tag, train_tag, st, value, level, step))
        return alerts

    def _counts(self, st: dict[str, Any], value: float, level: float) -> bool:
        p = self.p
        evals = np.asarray(st["evals"], dtype=float)
        best, best_train = st["best"][0], st["best"][1]
        smooth = float(np.median(evals[-p["smooth_evals"] :, 0]))
        diffs = np.diff(evals[:, 0])
        noise = MAD_TO_SIGMA * float(np.median(np.abs(diffs - np.median(diffs)))) / np.sqrt(2) if diffs.size >= 4 else 0.0
        rise = smooth - best
        return bool(
            rise > p["min_rise"] * abs(best)
            and rise > p["noise_sigma"] * noise
            and best_train - level > p["min_train_fall"] * abs(best_train)
            and value - level > p["min_gap"] * abs(level)
        )

    def _alert(self, val_tag: str, train_tag: str, st: dict[str, Any], value: float, level: float, step: int) -> Alert:
        best, best_train, best_step, best_wall = st["best"]
        message = (
            f"{val_tag} bottomed out at {fmt(best)} at step {int(best_step)} and has risen to {fmt(value)} by step "
            f"{step} while {train_tag} kept falling ({fmt(best_train)} → {fmt(level)}): the model is overfitting; "
            "stop at the best checkpoint, or add regularisation/data"
        )
        return self.alert(
            kind=KIND, level=WARNING, step=int(best_step), wall_time=best_wall, tag=val_tag, message=message,
            evidence={"best_val": best, "val": value, "train_at_best": best_train, "train": level,
                      "noticed_step": step, "train_tag": train_tag},
        )
