"""Text renderers of `tbmon report`: Rich tables, JSON, CSV and Markdown (HTML: ``html_report``).

Each takes the ``LogdirReport``s built by ``summary.build_report`` and only formats them, so
all formats show the same numbers. Cell texts come from the shared helpers at the top; each
format escapes them (names from the logs are untrusted) with its function from ``sanitize``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from tbmon.analyzers.alerts import Alert
from tbmon.analyzers.incidents import Incident, canonical_order
from tbmon.analyzers.numbers import fmt_number
from tbmon.monitor.sanitize import csv_text, json_ready, markdown_code, markdown_text, rich_text, visible
from tbmon.monitor.summary import ExperimentSummary, LogdirReport, LossSummary, RunSummary

WIDE_TERMINAL = 170
"""All eleven run columns need about 170 characters (with a short run name); below that
the secondary ones are dropped so the rest stays readable instead of folding letter by letter."""
NARROW_DROPS = ("trend", "tags", "span", "restarts")
RUN_MIN_WIDTH = 20  # the run name is what a reader scans for; never squeeze it to nothing (half below 100 columns)
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "dim", "ok": "green"}

RUN_COLUMNS = (
    "run",
    "steps",
    "train loss last/best",
    "trend",
    "best val loss @ step",
    "tags",
    "span",
    "event files",
    "restarts",
    "status",
    "alerts",
)

ALERT_COLUMNS = ("severity", "kind", "run", "tag", "step", "message")
INCIDENT_COLUMNS = ("severity", "incident", "run", "steps", "alerts", "message")
EXPERIMENT_COLUMNS = ("experiment", "runs", "best train loss", "best val loss @ step", "status", "alerts")

CSV_RUN_FIELDS = (
    "logdir", "run", "experiment_dir", "role", "first_step", "last_step", "points",
    "scalar_tags", "histogram_tags", "train_loss_tag", "last_train_loss", "best_train_loss",
    "best_train_loss_step", "val_loss_tag", "last_val_loss", "best_val_loss", "best_val_loss_step",
    "first_wall_time", "last_wall_time", "files", "records", "read_problems", "restarts",
    "status", "alert_count",
)  # fmt: skip
CSV_ALERT_FIELDS = ("logdir", "run", "kind", "severity", "step", "wall_time", "tag", "message", "evidence", "incident")


# ---- shared cell texts -------------------------------------------------------------------


def fmt_span(seconds: float | None) -> str:
    """``1h 05m``; a span no clock gives (wall times of ±1e300 from a broken writer) as ``2.7e+295d``, not 300 digits."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h" if days < 100_000 else f"{float(days):.3g}d"


def fmt_steps(run: RunSummary) -> str:
    if run.first_step is None:
        return "–"
    return f"{run.first_step}–{run.last_step}"


def fmt_train_loss(loss: LossSummary | None) -> str:
    if loss is None:
        return "–"
    return f"{fmt_number(loss.last)} / {fmt_number(loss.best)}"


def fmt_trend(run: RunSummary) -> str:
    """The training loss as a sparkline (``×`` where it was NaN/Inf)."""
    return "" if run.train_loss is None else run.train_loss.trend


def fmt_val_loss(loss: LossSummary | None) -> str:
    if loss is None:
        return "–"
    if loss.best is None:
        return fmt_number(loss.last)
    return f"{fmt_number(loss.best)} @ {loss.best_step}"


def fmt_tags(run: RunSummary) -> str:
    text = f"{len(run.scalar_tags)} scalar"
    if run.histogram_tags:
        text += f", {len(run.histogram_tags)} hist"
    return text


def fmt_alert_counts(run: RunSummary) -> str:
    if not run.alert_count:
        return "0"
    parts = [f"{run.alert_counts[s]} {s}" for s in ("critical", "warning", "info") if run.alert_counts.get(s)]
    return ", ".join(parts)


def alert_cells(alert: Alert) -> list[str]:
    """The cells of one alert row, in ``ALERT_COLUMNS`` order (Markdown and HTML share them)."""
    return [alert.severity, alert.kind, alert.run, alert.tag, str(alert.step), alert.message]


