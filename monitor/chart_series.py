"""What a run's charts show, decided once for the PNG plots and the interactive HTML report.

A gradient panel can hold a hundred layers, some of them dead (every gradient exactly 0), or
only the whole model's norm. Both outputs must say the same thing about it: which curves get a
legend entry (the :data:`LEGEND_LAYERS` largest, every dead layer, the rest as one "others"
entry), where a dead layer is drawn when a log axis cannot show 0 (:func:`zero_floor`), and
what the panel is titled. Pure functions over :mod:`tbmon.monitor.summary` curves; no drawing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tbmon.analyzers.signals import GRAD_HISTOGRAM, GRAD_NORM
from tbmon.monitor.summary import Curve, LogdirReport, RunSummary, gradient_series

LEGEND_LAYERS = 8
"""Live layers named in a legend; beyond that a legend hides the chart, so the rest share one entry."""
PER_LAYER_TITLE = "gradient health per layer"
TOTAL_NORM_TITLE = "total gradient norm (whole model; no per-layer gradients logged)"


@dataclass(frozen=True, slots=True)
class Legend:
    """A panel's curves split for its legend: ``named`` (largest first), ``dead`` and ``others``."""

    named: tuple[Curve, ...]
    dead: tuple[Curve, ...]
    others: tuple[Curve, ...]


@dataclass(frozen=True, slots=True)
class GradientPanel:
    title: str
    curves: tuple[Curve, ...]


def gradient_panel(report: LogdirReport, run: RunSummary) -> GradientPanel | None:
    """The run's gradient curves and a title that says whether they are layers or one total norm."""
    curves = tuple(gradient_series(report, run))
    if not curves:
        return None
    total_only = all(_is_total(report, run, label) for label, _, _ in curves)
    return GradientPanel(TOTAL_NORM_TITLE if total_only else PER_LAYER_TITLE, curves)


def _is_total(report: LogdirReport, run: RunSummary, label: str) -> bool:
    """A whole-model tag (``grad_norm``, ``grad_2.0_norm_total``): its pattern names no layer."""
    histogram = label.endswith(" (RMS)")
    tag = label.removesuffix(" (RMS)") if histogram else label
    match = report.matcher.classify(tag, histogram=histogram, role=run.role)
    return match is not None and match.signal in (GRAD_NORM, GRAD_HISTOGRAM) and match.param is None


def is_dead(values: np.ndarray) -> bool:
    """Every finite value is exactly 0 (and there is one): a layer whose gradient never flows."""
    finite = values[np.isfinite(values)]
    return bool(finite.size) and not finite.any()


def split_legend(curves: Sequence[Curve], limit: int = LEGEND_LAYERS, *, by_peak: bool = True) -> Legend:
    """Dead curves always named; of the live ones the first ``limit`` (by highest peak, or in the
    given order: losses, runs), the rest "others".

    "Others" never holds a single curve: naming it costs the same legend line.
    """
    dead = tuple(c for c in curves if is_dead(c[2]))
    live = [c for c in curves if not is_dead(c[2])]
    if by_peak:
        live.sort(key=_peak, reverse=True)
    if len(live) <= limit + 1:
        return Legend(tuple(live), dead, ())
    return Legend(tuple(live[:limit]), dead, tuple(live[limit:]))


def _peak(curve: Curve) -> float:
    finite = curve[2][np.isfinite(curve[2])]
    return float(np.abs(finite).max()) if finite.size else np.inf  # all NaN/Inf: the first to look at


def zero_floor(curves: Sequence[Curve]) -> float:
    """Where 0 is drawn on a log axis: a decade below the smallest positive value of any curve."""
    positive = [v[np.isfinite(v) & (v > 0)] for _, _, v in curves]
    smallest = min((float(p.min()) for p in positive if p.size), default=1.0)
    return smallest / 10
