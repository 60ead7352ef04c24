"""The data behind the HTML report's interactive charts: one JSON-ready dict per chart.

A chart is what :file:`assets/charts.js` draws with uPlot: shared x (steps), one y list per
curve (``None`` = no point there), the legend roles from :mod:`tbmon.monitor.chart_series`
(named, dead, others), the alerts and NaN/Inf points for the marker lane above the plot, and
whether the values were thinned. Long series are thinned to :data:`CELLS` numbers per chart
(each named curve keeps its highest and lowest point of every interval, so a spike stays
visible); the file size then grows with the number of runs, not with their length.

Names stay raw strings here; they reach the page as JSON inside a ``<script type=
"application/json">`` (see :func:`script_json`) and are set as text by the script, never as HTML.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from tbmon.analyzers.alerts import Alert
from tbmon.monitor.chart_series import LEGEND_LAYERS, gradient_panel, split_legend, zero_floor
from tbmon.monitor.run_labels import common_prefix
from tbmon.monitor.sanitize import json_ready, visible
from tbmon.monitor.summary import Curve, LogdirReport, RunSummary, log_scale_fits, loss_series

CELLS = 24_000
"""Numbers per chart at most (steps × curves): about 150 kB of JSON, like the PNG it replaces."""
MIN_STEPS = 300  # even a chart of a hundred layers keeps this many steps
SIGNIFICANT = 5  # digits written per value: the hover shows 4
NONFINITE_MARKERS = 200
"""NaN/Inf points marked per chart (the earliest): a run that keeps logging NaN would fill the strip."""
LEGEND_RUNS = 12  # runs named in the overlay's legend; the rest share one "others" entry


def run_charts(report: LogdirReport, run: RunSummary) -> dict[str, Any] | None:
    """The run's loss chart and gradient chart (either may be missing); None when it has neither."""
    alerts = [a for a in report.alerts if a.run in (run.run, run.experiment_dir)]
    charts = []
    losses = loss_series(report, run)
    if losses:
        charts.append(chart("loss", losses, alerts, unit="curves", by_peak=False))
    gradients = gradient_panel(report, run)
    if gradients is not None:
        charts.append(chart(gradients.title, gradients.curves, alerts, unit="layers"))
    if not charts:
        return None
    train = next(((s, v) for label, s, v in losses if label.startswith("train: ")), None)
    return {"charts": charts, "train_loss": train}  # full curve, for the logdir's overlay (never written as is)


