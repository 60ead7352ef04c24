"""PNG curves per run for `tbmon report --plots DIR` (matplotlib, Agg; the HTML report draws interactive charts instead).

One figure per run: the losses on top (training and validation, log-scale when they span
more than a decade) and, when the run logs any, gradient health below (per-layer gradient
norms, or the RMS ``sqrt(sum_squares / num)`` of per-layer gradient histograms; a panel of the
whole model's norm only is titled as such). The legend names the largest layers and every dead
(all-zero) one, drawn dashed at a floor where a log axis cannot show 0; the rest are thin grey
lines under one "others" entry (:mod:`tbmon.monitor.chart_series` decides, as for HTML). Every
alert of the run is a vertical line at its step, coloured by severity, so a reader sees
where the trouble started. NaN/Inf points cannot be drawn on a curve; they are marked as
red crosses along the top edge instead of silently vanishing.

matplotlib is imported inside the functions: it costs about a second, and only reports
with plots pay it.
"""

from __future__ import annotations

import hashlib
import io
import re
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tbmon.analyzers.alerts import Alert, severity_rank
from tbmon.monitor.chart_series import gradient_panel, split_legend, zero_floor
from tbmon.monitor.sanitize import file_name, plot_text, visible
from tbmon.monitor.summary import Curve, LogdirReport, RunSummary, log_scale_fits, loss_series

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SEVERITY_COLOURS = {"critical": "#d62728", "warning": "#ff7f0e", "info": "#7f7f7f"}
TITLE_CHARS = 100  # about the width of a 9-inch figure at 10 pt; longer run paths wrap
PATH_SEPARATOR = "__"
"""Stands for ``/`` in a plot's file name: ``exp/seed_1`` → ``exp__seed_1.png``."""
TAIL_BYTES = 120
"""A name too long for a file keeps at least this much of its last directory (the version, the seed)."""


def run_png(report: LogdirReport, run: RunSummary, *, dpi: int = 100) -> bytes | None:
    """The run's figure as PNG bytes, or None when the run has neither losses nor gradient data."""
    figure = run_figure(report, run)
    if figure is None:
        return None
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def write_plots(
    reports: Sequence[LogdirReport], directory: str | Path, drawn: Iterable[tuple[int, str, bytes]]
) -> tuple[list[Path], list[str]]:
    """Write each ``(position in reports, run, png)`` of ``drawn`` to ``<directory>/[<logdir>/]<name>.png``.

    The name is the whole run path (:func:`plot_name`): a plot mailed or opened alone still says
    which run it is, where ``version_3.png`` in a folder tree did not. Two runs that would share a
    name (``a__b`` and ``a/b``) are told apart by a hash of the run. Returns the files written and
    one line per plot that could not be (the others are still written).
    """
    root = Path(directory)
    targets = [root / subdir if subdir else root for subdir in _logdir_dirs(reports)]
    written: list[Path] = []
    failed: list[str] = []
    used: set[Path] = set()
    for position, run, png in drawn:
        path = targets[position] / plot_name(run)
        if path in used:
            path = targets[position] / plot_name(run, distinct=True)
        used.add(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png)
        except OSError as exc:
            failed.append(f"{visible(path)}: {exc.strerror or exc}")
            continue
        written.append(path)
    return sorted(written), sorted(failed)


def plot_name(run: str, *, distinct: bool = False) -> str:
    """``a/b`` → ``a__b.png``; the logdir itself (``.``) → ``_root.png``.

    A name too long for a file (255 bytes) loses its middle, not its end: the head is cut, tagged
    with a hash of the whole path, and the last directory follows. ``distinct`` adds a hash of
    the run even to a short name (for two runs whose flattened names coincide).
    """
    if run == ".":
        return "_root.png"
    flat = run.replace("/", PATH_SEPARATOR)
    *parents, last = run.split("/")
    if distinct:
        run_hash = hashlib.sha256(run.encode("utf-8", "surrogateescape")).hexdigest()[:12]
        return file_name(f"{flat}~{run_hash}", ".png")
    if not parents or len(last.encode("utf-8", "surrogateescape")) > TAIL_BYTES:
        return file_name(flat, ".png")
    return file_name(PATH_SEPARATOR.join(parents), PATH_SEPARATOR + last + ".png")


def safe_name(name: str) -> str:
    """A single path component for a logdir's plot folder: odd characters become ``_``."""
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", name)


def run_figure(report: LogdirReport, run: RunSummary) -> Figure | None:
    losses = list(loss_series(report, run))
    gradients = gradient_panel(report, run)
    if not losses and gradients is None:
        return None
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    panels = (1 if losses else 0) + (1 if gradients is not None else 0)
    title = "\n".join(textwrap.wrap(plot_text(f"{run.run}  ({report.logdir})"), TITLE_CHARS))
    figure = _figure(Figure, panels, title_lines=title.count("\n") + 1)
    axes = figure.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    alerts = [a for a in report.alerts if a.run in (run.run, run.experiment_dir)]
    index = 0
    if losses:
        _draw_lines(axes[index], losses, ylabel="loss", by_peak=False)
        axes[index].set_title(f"{title} — loss", loc="left", fontsize=10, pad=16)
        index += 1
    if gradients is not None:
        _draw_lines(axes[index], list(gradients.curves), ylabel="gradient norm / RMS")
        axes[index].set_title(gradients.title, loc="left", fontsize=10, pad=16)
    for position, ax in enumerate(axes):
        _mark_alerts(ax, alerts, label=position == 0)
    axes[-1].set_xlabel("step")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    return figure


