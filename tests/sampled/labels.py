"""What a sampled run shows, decided from its written data alone, by criteria that share nothing with tbmon.

The event files are read back with TensorBoard's own loader (`tests.scenarios.labels.read_run`). Two
reference levels are computed rather than read: U, the untrained model's loss ("what an untrained model of
its kind would score": its validation loss at initialisation, or its first logged batch loss if that is
higher and the run logs every step), and chance, the best constant predictor's loss (the label marginal's
entropy, or the target variance). Curves are judged by centred rolling medians over w = max(3, N/50)
training points, so a single minibatch never decides a label. Each criterion has a *borderline* band: a
run with no label that falls in one is neither healthy nor pathological, and is left out of both the
recall and the false-alarm counts (its count is reported). The numbers say what a person reading the
curves would call each problem; they were fixed on the development part only:

- divergence: train loss, validation loss or total gradient norm non-finite (onset: the first such
  step, or where the excursion that led to it began: more than half the progress undone on 3-point
  medians up to it); or the rolling train loss at >= 2 U over >= 10 % of the run; or, after real progress (best level,
  on a N/20-point window, <= 0.8 U), >= 90 % of it undone for >= 5 % of the run. Onset of the last two:
  where the excursion began (3-point medians above 1.3 U, or more than half the progress undone; a dip of
  the 3-point median while the rolling level stays above does not end an excursion).
  Borderline: such an excursion (>= 1.3 U, or >= 50 % undone) lasting >= 1 % of the run, on 3-point medians
  or on the rolling level (a noisy loss's 3-point medians can keep dipping under the bar while its level
  stays above it).
- not_learning: no divergence, and the final level (median of the last 10 % of training points) is
  >= 0.9 x min(U, chance): never 10 % better than an untrained model or a constant guess. Onset: the
  first step. Borderline: 0.7-0.9.
- overfitting: the minimum of the validation loss (3-evaluation rolling median) with >= 3 evaluations after it, the
  validation loss ending >= 25 % above it, both measured on medians over a tenth of the evaluations (3-evaluation
  medians below 40: the lowest of many noisy 3-medians is an extreme, not a level: `_level_rise`), the training loss
  over the last 10 % of the run < 80 % of its level around the minimum (+-5 % of the run, never above its level over
  the 5 % up to the minimum: a blow right after it is no level to fall from; development s6996), no divergence; or,
  before that minimum, an earlier one from which the 3-evaluation medians rose >= 25 % for >= 3 evaluations in a row
  with the training loss then < 80 % of its level around it, until a blow to the model (its training loss up by
  >= 20 % of min(U, chance)) took the validation loss below that minimum (an overfitting that a later, lower minimum
  did not undo). Onset: the (first such) minimum. Borderline: a rise of 10-25 % (or >= 25 % on 3-medians only) with
  training falling, a >= 25 % rise that came back down (after the lowest minimum, or before it from an earlier one
  without a blow), or a >= 25 % rise with training only 5-20 % lower or not lower at all (a run whose validation
  loss ends a quarter above its best is no clean healthy run, whatever its training loss did: thirteenth batch,
  s9436, an lr jump x194 took validation 0.39 -> 0.6-1.3 for good while training came back to 7x its level before
  it; s9362, validation +60 % while a near-zero training loss wandered).
- vanishing_gradients: first-layer weight-gradient RMS < 1e-3 x the last layer's (AUTOTRAINER beta1)
  at a logged step and at >= 80 % of the later ones, and at >= 3 logged steps in all (all of them, if the
  run logged fewer): a condition seen at the run's final log only has not persisted. Onset: the start of
  the first stretch of >= 3 consecutive logs below 1e-3, if one came before the persistent part (a problem
  that came and went before it settled was already a problem). Borderline: the same
  at 1e-2; or < 1e-3 at >= 2 consecutive logs that did not persist (a pathology from initialisation that
  the optimiser undid: a 20-layer ReLU MLP at 1e-9 for its first 130 of 338 steps, then training
  normally, is neither healthy nor a run that keeps the problem).
- exploding_gradients: a non-finite total norm or first/last-layer gradient; the total norm > 100x the
  median of its first ten logged values (the first half, if fewer than 20 were logged) and still > 30x
  it, or non-finite, at the next log (a one-log spike that is back at the next is a spike, not an
  explosion: s0464's 108x for one log of 172, back to 0.25x at the next); first/last RMS > 70
  (AUTOTRAINER beta3) persisting as above; or the model-wide gradient RMS (total norm / sqrt(parameter
  count)) > 1 persisting as above (a mean-reduced loss of order one gives per-weight gradients far below
  1: 0.1 or less on this corpus's clean development runs). Borderline: model-wide RMS > 0.1 persisting,
  growth > 30x, or RMS > 1 / ratio > 70 at >= 2 consecutive logs that did not persist (an explosion from
  initialisation the optimiser undid). Onsets as for vanishing: a persistent condition is dated from its first
  stretch of >= 3 consecutive logs, growth from where the climb passed 30x (inside the early logs too).
- dead units (borderline only: no kind of its own among the scored ones): >= 70 % of a layer's units without any
  gradient (DeepDiagnosis' share of a layer's ReLU outputs), persisting as above. A unit is a bias entry: the shim's
  exact `grad_zero_frac/<bias>` share, or 1 where a bias histogram holds no nonzero entry. A run that loses most of
  a layer for good is no clean healthy run, whatever its loss does (32nd development batch, s24906: 75-92 % of a
  12-channel convolution's units dead at 19 of its 20 logs, validation ending at 1.03 where chance is 2.3); nor one
  that has most of a layer dead at >= 2 consecutive logs without it persisting (the transient band of the gradient
  criteria above; 39th batch, s32062: 5 of a convolution's 8 channels dead at every log, a sixth at every other).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.scenarios.labels import RunData, Series, first_nonfinite, read_run
from tests.scenarios.styles import STYLES

from .space import Config

@dataclass(frozen=True)
class Curves:
    train: Series
    val: Series
    grad_norm: Series | None  # total gradient norm (logged, or rebuilt from per-layer values)
    first_rms: Series | None  # first weight layer's gradient RMS
    last_rms: Series | None
    params: int
    untrained: float  # U: the untrained model's loss (the larger of its validation loss and first logged batch)
    chance: float  # the trivial predictor's loss: the label marginal's entropy, or the target variance
    run_length: int
    dead_shares: tuple[Series, ...] = ()  # per layer with a bias: the share of its units that got no gradient


def reference_losses(cfg: Config) -> tuple[float, float]:
    """(the freshly initialised model's validation loss, the best constant predictor's validation loss).

    The constant predictor outputs the training labels' marginal (cross-entropy = its entropy on the
    validation labels) or the training targets' mean (MSE): "chance level", what a model that learned
    nothing about its inputs scores.
    """
    import torch

    from .run import _loss, dataset, model

    torch.set_num_threads(1)
    ds = dataset(cfg)
    net = model(cfg, ds)
    net.eval()
    with torch.no_grad():
        untrained = float(_loss(ds, net(ds.x_val), ds.y_val))
    if ds.task == "regression":
        chance = float(((ds.y_val - ds.y_train.mean(dim=0)) ** 2).mean())
    else:
        classes = int(max(ds.y_train.max(), ds.y_val.max())) + 1
        prior = torch.bincount(ds.y_train.flatten(), minlength=classes).double() + 1.0
        prior = prior / prior.sum()
        chance = float(-torch.log(prior[ds.y_val.flatten()]).mean())
    return untrained, chance


def _weights(order: list[tuple[str, int]]) -> tuple[str, str]:
    names = [n for n, _ in order if n.endswith("weight") or n.startswith("rnn.weight_ih")]
    return names[0], names[-1]


def curves(cfg: Config, path: Path) -> Curves:
    from .run import parameter_order

    style = STYLES[cfg.style]
    if style.keras_dirs:
        train_run, val_run = read_run(path / "train"), read_run(path / "validation")
    else:
        train_run = val_run = read_run(path)
    order = parameter_order(cfg)
    sizes = dict(order)
    first, last = _weights(order)
    empty = Series(np.zeros(0, dtype=np.int64), np.zeros(0))
    train = train_run.scalars.get(style.train_loss, empty)
    val = val_run.scalars.get(style.val_loss, empty)
    grad_norm = train_run.scalars.get(style.grad_norm_total) if style.grad_norm_total else None
    layers = _layer_rms(train_run, style, sizes)
    first_rms, last_rms = layers.get(first), layers.get(last)
    if grad_norm is None and layers:
        grad_norm = _total_from_layers(layers, sizes)
    series = [s for s in (train, val, grad_norm) if s is not None and s.step.size]
    lo = min((int(s.step.min()) for s in series), default=0)
    hi = max((int(s.step.max()) for s in series), default=1)
    untrained, chance = reference_losses(cfg)
    if not (style.hf_nan_filter or style.keras_dirs) and train.value.size and np.isfinite(train.value[0]):
        # Logged every step: the first point is the untrained model's loss on its first batch. (HF and
        # Keras log means over many steps, which may already include a blow-up.)
        untrained = max(untrained, float(train.value[0]))
    return Curves(train, val, grad_norm, first_rms, last_rms, sum(sizes.values()), untrained, chance, max(1, hi - lo),
                  _dead_shares(train_run, style, sizes))


def writer_dropped_records(cfg: Config, run: Curves) -> bool:
    """Whether tbmon's shim dropped records while writing this run.

    The shim never blocks training: when its writer thread falls behind, a bounded queue drops and
    counts, so what a shim-written run holds could depend on timing. It logs the loss every step and
    its total gradient norm at every gradient log, so a gap in either shows a drop. Before the shim
    kept scalars apart from gradient records and woke its writer at half a queue, 24 of the locked
    part's 62 shim-written runs lost records under the 2-core build's load (23 of them loss points: 2/3
    of the curve in one); rebuilt since, none.
    """
    if cfg.writer != "shim":
        return False
    last = int(run.train.step.max()) if run.train.step.size else -1
    if run.train.step.size != last + 1:
        return True
    logged = set(run.grad_norm.step.tolist()) if run.grad_norm is not None else set()
    due = {s for s in range(last + 1) for every in (cfg.norm_every, cfg.hist_every) if every > 0 and s % every == 0}
    return logged != due


def _layer_rms(run: RunData, style, sizes: dict[str, int]) -> dict[str, Series]:
    out = {}
    for name, size in sizes.items():
        if style.grad_hist and (tag := style.grad_hist.format(p=name)) in run.hist_sum_squares:
            ss, num = run.hist_sum_squares[tag], run.hist_num[tag]
            with np.errstate(invalid="ignore", divide="ignore"):
                out[name] = Series(ss.step, np.sqrt(ss.value / num.value))
        elif style.grad_norm_layer and (tag := style.grad_norm_layer.format(p=name)) in run.scalars:
            s = run.scalars[tag]
            out[name] = Series(s.step, s.value / math.sqrt(size))
    return out


def _dead_shares(run: RunData, style, sizes: dict[str, int]) -> tuple[Series, ...]:
    """Per layer with a bias, the share of its units (bias entries) that got no gradient: exact where the shim
    logged it, else 1 or 0 by whether its bias histogram holds a nonzero entry (a histogram cannot count them)."""
    out = []
    for name in sizes:
        if not name.endswith("bias"):
            continue
        if (exact := run.scalars.get(f"grad_zero_frac/{name}")) is not None:
            out.append(exact)
        elif style.grad_hist and (tag := style.grad_hist.format(p=name)) in run.hist_sum_squares:
            ss = run.hist_sum_squares[tag]
            out.append(Series(ss.step, (ss.value == 0).astype(float)))
    return tuple(out)


def dead_units(c: Curves) -> list[str]:
    """Borderline reasons only: most of a layer's units without gradient, for good, or at >= 2 consecutive logs
    without persisting (the transient band the other gradient criteria have: the 39th batch's s32062, a 9-conv
    ReLU net whose net.5 had 5 of its 8 channels dead at every log and a sixth at every other one, 0.62-0.75, was
    labelled a clean healthy run)."""
    if any(persistent_onset(s.step, s.value >= 0.7) is not None for s in c.dead_shares):
        return ["most of a layer's units got no gradient for good (dead ReLUs)"]
    if any(transient(s.value >= 0.7) for s in c.dead_shares):
        return ["most of a layer's units got no gradient at >= 2 consecutive logs, not for good"]
    return []


def _total_from_layers(layers: dict[str, Series], sizes: dict[str, int]) -> Series:
    """sqrt(sum of squared per-layer norms) at the steps every layer was logged."""
    common = sorted(set.intersection(*(set(s.step.tolist()) for s in layers.values())))
    steps = np.array(common, dtype=np.int64)
    total = np.zeros(steps.size)
    for name, s in layers.items():
        at = np.searchsorted(s.step, steps)
        total = total + (s.value[at] * math.sqrt(sizes[name])) ** 2
    return Series(steps, np.sqrt(total))


def _rolling_median(values: np.ndarray, w: int) -> np.ndarray:
    half = w // 2
    return np.array([np.median(values[max(0, i - half): i + half + 1]) for i in range(values.size)])


def _sustained(holds: np.ndarray, length: int) -> int | None:
    """Index of the first run of >= ``length`` consecutive True values (or one reaching the end)."""
    run = 0
    for i, h in enumerate(holds):
        run = run + 1 if h else 0
        if run >= length or (h and i == holds.size - 1 and run >= min(length, 3)):
            return i - run + 1
    return None


PERSIST, PERSIST_POINTS = 0.8, 3


def persistent_onset(step: np.ndarray, holds: np.ndarray) -> int | None:
    """The first step where the condition holds and keeps holding at >= PERSIST of the later points, at
    >= PERSIST_POINTS points in all (every point, on a run that logged fewer)."""
    need = min(PERSIST_POINTS, holds.size)
    for i in np.flatnonzero(holds):
        later = holds[i:]
        if later.mean() >= PERSIST and later.sum() >= need:
            return int(step[i])
    return None


def first_stretch(step: np.ndarray, holds: np.ndarray, onset: int) -> int:
    """Where a condition that persists from ``onset`` was first seen: the start of its earliest stretch of
    >= PERSIST_POINTS consecutive logs (``onset`` if none came before). Persistence decides *whether* a run
    has the problem; this dates it. A gradient ratio below 1e-3 for the 28 logs from step 70 of a 606-step
    run (s5116), then in and out of it, was a problem from step 70, not from its last unbroken stretch."""
    i = _sustained(holds[step < onset], PERSIST_POINTS)
    return onset if i is None else int(step[i])


def transient(holds: np.ndarray) -> bool:
    """Held at >= 2 consecutive logs (without persisting: callers ask after ``persistent_onset`` said no)."""
    return bool((holds[1:] & holds[:-1]).any())


def divergence(c: Curves) -> tuple[int | None, list[str]]:
    found = [x for x in (first_nonfinite(c.train), first_nonfinite(c.val), first_nonfinite(c.grad_norm)) if x is not None]
    borderline: list[str] = []
    t = c.train
    finite = np.isfinite(t.value)
    steps, values = t.step[finite], t.value[finite]
    if found and values.size >= 3:
        # A NaN that ends an excursion (the loss already far back up) began where the excursion did.
        nan_at = min(found)
        before = steps < nan_at
        if before.sum() >= 3:
            v = values[before]
            best = np.minimum.accumulate(_rolling_median(v, max(5, v.size // 20)))
            progress = np.where(c.untrained - best >= 0.2 * c.untrained, c.untrained - best, np.nan)
            with np.errstate(invalid="ignore", divide="ignore"):
                undone = (_rolling_median(v, 3) - best) / progress
                undone_level = (_rolling_median(v, max(3, v.size // 50)) - best) / progress
            if undone[-1] > 0.5:
                found.append(int(steps[before][_walk_back(undone > 0.5, v.size - 1, undone_level > 0.5)]))
    if values.size >= 3:
        n = values.size
        u = c.untrained
        level = _rolling_median(values, max(3, n // 50))
        short = _rolling_median(values, 3)  # where an excursion begins, to a few points
        if (i := _sustained(level >= 2 * u, max(3, n // 10))) is not None:
            found.append(int(steps[_walk_back(short > 1.3 * u, i, level > 1.3 * u)]))
        elif any(_sustained(x >= 1.3 * u, max(3, n // 100)) is not None for x in (short, level)):
            borderline.append("loss >= 1.3x untrained")
        # Progress is judged on a wider window, so a lucky first few batches are not "progress".
        best = np.minimum.accumulate(_rolling_median(values, max(5, n // 20)))
        progress = u - best
        with np.errstate(invalid="ignore", divide="ignore"):
            undone = np.where(progress >= 0.2 * u, (level - best) / progress, 0.0)
            undone_short = np.where(progress >= 0.2 * u, (short - best) / progress, 0.0)
        if (i := _sustained(undone >= 0.9, max(3, n // 20))) is not None:
            found.append(int(steps[_walk_back(undone_short > 0.5, i, undone > 0.5)]))
        elif any(_sustained(x >= 0.5, max(3, n // 100)) is not None for x in (undone_short, undone)):
            # On the rolling level too: a noisy loss whose 3-point medians keep dipping under the bar can
            # still sit above it for a tenth of the run (tenth batch, s6432: 0.94 -> 0.39 -> 0.9-1.1 for
            # 600 of 1,359 steps, the validation loss back from 0.62 to 1.1, never 13 points in a row).
            borderline.append("half the progress undone for a while")
    return (min(found) if found else None), borderline


def _walk_back(holds: np.ndarray, i: int, bridge: np.ndarray | None = None) -> int:
    """The first index of the stretch of True ``holds`` (3-point medians) that ends at or runs through ``i``,
    where a dip with ``bridge`` (the same test on the rolling level) still True does not end the stretch.
    Without the bridge, one lucky batch dated an excursion: s0252's loss rose from 0.08 to 0.6-1.1 at step
    2100 and stayed there, but two 3-point dips to its threshold put the onset at 2592."""
    start = i
    while i > 0 and (holds[i - 1] or (bridge is not None and bridge[i - 1])):
        i -= 1
        if holds[i]:
            start = i
    return start


def not_learning(c: Curves, diverged: bool) -> tuple[int | None, list[str]]:
    values = c.train.value[np.isfinite(c.train.value)]
    if diverged or values.size < 3:
        return None, []
    tail = np.median(values[-max(1, values.size // 10):])
    floor = min(c.untrained, c.chance)  # falling from an absurd start to chance level is not learning
    if tail >= 0.9 * floor:
        return int(c.train.step[0]), []
    return None, (["improved only 10-30 % on an untrained model or chance"] if tail >= 0.7 * floor else [])


def _dated_minimum(val: Series, m: int) -> int:
    """The step of the lowest evaluation in the smoothing window of minimum ``m``: one lucky evaluation is not
    the minimum, but the minimum is dated where the validation loss was lowest."""
    lo = max(0, m - 1)
    return int(val.step[lo + int(np.argmin(val.value[lo: m + 2]))])


def _training_fall(c: Curves, onset: int, end: float) -> float | None:
    """The training loss over the run's last tenth up to step ``end`` against its level around ``onset``
    (+-5 % of the run, but never above its level over the 5 % up to it: a training loss that leapt right
    after the minimum was knocked up by a blow, and coming back part of the way is no fall. Development
    s6996, an lr raised x46 four steps after the validation minimum: the symmetric level, 1.9, half of it
    the blow's 2.2-2.3, made an end at 1.15 a 40 % fall, against 15 % from the 1.35 before the blow);
    ``None`` when either has no point."""
    train = c.train
    reach = max(1, c.run_length // 20)
    around = train.value[np.abs(train.step - onset) <= reach]
    before = train.value[(train.step >= onset - reach) & (train.step <= onset)]
    tail = train.value[(train.step >= end - max(1, c.run_length // 10)) & (train.step <= end)]
    if around.size == 0 or tail.size == 0:
        return None
    level = min(np.median(around), np.median(before)) if before.size else np.median(around)
    with np.errstate(invalid="ignore", divide="ignore"):  # a training loss of exactly 0 there: NaN, no fall
        return float(np.median(tail) / level)


def _knocked_back(c: Curves, b: int) -> bool:
    """Whether a blow to the model, not better generalisation, brought the validation loss to its new minimum
    ``b``: in an evaluation interval of its smoothing window the training loss (median) rose by >= 20 % of
    min(U, chance) over its level in the 5 % of the run before them (s6472 0.006 -> 0.76 with chance 1.15;
    the near-zero loss of s0548, 0.008 -> 0.03 with chance 2.3, was noise, not a blow)."""
    train, at = c.train, c.val.step
    before = train.value[(train.step > at[b - 2] - max(1, c.run_length // 20)) & (train.step <= at[b - 2])]
    if before.size == 0:
        return False
    bar = np.median(before) + 0.2 * min(c.untrained, c.chance)
    for k in range(b - 1, min(b + 2, at.size)):
        interval = train.value[(train.step > at[k - 1]) & (train.step <= at[k])]
        if interval.size and np.median(interval) >= bar:
            return True
    return False


def _earlier_overfitting(c: Curves, smooth: np.ndarray) -> tuple[int | None, bool]:
    """The first minimum, before the lowest, from which the validation loss rose >= 25 % for >= 3 evaluations
    in a row (smoothed) while training fell by >= 20 %, until a blow to the model (``_knocked_back``) took the
    validation loss below it. Such a lower minimum does not undo the overfitting before it:
    tenth batch, s6472 (Keras): validation 0.90 -> 1.57 over 18 epochs while training fell 0.95 -> 0.003, then
    a learning-rate jump sent the training loss to 0.76 and the validation loss to 0.61; judged from that
    last minimum alone the run was healthy. A rise that came back below its minimum by itself is a hump
    (s0548: validation 0.082 -> 0.17 for four evaluations, then 0.066), borderline at most: the second value
    says whether there was one (with training >= 5 % lower), as the borderline band has it after the lowest
    minimum. Twelfth batch, s8934 (Adam at lr 1): validation 1.07 -> 2.86, twice the untrained model's loss,
    while training fell 0.32 -> 0.12, then back to 0.74 at the end as training drifted up to 0.4: its lowest
    minimum is its last evaluations, and it was labelled healthy."""
    lows = np.flatnonzero(smooth < np.minimum.accumulate(np.concatenate([[np.inf], smooth[:-1]])))
    hump = False
    for a, b in zip(lows[:-1], lows[1:]):
        i = _sustained(smooth[a + 1: b] >= 1.25 * smooth[a], 3)
        if i is None:
            continue
        onset = _dated_minimum(c.val, int(a))
        fall = _training_fall(c, onset, float(c.val.step[a + 1 + i + 2]))
        if fall is None or not fall < 0.95:
            continue
        if fall < 0.8 and _knocked_back(c, int(b)):
            return onset, hump
        hump = True
    return None, hump


def _level_rise(values: np.ndarray, best: float) -> float:
    """How far the validation loss ended above its minimum, both as medians over a tenth of the evaluations (at
    least 3: the 3-evaluation medians below 40 evaluations). The lowest of many noisy medians of three is an
    extreme, not a level: on `bench/noisy_plateaus.py`'s flat validation losses (20 % noise per evaluation, no
    overfitting by construction) the end's median of three was >= 25 % above it on 57 % of 100-evaluation runs
    and 46 % of 60-evaluation runs; over medians of a tenth, 8 % and 21 % (30 evaluations: 25 % either way)."""
    width = 2 * max(1, values.size // 20) + 1
    level = max(best, float(_rolling_median(values, width).min()))
    return float(np.median(values[-width:]) / level - 1)


def overfitting(c: Curves, diverged: bool) -> tuple[int | None, list[str]]:
    val = c.val
    if diverged or val.value.size < 6 or not np.isfinite(val.value).all():
        return None, []
    smooth = _rolling_median(val.value, 3)  # one lucky evaluation is not the minimum
    earlier, hump = _earlier_overfitting(c, smooth)
    if earlier is not None:
        return earlier, []
    came_back = ["validation rose >= 25 % before its lowest minimum and came back while training fell"] if hump else []
    m = int(np.argmin(smooth))
    if m > val.value.size - 4:
        return None, came_back
    best = smooth[m]
    onset = _dated_minimum(val, m)
    fall = _training_fall(c, onset, float(c.train.step.max()))
    if fall is None:
        return None, came_back
    end_rise = np.median(val.value[-3:]) / best - 1
    peak_rise = smooth[m:].max() / best - 1
    if _level_rise(val.value, best) >= 0.25 and fall < 0.8:
        return onset, []
    if fall < 0.95 and (end_rise >= 0.1 or peak_rise >= 0.25):
        return None, ["validation rose 10-25 %, or rose and came back, while training fell"]
    if end_rise >= 0.25:  # a model that ended worse on held-out data, by too little for divergence
        return None, [*came_back, "validation ended >= 25 % above its minimum, training not lower"]
    return None, came_back


def _ratio(c: Curves) -> tuple[np.ndarray, np.ndarray] | None:
    if c.first_rms is None or c.last_rms is None:
        return None
    steps = np.intersect1d(c.first_rms.step, c.last_rms.step)
    a = c.first_rms.value[np.searchsorted(c.first_rms.step, steps)]
    b = c.last_rms.value[np.searchsorted(c.last_rms.step, steps)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return steps, a / b


def vanishing(c: Curves) -> tuple[int | None, list[str]]:
    ratio = _ratio(c)
    if ratio is None:
        return None, []
    steps, r = ratio
    ok = np.isfinite(r)
    if (onset := persistent_onset(steps, ok & (r < 1e-3))) is not None:
        return first_stretch(steps, ok & (r < 1e-3), onset), []
    if persistent_onset(steps, ok & (r < 1e-2)) is not None:
        return None, ["first/last gradient RMS < 1e-2"]
    return None, (["first/last gradient RMS < 1e-3 for a while, then recovered"] if transient(ok & (r < 1e-3)) else [])


def exploding(c: Curves) -> tuple[int | None, list[str]]:
    found = [x for x in (first_nonfinite(c.grad_norm), first_nonfinite(c.first_rms), first_nonfinite(c.last_rms))
             if x is not None]
    borderline: list[str] = []
    g = c.grad_norm
    transients = []
    if g is not None and g.value.size >= 4:
        n = min(10, g.value.size // 2)
        early = np.median(g.value[:n])
        with np.errstate(invalid="ignore"):
            later = g.value[n:]
            still_up = (later[1:] > 30 * early) | ~np.isfinite(later[1:])
            over = np.flatnonzero((later[:-1] > 100 * early) & still_up)
            if np.isfinite(early) and over.size:
                # Dated where the climb began, as a divergence is: back through the logs still above 30x (the
                # bar for staying up), even inside the ten the early level is taken from.
                climbing = g.value[1:] > 30 * early  # (never back to the first log)
                found.append(int(g.step[1 + _walk_back(climbing, n + over[0] - 1)]))
            elif np.isfinite(early) and (later > 30 * early).any():
                borderline.append("grad norm grew > 30x")
    if g is not None and g.value.size:
        rms = g.value / math.sqrt(c.params)
        with np.errstate(invalid="ignore"):
            if (onset := persistent_onset(g.step, rms > 1.0)) is not None:
                found.append(first_stretch(g.step, rms > 1.0, onset))
            elif persistent_onset(g.step, rms > 0.1) is not None:
                borderline.append("model-wide gradient RMS > 0.1")
            transients.append(rms > 1.0)
    ratio = _ratio(c)
    if ratio is not None:
        steps, r = ratio
        with np.errstate(invalid="ignore"):
            if (onset := persistent_onset(steps, np.isfinite(r) & (r > 70))) is not None:
                found.append(first_stretch(steps, np.isfinite(r) & (r > 70), onset))
            transients.append(np.isfinite(r) & (r > 70))
    if not found and any(transient(t) for t in transients):
        borderline.append("gradients far too large for a while, then recovered")
    return (min(found) if found else None), borderline


def label(cfg: Config, path: Path) -> dict:
    """``{"onsets": {kind: step}, "borderline": [reasons], "run_length": n, "untrained": U}`` (JSON-ready)."""
    return judge(curves(cfg, path), cfg.cls)


def judge(c: Curves, cls: str) -> dict:
    """The labels of one run's curves (``label`` without the reading)."""
    onsets: dict[str, int] = {}
    borderline: list[str] = []
    div, why = divergence(c)
    borderline += why
    if div is not None:
        onsets["divergence"] = div
    for kind, (onset, why) in (("not_learning", not_learning(c, div is not None)),
                               ("overfitting", overfitting(c, div is not None)),
                               ("vanishing_gradients", vanishing(c)),
                               ("exploding_gradients", exploding(c))):
        borderline += why
        if onset is not None:
            onsets[kind] = onset
    borderline += dead_units(c)
    return {"onsets": onsets, "borderline": borderline, "run_length": c.run_length, "untrained": c.untrained,
            "chance": c.chance, "class": cls}