def overlay_chart(
    report: LogdirReport, runs: Sequence[RunSummary], drawn: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    """Every drawn run's training loss on one chart, named without the directories all runs share;
    the legend names the first :data:`LEGEND_RUNS` of ``runs`` (the caller's order: worst first)."""
    runs = [r for r in runs if drawn.get(r.run, {}).get("train_loss") is not None]
    if len(runs) < 2:
        return None
    prefix = common_prefix([r.run for r in runs])
    curves = [(r.run.removeprefix(prefix), *drawn[r.run]["train_loss"]) for r in runs]
    alerts = [a for a in report.alerts if any(a.run in (r.run, r.experiment_dir) for r in runs)]
    which = "every run" if len(runs) == len(report.runs) else f"{len(runs)} of {len(report.runs)} runs"
    title = f"training loss of {which}" + (f" (under {prefix})" if prefix else "")
    return chart(title, curves, alerts, unit="runs", by_peak=False, legend_limit=LEGEND_RUNS)


def chart(
    title: str,
    curves: Sequence[Curve],
    alerts: Sequence[Alert],
    *,
    unit: str,
    by_peak: bool = True,
    legend_limit: int = LEGEND_LAYERS,
) -> dict[str, Any]:
    """One chart's spec; the legend as :func:`chart_series.split_legend` splits it (``unit``: what "others" counts)."""
    legend = split_legend(curves, legend_limit, by_peak=by_peak)
    ordered = [*legend.named, *legend.dead, *legend.others]
    roles = ["named"] * len(legend.named) + ["dead"] * len(legend.dead) + ["other"] * len(legend.others)
    log = bool(log_scale_fits(np.concatenate([v for _, _, v in curves])))
    floor = float(f"{zero_floor(curves):.{SIGNIFICANT}g}") if log else 0.0  # as written for the curves
    every = np.unique(np.concatenate([s for _, s, _ in curves]))
    steps = _thinned_steps(every, [*legend.named, *legend.dead], CELLS // len(curves))
    series = []
    for (label, curve_steps, values), role in zip(ordered, roles, strict=True):
        y = _at(steps, curve_steps, values)
        if role == "dead":
            y = np.where(np.isfinite(y), floor, y)
        elif log:
            y = np.where(y > 0, y, np.nan)  # a log axis cannot place 0; a dead layer has its own floor
        series.append({"name": visible(label), "role": role, "y": _numbers(y)})
    nonfinite = sorted(
        {(int(s), visible(label)) for label, curve_steps, values in curves for s in curve_steps[~np.isfinite(values)]}
    )
    return json_ready(
        {
            "title": visible(title),
            "unit": unit,
            "log": log,
            "floor": float(floor) if log and legend.dead else None,
            "x": steps.tolist(),
            "series": series,
            "alerts": [_alert(a) for a in alerts],
            "nonfinite": [{"step": s, "name": name} for s, name in nonfinite[:NONFINITE_MARKERS]],
            "thinned": None if steps.size == every.size else {"shown": int(steps.size), "of": int(every.size)},
        }
    )


def _thinned_steps(every: np.ndarray, kept_curves: Sequence[Curve], budget: int) -> np.ndarray:
    """At most about ``budget`` of ``every`` step: evenly spread, plus each kept curve's min and max per interval."""
    budget = max(budget, MIN_STEPS)
    if every.size <= budget:
        return every
    intervals = max(budget // (2 * len(kept_curves) + 1), 1)
    edges = np.linspace(every[0], every[-1], intervals + 1)
    picks = [every[np.linspace(0, every.size - 1, intervals + 1).astype(np.int64)]]
    for _, steps, values in kept_curves:
        finite = np.isfinite(values)
        steps, values = steps[finite], values[finite]
        bucket = np.clip(np.searchsorted(edges, steps, side="right") - 1, 0, intervals - 1)
        order = np.lexsort((values, bucket))  # by interval, then value: each run's ends are its min and max
        first = np.flatnonzero(np.r_[True, bucket[order][1:] != bucket[order][:-1]])
        last = np.r_[first[1:], order.size] - 1
        picks += [steps[order[first]], steps[order[last]]]
    return np.unique(np.concatenate(picks))


def _at(steps: np.ndarray, curve_steps: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The curve's value at each of ``steps`` (its last point at a repeated step), NaN where it has none."""
    order = np.argsort(curve_steps, kind="stable")
    curve_steps, values = curve_steps[order], values[order]
    where = np.searchsorted(curve_steps, steps, side="right") - 1
    valid = where >= 0
    out = np.full(steps.shape, np.nan)
    hit = valid.copy()
    hit[valid] = curve_steps[where[valid]] == steps[valid]
    out[hit] = values[where[hit]]
    return out


def _numbers(values: np.ndarray) -> list[float | None]:
    """JSON numbers with :data:`SIGNIFICANT` digits; NaN/Inf (shown as markers instead) and gaps as null."""
    return [float(f"{v:.{SIGNIFICANT}g}") if np.isfinite(v) else None for v in values.tolist()]


def _alert(alert: Alert) -> dict[str, Any]:
    return {
        "step": int(alert.step),
        "severity": alert.severity,
        "kind": visible(alert.kind),
        "run": visible(alert.run),
        "text": visible(alert.message),
    }


def script_json(value: Any) -> str:
    """``value`` as JSON that cannot end its ``<script>`` element or open a comment in it.

    ``<``, ``>`` and ``&`` become ``\\u003c``-style escapes, so a tag named
    ``</script><script>alert(1)</script>`` stays a string for ``JSON.parse``; U+2028/9 too.
    """
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text
