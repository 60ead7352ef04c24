"""Ground truth from the written data: read a run back with TensorBoard's own loader, apply fixed criteria.

The criteria share no code or thresholds with `tbmon.analyzers`; they encode what a person reading the
curves would call each pathology, and where it began (its onset step):

- divergence: first step where the train loss, validation loss or total gradient norm is NaN/±Inf, or where
  the train loss exceeds both 10x its best value so far and its first logged value (a blow-up, finite or not,
  climbs above where training started; the second condition keeps noisy small-batch losses near zero out).
- overfitting: validation minimum at step m with >= 3 evaluations after it; the median of the last three
  validation losses is >= 25% above the minimum while the median train loss over the last 10% of the run is
  < 80% of the train loss around m (train still falls); not on a run that meets the divergence criterion
  (there the validation rise is the blow-up, not memorisation). Onset = m.
- vanishing_gradients: first logged step where the first layer's weight-gradient RMS is < 1e-3 x the last
  layer's (AUTOTRAINER's beta1 = 1e-3 ratio) and the ratio stays below that at >= 80% of later points.
- exploding_gradients: first step where the total gradient norm or a first/last-layer gradient is NaN/±Inf
  (the issue's "non-finite gradients"), or first step after the first ten logged values where the total
  gradient norm exceeds 100x their median (growth; +Inf counts), or where first/last weight-gradient RMS
  is > 70 (AUTOTRAINER's beta3) at that point and >= 80% of later points (large-init deep nets explode
  from step 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

from .styles import STYLES

DIVERGENCE_FACTOR = 10.0
OVERFIT_RISE = 0.25
OVERFIT_TRAIN_DROP = 0.8
VANISH_RATIO = 1e-3
EXPLODE_RATIO = 70.0
EXPLODE_GROWTH = 100.0
PERSIST = 0.8


@dataclass
class Series:
    step: np.ndarray
    value: np.ndarray


@dataclass
class RunData:
    """Latest-wins view of one run directory: a resumed writer's points replace the older ones at >= its step."""

    scalars: dict[str, Series] = field(default_factory=dict)
    hist_sum_squares: dict[str, Series] = field(default_factory=dict)
    hist_num: dict[str, Series] = field(default_factory=dict)


def _append(points: dict[str, list[tuple[int, float]]], tag: str, step: int, value: float) -> None:
    series = points.setdefault(tag, [])
    while series and series[-1][0] >= step:  # steps went back: a restart supersedes the old tail
        series.pop()
    series.append((step, value))


def _to_series(points: dict[str, list[tuple[int, float]]]) -> dict[str, Series]:
    return {t: Series(np.array([s for s, _ in p], dtype=np.int64), np.array([v for _, v in p], dtype=np.float64))
            for t, p in points.items()}


def read_run(run_dir: Path) -> RunData:
    scalars: dict[str, list[tuple[int, float]]] = {}
    sum_sq: dict[str, list[tuple[int, float]]] = {}
    num: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(p for p in run_dir.iterdir() if p.is_file() and ".tfevents." in p.name):
        for event in LegacyEventFileLoader(str(path)).Load():
            for value in event.summary.value:
                kind = value.WhichOneof("value")
                if kind == "simple_value":
                    _append(scalars, value.tag, event.step, value.simple_value)
                elif kind == "histo":
                    _append(sum_sq, value.tag, event.step, value.histo.sum_squares)
                    _append(num, value.tag, event.step, value.histo.num)
    return RunData(_to_series(scalars), _to_series(sum_sq), _to_series(num))


@dataclass(frozen=True)
class Signals:
    """The role-named curves of one scenario (the labeller knows its own tag style)."""

    train_loss: Series
    val_loss: Series
    grad_norm: Series | None  # total gradient norm
    first_rms: Series | None  # first layer's weight-gradient RMS
    last_rms: Series | None
    run_length: int  # last step - first step over every curve


def _weights(params: list[tuple[str, int]]) -> tuple[tuple[str, int], tuple[str, int]]:
    weights = [(n, k) for n, k in params if n.endswith("weight") or n.startswith("rnn.weight_ih")]
    return weights[0], weights[-1]