def experiment_cells(exp: ExperimentSummary) -> list[str]:
    """The cells of one experiment row, in ``EXPERIMENT_COLUMNS`` order (Rich, Markdown and HTML share them)."""
    return [
        exp.experiment_dir,
        ", ".join(exp.runs),
        fmt_number(exp.train_loss.best) if exp.train_loss else "–",
        fmt_val_loss(exp.val_loss),
        exp.status,
        str(exp.alert_count),
    ]


def run_cells(report: LogdirReport, run: RunSummary) -> list[str]:
    """The cells of one run row, in ``RUN_COLUMNS`` order (Rich, Markdown and HTML share them)."""
    return [
        run.run,
        fmt_steps(run),
        fmt_train_loss(run.train_loss),
        fmt_trend(run),
        fmt_val_loss(run.val_loss),
        fmt_tags(run),
        fmt_span(run.wall_span),
        run.health.describe(),
        str(run.restarts),
        run.status,
        fmt_alert_counts(run),
    ]


def incident_steps(incident: Incident) -> str:
    return str(incident.start) if incident.start == incident.end else f"{incident.start}–{incident.end}"


def incident_alerts(incident: Incident) -> str:
    """``5: divergence x2, exploding_gradients x3``: how many alerts, of which kinds."""
    return f"{incident.alerts}: {incident.kinds_text()}"


def incident_cells(incident: Incident, alerts: Sequence[Alert]) -> list[str]:
    """One incident row, in ``INCIDENT_COLUMNS`` order; the message is its first alert at its worst severity."""
    worst = next(a for a in canonical_order(alerts) if a.severity == incident.severity)
    return [incident.severity, incident.label, incident.run, incident_steps(incident), incident_alerts(incident), worst.message]


def incidents_title(report: LogdirReport) -> str:
    """``Incidents (1, from 5 alerts)``: the report groups alerts, and says how many it grouped."""
    count = len(report.incidents())
    grouped = f", from {len(report.alerts)} alerts" if len(report.alerts) > count else ""
    return f"Incidents ({count}{grouped})"


def alert_where(alert: Alert) -> str:
    return f"{alert.run} · {alert.tag} · step {alert.step}"


def problem_line(problem: Any) -> str:
    skipped = f", {problem.skipped_bytes} bytes skipped" if getattr(problem, "skipped_bytes", 0) else ""
    return f"{problem.path} @ {problem.offset}: {problem.kind}: {problem.message}{skipped}"


def empty_note(report: LogdirReport) -> str | None:
    return f"no event files found under {report.logdir}" if not report.runs else None


COMPARISON_COLUMNS = (
    "logdir", "runs", "last step", "best train loss", "best val loss", "critical", "warning", "read problems", "status",
)  # fmt: skip


def comparison_rows(reports: Sequence[LogdirReport]) -> list[list[str]]:
    """One row per logdir: the best losses across its runs (and which run) and its alert totals."""
    rows = []
    for report in reports:
        counts: dict[str, int] = {}
        for alert in report.alerts:
            counts[alert.severity] = counts.get(alert.severity, 0) + 1
        rows.append(
            [
                report.logdir,
                str(len(report.runs)),
                str(max((r.last_step for r in report.runs if r.last_step is not None), default="–")),
                _best_text([(r.run, r.train_loss) for r in report.runs]),
                _best_text([(r.run, r.val_loss) for r in report.runs]),
                str(counts.get("critical", 0)),
                str(counts.get("warning", 0)),
                str(sum(sum(r.health.problems.values()) for r in report.runs)),
                report.status,
            ]
        )
    return rows


def _best_text(losses: list[tuple[str, LossSummary | None]]) -> str:
    """``<lowest finite best> @ <step> (<run>)`` across the runs, ``–`` when none has one."""
    candidates = [(run, loss) for run, loss in losses if loss is not None and loss.best is not None]
    if not candidates:
        return "–"
    run, loss = min(candidates, key=lambda pair: pair[1].best)
    return f"{fmt_number(loss.best)} @ {loss.best_step} ({run})"