def _figure(figure_class: type[Figure], panels: int, *, title_lines: int) -> Figure:
    """Fixed margins in inches: matplotlib's constrained layout doubled the time per figure."""
    panel, left, right, bottom, gap = 3.2, 0.85, 0.2, 0.55, 0.6
    top = 0.35 + 0.2 * title_lines  # 0.2 in of it for the alert labels above the top panel
    height = panels * panel + (panels - 1) * gap + top + bottom
    figure = figure_class(figsize=(9, height))
    figure.subplots_adjust(
        left=left / 9, right=1 - right / 9, bottom=bottom / height, top=1 - top / height, hspace=gap / panel
    )
    return figure


def _draw_lines(ax: Axes, series: list[Curve], *, ylabel: str, by_peak: bool = True) -> None:
    """The named curves in colour, dead ones dashed black (at a floor on a log axis), the others thin grey."""
    import matplotlib as mpl

    legend = split_legend(series, by_peak=by_peak)
    log = log_scale_fits(np.concatenate([values for _, _, values in series]))
    floor = zero_floor(series) if log else 0.0
    colours = mpl.colormaps["tab10"]
    for i, (label, steps, values) in enumerate(legend.named):
        finite = np.isfinite(values)
        marker = "o" if finite.sum() <= 30 else None
        ax.plot(
            steps[finite], values[finite], label=_legend_label(label), color=colours(i % 10), linewidth=1.3,
            marker=marker, markersize=3,
        )  # fmt: skip
    for i, (label, steps, values) in enumerate(legend.others):
        finite = np.isfinite(values)
        ax.plot(
            steps[finite], values[finite], color="#b0b0b0", linewidth=0.8, zorder=1,
            label=f"others ({len(legend.others)} layers)" if i == 0 else "_",
        )  # fmt: skip
    for label, steps, values in legend.dead:
        finite = np.isfinite(values)
        ax.plot(
            steps[finite], np.full(int(finite.sum()), floor), color="black", linestyle="--", linewidth=1.4,
            label=_legend_label(f"{label} — dead (all 0)"),
        )  # fmt: skip
    if log:
        ax.set_yscale("log", nonpositive="clip")
        if legend.dead:
            ax.axhline(floor, color="black", linewidth=0.5, alpha=0.4)
    bad = np.concatenate([steps[~np.isfinite(values)] for _, steps, values in series])
    if bad.size:
        ax.plot(
            bad, np.full(bad.shape, 0.97), linestyle="none", marker="x", color="#d62728", markersize=7,
            transform=ax.get_xaxis_transform(), label=f"NaN/Inf ({bad.size})", clip_on=False,
        )  # fmt: skip
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")


def _legend_label(tag: str) -> str:
    """A tag as a legend entry: mathtext escaped, and a leading ``_`` (matplotlib hides such labels) kept."""
    text = plot_text(tag)
    return f" {text}" if text.startswith("_") else text


def _mark_alerts(ax: Axes, alerts: list[Alert], *, label: bool) -> None:
    """A dashed line under the curves per distinct (step, kind); the top panel also names the kind
    in a strip above its plot area (ticks of a top axis), so no label covers a curve. Labels of one
    kind closer than 8 % of the axis share one, in the colour of the worst of them."""
    seen: dict[tuple[int, str], str] = {}
    for alert in alerts:
        if (alert.step, alert.kind) not in seen:
            seen[(alert.step, alert.kind)] = alert.severity
            colour = SEVERITY_COLOURS.get(alert.severity, "#7f7f7f")
            ax.axvline(alert.step, color=colour, linestyle="--", linewidth=1.1, alpha=0.6, zorder=0)
    if not (label and seen):
        return
    low, high = ax.get_xlim()
    named: dict[tuple[int, str], str] = {}
    for (step, kind), severity in sorted(seen.items()):
        first = next(((s, k) for s, k in named if k == kind and step - s < (high - low) * 0.08), None)
        if first is None:
            named[(step, kind)] = severity
        elif severity_rank(severity) > severity_rank(named[first]):
            named[first] = severity
    lane = ax.secondary_xaxis("top")
    lane.set_xticks([step for step, _ in named], labels=[plot_text(kind) for _, kind in named], fontsize=7)
    for text, severity in zip(lane.get_xticklabels(), named.values(), strict=True):
        text.set_color(SEVERITY_COLOURS.get(severity, "#7f7f7f"))
    lane.tick_params(length=3, pad=1)


def _logdir_dirs(reports: Sequence[LogdirReport]) -> Iterator[str]:
    """No subdirectory for one logdir; otherwise one per logdir, named after it (numbered if names clash)."""
    if len(reports) == 1:
        yield ""
        return
    used: set[str] = set()
    for report in reports:
        base = safe_name(Path(report.logdir).name or "logdir")
        name, n = base, 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        yield name