def signals(scenario_dir: Path, style_name: str, params: list[tuple[str, int]]) -> Signals:
    style = STYLES[style_name]
    if style.keras_dirs:
        train, val = read_run(scenario_dir / "train"), read_run(scenario_dir / "validation")
    else:
        train = val = read_run(scenario_dir)
    first, last = _weights(params)
    sizes = dict(params)
    first_rms = last_rms = None
    grad_norm = train.scalars.get(style.grad_norm_total) if style.grad_norm_total else None
    if style.grad_hist:
        hist = {name: (train.hist_sum_squares[style.grad_hist.format(p=name)], train.hist_num[style.grad_hist.format(p=name)])
                for name, _ in params if style.grad_hist.format(p=name) in train.hist_sum_squares}
        first_rms, last_rms = (Series(hist[n][0].step, np.sqrt(hist[n][0].value / hist[n][1].value)) for n in (first[0], last[0]))
        if grad_norm is None:
            grad_norm = Series(first_rms.step, np.sqrt(sum(ss.value for ss, _ in hist.values())))
    elif style.grad_norm_layer:
        norms = {name: train.scalars[style.grad_norm_layer.format(p=name)] for name, _ in params}
        first_rms, last_rms = (Series(norms[n].step, norms[n].value / math.sqrt(sizes[n])) for n in (first[0], last[0]))
        if grad_norm is None:
            grad_norm = Series(first_rms.step, np.sqrt(sum(s.value**2 for s in norms.values())))
    curves = [train.scalars[style.train_loss], val.scalars[style.val_loss]]
    curves += [c for c in (grad_norm, first_rms) if c is not None]
    lo = min(int(c.step.min()) for c in curves)
    hi = max(int(c.step.max()) for c in curves)
    return Signals(curves[0], curves[1], grad_norm, first_rms, last_rms, max(1, hi - lo))


def first_nonfinite(series: Series | None) -> int | None:
    """The step of the first NaN/Inf value, or None (also for no series)."""
    if series is None:
        return None
    bad = ~np.isfinite(series.value)
    return int(series.step[bad.argmax()]) if bad.any() else None


def divergence_onset(sig: Signals) -> int | None:
    candidates = [first_nonfinite(s) for s in (sig.train_loss, sig.val_loss, sig.grad_norm)]
    loss = sig.train_loss.value
    best = math.inf
    for i, v in enumerate(loss):
        if i and math.isfinite(v) and v > DIVERGENCE_FACTOR * best and v > loss[0]:
            candidates.append(int(sig.train_loss.step[i]))
            break
        if math.isfinite(v):
            best = min(best, v)
    found = [c for c in candidates if c is not None]
    return min(found) if found else None


def overfitting_onset(sig: Signals) -> int | None:
    val, train = sig.val_loss, sig.train_loss
    if divergence_onset(sig) is not None or len(val.value) < 6:
        return None
    m = int(np.argmin(val.value))
    if m > len(val.value) - 4:
        return None
    if np.median(val.value[-3:]) < (1 + OVERFIT_RISE) * val.value[m]:
        return None
    onset = int(val.step[m])
    half_window = max(1, sig.run_length // 20)
    around = train.value[np.abs(train.step - onset) <= half_window]
    tail = train.value[train.step >= train.step.max() - max(1, sig.run_length // 10)]
    if around.size == 0 or np.median(tail) >= OVERFIT_TRAIN_DROP * np.median(around):
        return None
    return onset


def persistent_onset(step: np.ndarray, holds: np.ndarray) -> int | None:
    """The first step where the condition holds and keeps holding at >= PERSIST of the later points."""
    for i in np.flatnonzero(holds):
        if holds[i:].mean() >= PERSIST:
            return int(step[i])
    return None


def _rms_ratio(sig: Signals) -> tuple[np.ndarray, np.ndarray] | None:
    if sig.first_rms is None or sig.last_rms is None:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        return sig.first_rms.step, sig.first_rms.value / sig.last_rms.value


def vanishing_onset(sig: Signals) -> int | None:
    ratio = _rms_ratio(sig)
    if ratio is None:
        return None
    step, r = ratio
    return persistent_onset(step, np.isfinite(r) & (r < VANISH_RATIO))


def exploding_onset(sig: Signals) -> int | None:
    found = [i for i in (first_nonfinite(s) for s in (sig.grad_norm, sig.first_rms, sig.last_rms)) if i is not None]
    if sig.grad_norm is not None and len(sig.grad_norm.value) >= 10:
        g = sig.grad_norm.value
        early = np.median(g[:10])
        over = g[10:] > EXPLODE_GROWTH * early
        if np.isfinite(early) and over.any():
            found.append(int(sig.grad_norm.step[10 + over.argmax()]))
    ratio = _rms_ratio(sig)
    if ratio is not None:
        step, r = ratio
        onset = persistent_onset(step, np.isfinite(r) & (r > EXPLODE_RATIO))
        if onset is not None:
            found.append(onset)
    return min(found) if found else None


CRITERIA = {
    "divergence": divergence_onset,
    "overfitting": overfitting_onset,
    "vanishing_gradients": vanishing_onset,
    "exploding_gradients": exploding_onset,
}


def onsets(sig: Signals) -> dict[str, int]:
    """Every fixed kind whose criterion holds on this data, with its onset step."""
    found = {kind: criterion(sig) for kind, criterion in CRITERIA.items()}
    return {kind: step for kind, step in found.items() if step is not None}
