"""`tbmon report --format html`: ONE self-contained file a person can mail to a colleague.

No external URL of any kind: CSS, the chart library (uPlot, vendored in ``assets/`` with its MIT
license) and the chart data are inline, so the file works offline. Charts are interactive: drag
to zoom, hover for values, click a legend entry to hide a curve; each logdir also gets one chart
of every run's training loss. Every text that comes from the logs (run names, tags, messages,
paths) goes through ``sanitize.html_text`` in the HTML and :func:`html_charts.script_json` in the
chart data: event files are untrusted input, and a tag named ``<script>`` must stay text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.resources import files
from typing import Any

from tbmon.analyzers.alerts import SEVERITIES, severity_rank
from tbmon.monitor.report_formats import (
    ALERT_COLUMNS,
    COMPARISON_COLUMNS,
    EXPERIMENT_COLUMNS,
    INCIDENT_COLUMNS,
    RUN_COLUMNS,
    alert_cells,
    comparison_rows,
    empty_note,
    experiment_cells,
    incident_cells,
    incidents_title,
    problem_line,
    run_cells,
)
from tbmon.monitor.html_charts import overlay_chart, script_json
from tbmon.monitor.sanitize import html_text
from tbmon.monitor.summary import LogdirReport, RunSummary

ChartsFn = Callable[[LogdirReport, RunSummary], "dict[str, Any] | None"]
MAX_FIGURES = 50  # per logdir: a run's charts cost up to ~300 kB of data, so 500 runs would make ~100 MB
HELP_LINE = (
    "Charts: drag across a chart to zoom (double-click to zoom out), hover for the values at a step, "
    "click a legend entry to hide or show its curve. Alerts are marked in the strip above each chart "
    "(hover a marker for the message) and as faint dashed lines under the curves."
)

SORT_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach((th, col) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0], up = th.dataset.dir !== 'up';
  th.dataset.dir = up ? 'up' : 'down';
  const key = row => { const cell = row.cells[col], text = cell.dataset.sort ?? cell.textContent,
    n = parseFloat(text); return Number.isNaN(n) ? [1, text] : [0, n]; };
  const rows = [...body.rows].map(row => [key(row), row]);
  rows.sort(([a], [b]) => (a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0)) * (up ? 1 : -1));
  rows.forEach(([, row]) => body.appendChild(row));
}));
"""
"""Click a column header of the runs table to sort by it (numbers as numbers, status by
severity), again to reverse. Inline, like everything else: the file works offline."""

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:1200px}
h1{font-size:1.4em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}h3{font-size:1em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}table.sortable th{cursor:pointer}code{background:#f3f3f3;padding:0 .2em}
.critical{color:#b00020;font-weight:bold}.warning{color:#b36b00;font-weight:bold}.ok{color:#1b7f3b}.info{color:#666}
.problem{color:#b36b00}.meta{color:#666;font-size:.85em}
.chart{position:relative;margin:.6em 0 1.4em}.chart-title{font-weight:600;font-size:.9em;margin-bottom:.2em}
.lane{position:relative;height:16px;font-size:11px;line-height:16px}
.marker{position:absolute;white-space:nowrap;cursor:help}
.legend{display:flex;flex-wrap:wrap;gap:.2em .9em;font-size:.85em;margin-top:.2em}.step{color:#666;min-width:7em}
.entry{border:0;background:none;cursor:pointer;font:inherit;padding:0;color:inherit;text-align:left}
.entry.off{opacity:.4;text-decoration:line-through}
.value{margin-left:.35em;color:#555;font-variant-numeric:tabular-nums}
.swatch{display:inline-block;width:1.5em;border-top:3px solid;margin-right:.3em;vertical-align:middle}
.swatch.dashed{border-top-style:dashed}
"""


def render_html(
    reports: Sequence[LogdirReport], version: str, charts: ChartsFn | None, max_figures: int = MAX_FIGURES
) -> str:
    """The whole document; ``charts`` returns a run's chart data (:func:`html_charts.run_charts`,
    None = nothing to draw), asked only for the runs :func:`figured_runs` picks."""
    specs: list[dict[str, Any]] = []
    body: list[str] = [f"<h1>tbmon report</h1><p class='meta'>tbmon {html_text(version)}</p>"]
    for report in reports:
        body.append(_logdir_section(report, charts, max_figures, specs))
    if len(reports) > 1:
        body.append("<h2>Comparison</h2>")
        body.append(_table(COMPARISON_COLUMNS, comparison_rows(reports), status_column=len(COMPARISON_COLUMNS) - 1))
    scripts = f"<script>{SORT_SCRIPT}</script>"
    if specs:
        scripts += (
            f"<script type='application/json' id='tbmon-charts'>{script_json(specs)}</script>\n"
            f"<script>{_asset_script('uPlot.iife.min.js', license_file='uPlot.LICENSE')}</script>\n"
            f"<script>{_asset_script('charts.js')}</script>"
        )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>tbmon report</title><style>{_CSS}{_asset('uPlot.min.css') if specs else ''}</style></head><body>\n"
        + "\n".join(body) + f"\n{scripts}\n</body></html>\n"
    )


def _asset(name: str) -> str:
    return (files("tbmon.monitor") / "assets" / name).read_text(encoding="utf-8")


def _asset_script(name: str, *, license_file: str | None = None) -> str:
    """A vendored script to inline: its ``/*! … */`` banner (a URL) replaced by the license text itself."""
    code = _asset(name)
    if license_file is None:
        return code
    if code.startswith("/*!"):
        code = code[code.index("*/") + 2 :].lstrip()
    return "/*\n" + _asset(license_file).replace("*/", "* /") + "*/\n" + code


def _logdir_section(
    report: LogdirReport, charts: ChartsFn | None, max_figures: int, specs: list[dict[str, Any]]
) -> str:
    out = [f"<h2>Logdir <code>{html_text(report.logdir)}</code></h2>"]
    note = empty_note(report)
    if note:
        return out[0] + f"<p class='warning'>{html_text(note)}</p>"
    runs = worst_first(report.runs)
    if len(runs) > 1:
        out.append("<p class='meta'>Runs with alerts first; click a column header to sort by it.</p>")
    rows = [run_cells(report, r) for r in runs]
    out.append(_table(RUN_COLUMNS, rows, status_column=RUN_COLUMNS.index("status"), sortable=True))
    if report.experiments:
        out.append("<h3>Experiments (train/validation pairs)</h3>")
        rows = [experiment_cells(e) for e in report.experiments]
        out.append(_table(EXPERIMENT_COLUMNS, rows, EXPERIMENT_COLUMNS.index("status")))
    out.append(f"<h3>{html_text(incidents_title(report))}</h3>")
    if report.alerts:
        rows = [incident_cells(*pair) for pair in report.incidents()]
        out.append(_table(INCIDENT_COLUMNS, rows, status_column=INCIDENT_COLUMNS.index("severity")))
        rows = [alert_cells(a) for a in report.alerts]
        out.append(f"<details><summary>Every alert ({len(report.alerts)})</summary>"
                   + _table(ALERT_COLUMNS, rows, status_column=ALERT_COLUMNS.index("severity")) + "</details>")
    else:
        out.append("<p class='ok'>No alerts.</p>")
    if report.problems:
        out.append(f"<h3>Read problems ({len(report.problems)})</h3><ul>")
        out.extend(f"<li class='problem'>{html_text(problem_line(p))}</li>" for p in report.problems)
        out.append("</ul>")
    drawn = figured_runs(report.runs, max_figures)
    data = {run.run: got for run in runs if charts is not None and run.run in drawn and (got := charts(report, run))}
    if data:
        out.append(f"<p class='meta'>{html_text(HELP_LINE)}</p>")
    if charts is not None and len(drawn) < len(report.runs):
        out.append(f"<p class='meta'>Charts for {len(drawn)} of {len(report.runs)} runs (only runs with alerts, "
                   "worst first); <code>--max-plots N</code> raises the cap, "
                   "<code>--plots DIR</code> draws every run as PNG.</p>")
    overlay = overlay_chart(report, runs, data)
    if overlay is not None:
        out.append("<h3>All runs compared</h3>")
        label = f"{overlay['title']} in {report.logdir}"
        out.append(_chart_box({**overlay, "group": f"overlay{len(specs)}"}, specs, label))
    for run in runs:
        out.append(f"<h3>Run <code>{html_text(run.run)}</code></h3>")
        out.append(_tag_list(run))
        group = f"run{len(specs)}"  # the run's charts share a cursor: hover a step in one, see it in both
        for spec in data.get(run.run, {}).get("charts", ()):
            out.append(_chart_box({**spec, "group": group}, specs, f"curves of run {run.run}"))
    return "\n".join(out)


def _chart_box(spec: dict[str, Any], specs: list[dict[str, Any]], label: str) -> str:
    """A placeholder the chart script fills, and a line saying how much a long series was thinned."""
    specs.append(spec)
    box = f"<div class='chart' data-chart='{len(specs) - 1}' role='figure' aria-label='{html_text(label)}'></div>"
    thinned = spec.get("thinned")
    if thinned:
        box += (f"<p class='meta'>Showing {thinned['shown']:,} of {thinned['of']:,} logged steps: long series are "
                "thinned for the page, each named curve keeping its lowest and highest point of every interval; "
                "<code>--plots DIR</code> draws every point.</p>")
    return box


def figured_runs(runs: Sequence[RunSummary], limit: int = MAX_FIGURES) -> set[str]:
    """The runs that get a figure: all of them when there are at most ``limit``; else at most
    ``limit`` runs with alerts, worst first (at 1,000 runs the healthy ones are the table's job)."""
    if len(runs) <= limit:
        return {r.run for r in runs}
    return {r.run for r in worst_first(runs)[:limit] if r.status in SEVERITIES}


def worst_first(runs: Sequence[RunSummary]) -> list[RunSummary]:
    """Runs by status, critical first and ``ok`` last; in name order within a status."""
    return sorted(runs, key=lambda r: -severity_rank(r.status) if r.status in SEVERITIES else 0)


def _tag_list(run: RunSummary) -> str:
    """The run's tags, folded away: useful when a colleague asks "did it log X?"."""
    items = [f"<li>{html_text(tag)}</li>" for tag in run.scalar_tags]
    items += [f"<li>{html_text(tag)} (histogram)</li>" for tag in run.histogram_tags]
    label = f"{len(run.scalar_tags)} scalar tags, {len(run.histogram_tags)} histogram tags"
    return f"<details><summary>{label}</summary><ul>{''.join(items)}</ul></details>"


def _table(
    header: Sequence[str], rows: Sequence[Sequence[str]], status_column: int | None = None, *, sortable: bool = False
) -> str:
    head = "".join(f"<th>{html_text(h)}</th>" for h in header)
    css_class = " class='sortable'" if sortable else ""
    lines = [f"<table{css_class}><thead><tr>{head}</tr></thead><tbody>"]
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            css = ""
            if i == status_column:  # sorts by severity, not alphabetically
                rank = -severity_rank(cell) if cell in SEVERITIES else 0
                css = f" class='{html_text(cell, quote=True)}' data-sort='{rank}'"
            cells.append(f"<td{css}>{html_text(cell)}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)