# ---- Rich --------------------------------------------------------------------------------


def render_rich(reports: Sequence[LogdirReport], console: Console) -> None:
    """Tables for a terminal; the Console decides colour (TTY, NO_COLOR, FORCE_COLOR)."""
    columns = RUN_COLUMNS if console.width >= WIDE_TERMINAL else tuple(c for c in RUN_COLUMNS if c not in NARROW_DROPS)
    run_width = RUN_MIN_WIDTH if console.width >= 100 else RUN_MIN_WIDTH // 2
    for report in reports:
        console.print(_rich_logdir(report, columns, run_width))
        console.print()
    if len(reports) > 1:
        table = Table(title="Comparison", title_justify="left", title_style="bold")
        for column in COMPARISON_COLUMNS:
            table.add_column(column, overflow="fold")
        for row, report in zip(comparison_rows(reports), reports, strict=True):
            table.add_row(*map(rich_text, row[:-1]), Text(row[-1], style=SEVERITY_STYLE[report.status]))
        console.print(table)


def _rich_logdir(report: LogdirReport, columns: Sequence[str], run_width: int) -> Group:
    parts: list[Any] = []
    note = empty_note(report)
    if note:
        return Group(rich_text(f"{report.logdir}: {note}", style="yellow"))
    title = rich_text(f"{report.logdir} — {len(report.runs)} run(s)")
    table = Table(title=title, title_justify="left", title_style="bold")
    if run_width < RUN_MIN_WIDTH:  # narrow terminal: vertical borders cost 8 columns we do not have
        table.box, table.show_lines = box.SIMPLE_HEAD, True
    for column in columns:
        if column == "run":
            table.add_column(column, overflow="fold", min_width=min(run_width, max(len(r.run) for r in report.runs)))
        else:
            table.add_column(column, no_wrap=column in ("trend", "status", "event files"))
    for run in report.runs:
        cells = {column: rich_text(text) for column, text in zip(RUN_COLUMNS, run_cells(report, run), strict=True)}
        cells["status"] = Text(run.status, style=SEVERITY_STYLE[run.status])
        if run.train_loss and run.train_loss.non_finite:
            for column in ("train loss last/best", "trend"):
                cells[column].stylize("red")
        table.add_row(*(cells[c] for c in columns))
    parts.append(table)
    if report.experiments:
        parts.append(_rich_experiments(report))
    if report.alerts:
        parts.append(Text(incidents_title(report), style="bold"))
        for incident, alerts in report.incidents():
            parts.append(_rich_incident(incident, alerts))
    else:
        parts.append(Text("No alerts.", style="green"))
    if report.problems:
        parts.append(Text(f"Read problems ({len(report.problems)})", style="bold yellow"))
        parts.extend(rich_text(f"  {problem_line(p)}", style="yellow") for p in report.problems)
    return Group(*parts)


def _rich_incident(incident: Incident, alerts: Sequence[Alert]) -> Text:
    """An incident of one alert as that alert; of several, a heading and its alerts in the order they came."""
    line = Text("  ")
    line.append(f"{incident.severity.upper():8}", style=SEVERITY_STYLE.get(incident.severity, ""))
    if len(alerts) == 1:
        line.append(visible(f" {alerts[0].kind}"), style="bold")
        line.append(f"  {visible(alert_where(alerts[0]))}\n", style="cyan")
        line.append(f"           {visible(alerts[0].message)}")
        return line
    line.append(visible(f" {incident.family} incident"), style="bold")
    where = f"{incident.run} · steps {incident_steps(incident)} · {_alerts_and_kinds(incident)}"
    line.append(f"  {visible(where)}", style="cyan")
    for alert in canonical_order(alerts):
        line.append("\n           ")
        line.append(f"{alert.severity.upper():8}", style=SEVERITY_STYLE.get(alert.severity, ""))
        line.append(visible(f" {alert.kind} · {alert.tag} · step {alert.step}: {alert.message}"))
    return line


