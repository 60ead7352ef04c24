"""`tbmon report LOGDIR...`: read every run once, analyze it, print per-run summaries and alerts.

Heavy modules (pandas, matplotlib) are imported inside :func:`run`, so ``tbmon --help`` and
``tbmon watch`` do not pay for them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tbmon.monitor.exit_codes import BAD_INPUT, UsageError, exit_code_for
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
health, restarts, status and alerts; then the alerts in full and any read problems.
Several LOGDIRs are compared side by side.

Formats: rich (tables; colour only on a terminal, NO_COLOR respected), json (one contract
object per LOGDIR, one per line), csv (one row per run, or per alert with --csv-alerts),
markdown (tables to paste into a PR), html (one self-contained file with plots embedded).

Exit codes: 0 no alert at/above --fail-on, 1 alerts at/above it, 2 bad usage, unreadable
input, or a LOGDIR with no event files (a CI gate must not pass when training wrote nothing).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logdirs", nargs="+", metavar="LOGDIR", help="directory holding runs (searched recursively)")
    parser.add_argument("--format", "-f", choices=FORMATS, default="rich", help="output format (default: rich)")
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
        "the workers need tbmon and the logdir at the same path. Same output as a local run",
    )
    parser.add_argument(
        "--max-plots",
        type=positive_int,
        metavar="N",
        help="with --format html: draw at most N runs' curves (default 50): every run if there are no more "
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

    if args.csv_alerts and args.format != "csv":
        raise UsageError("--csv-alerts only applies to --format csv")
    if args.max_plots is not None and args.format != "html":
        raise UsageError("--max-plots only applies to --format html")
    if args.dask and args.jobs is not None:
        raise UsageError("--jobs and --dask exclude each other (the cluster's workers set the parallelism)")
    config = load_config(args.config)
    client = connect(args.dask) if args.dask else None
    try:
        with Fleet(args.logdirs, config, jobs=args.jobs, client=client, check_crc=not args.no_crc) as fleet:
            with _progress_bar() as progress_for:
                reports = fleet.reports(progress_for(" ".join(args.logdirs)))
            _emit(reports, args, fleet)
            if args.plots:
                _write_plots(reports, args.plots, fleet)
    finally:
        if client is not None:
            client.close()
    code = exit_code_for((a for r in reports for a in r.alerts), args.fail_on)
    empty = [r.logdir for r in reports if not r.runs]
    for logdir in empty:
        print(f"tbmon: no event files found under {logdir}", file=sys.stderr)
    return BAD_INPUT if empty else code


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
        from tbmon.monitor.html_report import MAX_FIGURES, figured_runs, render_html

        limit = args.max_plots or MAX_FIGURES
        wanted = [figured_runs(r.runs, limit) for r in reports]
        pngs = {(reports[i].logdir, run): png for i, run, png in fleet.draw(wanted)}
        text = render_html(reports, tbmon_version(), lambda report, run: pngs.get((report.logdir, run.run)), limit)
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


def _write_plots(reports: Sequence[LogdirReport], directory: str, fleet: Fleet) -> None:
    from tbmon.monitor.plots import write_plots

    try:
        written = write_plots(reports, directory, fleet.draw([{r.run for r in report.runs} for report in reports]))
    except OSError as exc:
        raise UsageError(f"cannot write plots to {directory}: {exc.strerror or exc}") from None
    print(f"tbmon: wrote {len(written)} plot(s) to {Path(directory)}", file=sys.stderr)


@contextmanager
def _progress_bar() -> Iterator[Callable[[str], Callable[[int, int], None] | None]]:
    """A Rich progress bar on stderr, only when stderr is a terminal (never in logs or pipes)."""
    if not sys.stderr.isatty():
        yield lambda logdir: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("reading {task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:

        def for_logdir(logdir: str) -> Callable[[int, int], None]:
            task = progress.add_task(logdir, total=None)

            def update(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            return update

        yield for_logdir

