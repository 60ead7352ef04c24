"""`tbmon report LOGDIR...`: read every run once, analyze it, print per-run summaries and alerts.

Heavy modules (pandas, matplotlib) are imported inside :func:`run`, so ``tbmon --help`` and
``tbmon watch`` do not pay for them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tbmon.monitor.exit_codes import BAD_INPUT, UsageError, exit_code_for
from tbmon.monitor.sanitize import visible
from tbmon.monitor.logdir_args import add_logdir_arguments, logdir_specs, nothing_to_judge
from tbmon.monitor.output_format import choose_format
from tbmon.monitor.tag_hints import MissingSignalHints
from tbmon.monitor.version import tbmon_version

if TYPE_CHECKING:
    from tbmon.monitor.fleet import Fleet
    from tbmon.monitor.summary import LogdirReport

FORMATS = ("rich", "json", "csv", "markdown", "html")
PLAIN_WIDTH = 300
"""Console width when not on a terminal (pipe, --output). Tables take only their natural
width, so this is a cap, not padding: at 80 the ten columns fold run names like
``.../lightning_logs/version_0`` into five lines each."""

HELP = "read logdirs once and print per-run summaries and alerts"
DESCRIPTION = """\
Read every run under each LOGDIR once, run the detection rules, and print per run:
steps, last/best training loss, best validation loss, tags, wall-clock span, event-file
health, restarts, status and alerts; then the alerts in full, grouped into incidents (a run's
alerts of causally linked kinds over overlapping steps: one blow-up, not five rows; JSON and
--csv-alerts list every alert with its incident id), and any read problems.
Several LOGDIRs are compared side by side.

Formats: rich (tables; colour only on a terminal, NO_COLOR respected), json (one contract
object per LOGDIR, one per line), csv (one row per run, or per alert with --csv-alerts),
markdown (tables to paste into a PR), html (one self-contained file with interactive charts:
zoom, hover values, legend toggles, all runs' losses overlaid; works offline).
Without --format, the extension of --output picks it (.html, .json, .csv, .md).

A LOGDIR may be named, as TensorBoard's --logdir_spec: `tbmon report base:runs/a tuned:runs/b`.
A run with a training loss but no validation loss or gradient signal gets one hint on stderr
with its tags and the config line that maps them.

Exit codes: 0 no alert at/above --fail-on, 1 alerts at/above it, 2 bad usage, unreadable
input, or a LOGDIR with no event files or none readable (a CI gate must not pass when nothing
could be read), 130 interrupted.
"""


FORMAT_BY_EXTENSION = {
    ".html": "html", ".htm": "html", ".json": "json", ".csv": "csv", ".md": "markdown", ".markdown": "markdown",
}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_logdir_arguments(parser, "directory holding runs (searched recursively), or a URL: s3://bucket/prefix, gs://…, az://…")
    parser.add_argument(
        "--format", "-f", choices=FORMATS,
        help="output format (default: from --output's extension .html/.json/.csv/.md, else rich)",
    )  # fmt: skip
    parser.add_argument("--plots", metavar="DIR", help="also write one PNG of loss and gradient curves per run to DIR")
    parser.add_argument("--csv-alerts", action="store_true", help="with --format csv: one row per alert instead of per run")
    parser.add_argument(
        "--no-crc", action="store_true", help="skip CRC checks (faster; corrupt records may then decode as garbage)"
    )
    parser.add_argument(
        "--jobs",
        "-j",
        type=positive_int,
        metavar="N",
        help="read and analyze runs in N worker processes (default: every core, or this process alone when "
        "there is under 32 MB of event data; 1 = no workers). Same output for every N",
    )
    parser.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="spread the runs over the Dask cluster whose scheduler is at ADDRESS (e.g. tcp://scheduler:8786); "
        "the workers need tbmon and the logdir at the same path (or a URL they can reach). Same output as a local run",
    )
    parser.add_argument(
        "--max-plots",
        type=positive_int,
        metavar="N",
        help="with --format html: chart at most N runs (default 50): every run if there are no more "
        "than N, else only runs with alerts, worst first",
    )


def positive_int(text: str) -> int:
    """argparse type of ``--jobs`` and ``--max-plots``."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from tbmon.monitor.config import load_config
    from tbmon.monitor.fleet import Fleet, connect

    specs = logdir_specs(args)
    args.format = choose_format(args.format, args.output, FORMAT_BY_EXTENSION, "rich")
    if args.csv_alerts and args.format != "csv":
        raise UsageError("--csv-alerts only applies to --format csv")
    if args.max_plots is not None and args.format != "html":
        raise UsageError("--max-plots only applies to --format html")
    if args.dask and args.jobs is not None:
        raise UsageError("--jobs and --dask exclude each other (the cluster's workers set the parallelism)")
    config = load_config(args.config)
    client = connect(args.dask) if args.dask else None
    reports, notes = [], []
    paths, labels = [spec.path for spec in specs], [spec.label for spec in specs]
    try:
        with Fleet(paths, config, jobs=args.jobs, client=client, check_crc=not args.no_crc, labels=labels) as fleet:
            with _progress_bar() as progress_for:
                for position, spec in enumerate(specs):
                    phase = progress_for(spec.label)
                    report = fleet.report(position, phase.reading, phase.analyzing)
                    reports.append(report)
                    hints = MissingSignalHints(config.patterns).new_hints(report.infos, final=True)
                    notes += [f"{spec.label}: {hint}" for hint in hints]
            for note in notes:
                print(f"tbmon: {visible(note)}", file=sys.stderr)
            _emit(reports, args, fleet)
            plots_written = _write_plots(reports, args.plots, fleet) if args.plots else True
    finally:
        if client is not None:
            client.close()
    table_said_empty = args.format == "rich" and args.output is None and sys.stdout.isatty()
    failed = not plots_written
    for report in reports:
        reason = nothing_to_judge(report.logdir, report.infos)
        failed = failed or reason is not None
        if reason is not None and not (table_said_empty and not report.runs):  # on a terminal, once is enough
            print(f"tbmon: {visible(reason)}", file=sys.stderr)
    return BAD_INPUT if failed else exit_code_for((a for r in reports for a in r.alerts), args.fail_on)


def _emit(reports: Sequence[LogdirReport], args: argparse.Namespace, fleet: Fleet) -> None:
    from tbmon.monitor import report_formats as formats

    if args.format == "rich":
        if args.output:
            with _open_output(args.output) as handle:
                formats.render_rich(reports, _console(handle, plain=True))
        else:
            plain = not sys.stdout.isatty() and not os.environ.get("FORCE_COLOR")
            formats.render_rich(reports, _console(sys.stdout, plain=plain))
        return
    if args.format == "json":
        text = formats.render_json(reports, tbmon_version())
    elif args.format == "csv":
        text = formats.render_csv(reports, alerts=args.csv_alerts)
    elif args.format == "markdown":
        text = formats.render_markdown(reports)
    else:
        from tbmon.monitor.html_charts import run_charts
        from tbmon.monitor.html_report import MAX_FIGURES, figured_runs, render_html

        limit = args.max_plots or MAX_FIGURES
        wanted = [figured_runs(r.runs, limit) for r in reports]
        charts = {(i, run): data for i, run, data in fleet.draw(wanted, run_charts)}
        position = {id(report): i for i, report in enumerate(reports)}
        text = render_html(
            reports, tbmon_version(), lambda report, run: charts.get((position[id(report)], run.run)), limit
        )
    if args.output:
        with _open_output(args.output) as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)