def _alerts_and_kinds(incident: Incident) -> str:
    """``5 alerts (divergence x2, exploding_gradients x3)``."""
    return f"{incident.alerts} alerts ({incident.kinds_text()})"


def _rich_experiments(report: LogdirReport) -> Table:
    table = Table(title="Experiments (train/validation pairs)", title_justify="left")
    for column in EXPERIMENT_COLUMNS:
        table.add_column(column, overflow="fold")
    status = EXPERIMENT_COLUMNS.index("status")
    for exp in report.experiments:
        cells = [rich_text(text) for text in experiment_cells(exp)]
        cells[status] = Text(exp.status, style=SEVERITY_STYLE[exp.status])
        table.add_row(*cells)
    return table


# ---- JSON --------------------------------------------------------------------------------


def render_json(reports: Sequence[LogdirReport], version: str) -> str:
    """One contract object per logdir, one per line (JSON Lines; a single logdir = one object)."""
    return "".join(json.dumps(json_ready(r.to_dict(version)), allow_nan=False) + "\n" for r in reports)


# ---- CSV ---------------------------------------------------------------------------------


def render_csv(reports: Sequence[LogdirReport], *, alerts: bool = False) -> str:
    """One row per run (or per alert with ``alerts=True``); a ``logdir`` column keeps logdirs apart."""
    buffer = io.StringIO()
    fields = CSV_ALERT_FIELDS if alerts else CSV_RUN_FIELDS
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for report in reports:
        if alerts:
            rows = [{**a.to_dict(), "incident": report.incident_of(a)} for a in report.alerts]
        else:
            rows = [r.to_dict() for r in report.runs]
        for row in rows:
            writer.writerow({key: _csv_cell(row.get(key)) for key in fields} | {"logdir": csv_text(report.logdir)})
    return buffer.getvalue()


def _csv_cell(value: Any) -> str:
    """Numbers as they are (``-0.5`` is a number, not a formula); any text through ``csv_text``."""
    if value is None:
        return ""
    if isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, list):
        return csv_text(";".join(str(v) for v in value))
    if isinstance(value, dict):
        return json.dumps(json_ready(value), allow_nan=False) if value else ""
    return csv_text(value)


# ---- Markdown ----------------------------------------------------------------------------


def render_markdown(reports: Sequence[LogdirReport]) -> str:
    """GitHub-flavoured Markdown a person pastes into a PR or an issue."""
    out: list[str] = []
    for report in reports:
        out.append(f"## tbmon report: `{markdown_code(report.logdir)}`\n")
        note = empty_note(report)
        if note:
            out.append(f"_{markdown_text(note)}_\n")
            continue
        out.append(_md_table(RUN_COLUMNS, [_md_status_row(report, run) for run in report.runs]))
        if report.experiments:
            out.append("**Experiments (train/validation pairs)**\n")
            out.append(_md_table(EXPERIMENT_COLUMNS, [experiment_cells(e) for e in report.experiments]))
        if report.alerts:
            out.append(f"**{incidents_title(report)}**\n")
            out.append(_md_table(INCIDENT_COLUMNS, [incident_cells(*pair) for pair in report.incidents()]))
        else:
            out.append("No alerts.\n")
        if report.problems:
            out.append(f"**Read problems ({len(report.problems)})**\n")
            out.extend(f"- {markdown_text(problem_line(p))}" for p in report.problems)
            out.append("")
    if len(reports) > 1:
        out.append("## Comparison\n")
        out.append(_md_table(COMPARISON_COLUMNS, comparison_rows(reports)))
    return "\n".join(out)


def _md_status_row(report: LogdirReport, run: RunSummary) -> list[str]:
    cells = run_cells(report, run)
    index = RUN_COLUMNS.index("status")
    cells[index] = {"critical": "🔴 critical", "warning": "🟡 warning"}.get(run.status, "🟢 ok")
    return cells


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(markdown_text(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(markdown_text(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