def _console(handle: object, *, plain: bool):  # noqa: ANN202 - rich imported lazily
    from rich.console import Console

    if plain and "COLUMNS" not in os.environ:
        return Console(file=handle, width=PLAIN_WIDTH, force_terminal=False, no_color=True)
    return Console(file=handle, force_terminal=False if plain else None, no_color=True if plain else None)


@contextmanager
def _open_output(path: str) -> Iterator[object]:
    try:
        handle = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    with handle:
        yield handle


def _write_plots(reports: Sequence[LogdirReport], directory: str, fleet: Fleet) -> bool:
    """Write every plot that can be (drawn by the fleet's workers); False (exit 2) when some
    could not, each said on stderr."""
    from tbmon.monitor.plots import run_png, write_plots

    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write plots to {visible(directory)}: {exc.strerror or exc}") from None
    every_run = [{r.run for r in report.runs} for report in reports]
    written, failed = write_plots(reports, directory, fleet.draw(every_run, run_png))
    for line in failed:
        print(f"tbmon: cannot write plot {line}", file=sys.stderr)
    print(f"tbmon: wrote {len(written)} plot(s) to {visible(Path(directory))}", file=sys.stderr)
    return not failed


class _Phase:
    """The bar's task for one logdir: bytes while reading, then a pulsing "analyzing" phase, so
    a bar at 100 % does not look stuck while the rules run."""

    def __init__(self, progress: Any = None, label: str = "") -> None:
        self._progress = progress
        self._task = None if progress is None else progress.add_task(label, total=None, phase="reading")
        self.reading = None if progress is None else self._update

    def _update(self, done: int, total: int) -> None:
        self._progress.update(self._task, completed=done, total=total)

    def analyzing(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, phase="analyzing", total=None)


@contextmanager
def _progress_bar() -> Iterator[Callable[[str], _Phase]]:
    """A Rich progress bar on stderr, only when stderr is a terminal (never in logs or pipes)."""
    if not sys.stderr.isatty():
        yield lambda label: _Phase()
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.fields[phase]} {task.description}", markup=False),  # a logdir "[/x]" is not markup
        BarColumn(), DownloadColumn(), TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield lambda label: _Phase(progress, visible(label))
