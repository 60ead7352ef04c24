"""`tbmon export LOGDIR OUT`: a logdir as Parquet tables for DuckDB, Polars, Spark or pandas.

Three long-form tables, Hive-partitioned by run (``OUT/<table>/run=<run>/part-NNNNNN.parquet``,
the run name URL-encoded as pyarrow, DuckDB and Spark decode it):

* ``scalars``: tag, step, wall_time, value (the rows of ``tbmon.monitor.read(LOGDIR).scalars``);
* ``histograms``: tag, step, wall_time, min, max, num, sum, sum_squares (the buckets stay in
  the event files: summaries are what fleet-wide queries need);
* ``alerts``: kind, severity, step, wall_time, tag, message, evidence (JSON text), partitioned
  by the alert's run (a Keras experiment's alerts under its directory).

Incremental: each part of the logdir (a run, or a Keras pair with its parent; see
:mod:`tbmon.monitor.fleet`) keeps the reader's offsets and the analyzers' state in
``OUT/_tbmon_export/``, so a re-run reads only the bytes written since and appends them as a new
part file; its alerts are the ones the new points raise, as ``tbmon watch`` would. When new data
supersedes rows already exported (a resume from a checkpoint, a rewritten file, a step written
again), that part's partitions are rewritten from its files instead, so the tables always hold
what ``read`` returns. A part's files are written before its state, under names fixed by the
state, so an interrupted export repeats that part's step instead of duplicating rows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tbmon.monitor.exit_codes import UsageError
from tbmon.monitor.sanitize import json_ready, visible

if TYPE_CHECKING:
    import pandas as pd

    from tbmon.analyzers.alerts import Alert
    from tbmon.analyzers.config import AnalyzerConfig
    from tbmon.monitor.fleet import Part
    from tbmon.monitor.reader import PollResult, RunInfo

FORMATS = ("parquet",)
TABLES = ("scalars", "histograms", "alerts")
STATE_DIR = "_tbmon_export"  # a leading underscore: pyarrow, DuckDB globs and Spark skip it
STATE_VERSION = 1
SCALAR_COLUMNS = ("tag", "step", "wall_time", "value")
HISTOGRAM_COLUMNS = ("tag", "step", "wall_time", "min", "max", "num", "sum", "sum_squares")
ALERT_COLUMNS = ("kind", "severity", "step", "wall_time", "tag", "message", "evidence")

HELP = "write a logdir's scalars, histogram summaries and alerts as Parquet tables (incremental)"
DESCRIPTION = """\
Export every run under LOGDIR into OUT as three Parquet tables partitioned by run, for DuckDB,
Polars, Spark or pandas:

  OUT/scalars/run=<run>/part-*.parquet      tag, step, wall_time, value
  OUT/histograms/run=<run>/part-*.parquet   tag, step, wall_time, min, max, num, sum, sum_squares
  OUT/alerts/run=<run>/part-*.parquet       kind, severity, step, wall_time, tag, message, evidence

Run it again (by hand, from cron, after each training) and only what was written since is
read and appended; runs whose old rows were superseded (resumed from a checkpoint) are
rewritten. Query example:

  duckdb -c "SELECT run, min(value) FROM 'OUT/scalars/*/*.parquet' WHERE tag = 'train/loss' GROUP BY run"

Exit codes: 0 exported, 2 bad usage or unreadable input (a LOGDIR with no event files included).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from tbmon.monitor.report import positive_int

    parser.add_argument(
        "logdir", metavar="LOGDIR",
        help="directory holding runs (searched recursively), or a URL: s3://bucket/prefix, gs://…, az://…",
    )  # fmt: skip
    parser.add_argument("out", metavar="OUT", help="folder of the export (created; re-use it to export incrementally)")
    parser.add_argument("--format", "-f", choices=FORMATS, default="parquet", help="table format (default: parquet)")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config of the rules behind the alerts table. A [tool.tbmon] table in ./pyproject.toml is read too.",
    )
    parser.add_argument(
        "--jobs", "-j", type=positive_int, metavar="N",
        help="export runs in N worker processes (default: every core, or this process alone for under 32 MB)",
    )  # fmt: skip
    parser.add_argument(
        "--no-crc", action="store_true", help="skip CRC checks (faster; corrupt records may decode as garbage)"
    )


@dataclass(frozen=True)
class PartExport:
    """What exporting one part did. ``action``: new, appended, rewritten or unchanged."""

    runs: tuple[str, ...]
    action: str
    scalars: int
    histograms: int
    alerts: int
    problems: int


def run(args: argparse.Namespace) -> int:
    from tbmon.monitor.config import load_config

    done = export_logdir(args.logdir, args.out, load_config(args.config), jobs=args.jobs, check_crc=not args.no_crc)
    if not done:
        print(f"tbmon: no event files found under {visible(args.logdir)}", file=sys.stderr)
        from tbmon.monitor.exit_codes import BAD_INPUT

        return BAD_INPUT
    print(summary_line(done, args.out), file=sys.stderr)
    return 0


def summary_line(done: Sequence[PartExport], out: str) -> str:
    """E.g. ``exported 12 runs to out/ (3 new, 2 appended, 7 unchanged): 41,000 scalar rows, ...``."""
    actions: dict[str, int] = {}
    for part in done:
        actions[part.action] = actions.get(part.action, 0) + len(part.runs)
    what = ", ".join(f"{n} {action}" for action, n in sorted(actions.items()))
    rows = (f"{sum(p.scalars for p in done):,} scalar rows, {sum(p.histograms for p in done):,} histogram rows, "
            f"{sum(p.alerts for p in done):,} alerts")  # fmt: skip
    problems = sum(p.problems for p in done)
    tail = f"; {problems} read problems (tbmon report LOGDIR lists them)" if problems else ""
    return f"tbmon: exported {sum(len(p.runs) for p in done)} runs to {visible(out)} ({what}): {rows} added{tail}"


def export_logdir(
    logdir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: AnalyzerConfig | None = None,
    *,
    jobs: int | None = None,
    check_crc: bool = True,
) -> list[PartExport]:
    """Export (or bring up to date) ``out`` from ``logdir``; one :class:`PartExport` per part."""
    from tbmon.analyzers.config import AnalyzerConfig
    from tbmon.monitor.fleet import backend_for, plan
    from tbmon.monitor.storage import normalize_logdir

    _require_pyarrow()
    config = config or AnalyzerConfig()
    parts = plan(logdir).parts
    if not parts:
        return []
    root = Path(out)
    _claim(root, normalize_logdir(logdir))
    _forget_regrouped(root, parts)
    done: list[PartExport | None] = [None] * len(parts)
    with backend_for(parts, jobs) as backend:
        for i, result in backend.run(export_part, [(p, str(root), config, check_crc) for p in parts]):
            done[i] = result
    return [d for d in done if d is not None]


def export_part(part: Part, out: str, config: AnalyzerConfig, check_crc: bool = True) -> PartExport:
    """Bring one part's rows in ``out`` up to date (runs in a worker)."""
    from tbmon.analyzers.engine import Engine
    from tbmon.monitor.frames import frames
    from tbmon.monitor.reader import LogdirReader, purge_markers

    state_path = _state_path(Path(out), part)
    saved = _load(state_path, part)
    reader, engine = LogdirReader(part.path, check_crc=check_crc), Engine(config)
    if saved is not None:
        try:
            reader.load_state_dict(saved["reader"])
            engine.load_state_dict(saved["engine"])
        except (ValueError, KeyError, TypeError):  # an older tbmon's state: start this part over
            saved = None
            reader, engine = LogdirReader(part.path, check_crc=check_crc), Engine(config)
    polled = reader.poll(files=part.files)
    action = "new" if saved is None else "appended"
    if saved is not None and _supersedes(polled, saved, reader.runs):
        action = "rewritten"
        reader, engine = LogdirReader(part.path, check_crc=check_crc), Engine(config)
        polled = reader.poll(files=part.files)
    if action == "appended" and not polled.batches:
        return PartExport(part.runs, "unchanged", 0, 0, 0, len(polled.problems))
    owners = _owners(part)
    if action != "appended":
        for table in TABLES:
            for owner in owners:
                shutil.rmtree(_partition(Path(out), table, owner), ignore_errors=True)
    number = 0 if action != "appended" else int(saved["next_file"])
    runs = reader.runs
    scalars, histograms = frames(polled.batches, {name: purge_markers(info.restarts) for name, info in runs.items()})
    alerts = [alert for batch in polled.batches for alert in engine.feed(batch)]
    first = () if action == "appended" else part.runs
    _write_points(Path(out), "scalars", scalars, first, number)
    _write_points(Path(out), "histograms", histograms, first, number)
    _write_alerts(Path(out), alerts, first, number)
    _save(state_path, {
        "version": STATE_VERSION,
        "runs": list(part.runs),
        "reader": reader.state_dict(),
        "engine": engine.state_dict(),
        "restarts": {name: len(info.restarts) for name, info in runs.items()},
        "next_file": number + 1,
    })  # fmt: skip
    return PartExport(part.runs, action, len(scalars), len(histograms), len(alerts), len(polled.problems))


def _supersedes(polled: PollResult, saved: dict, runs: dict[str, RunInfo]) -> bool:
    """Would the new points replace exported rows? A file rewritten in place (its old rows are
    gone from the logdir), a new restart, or a tag that continues at or below the last step it
    exported (``frames`` keeps the later of two points at one step)."""
    if any(problem.kind == "rewritten" for problem in polled.problems):
        return True
    for name, info in runs.items():
        if len(info.restarts) != saved["restarts"].get(name, 0) or info.restarts_truncated:
            return True
    for batch in polled.batches:
        tags = saved["reader"]["runs"].get(batch.run, {}).get("tags", [])
        last = {(kind, tag): step for kind, tag, step, _ in tags}
        for kind, series in [("scalar", s) for s in batch.scalars] + [("histogram", h) for h in batch.histograms]:
            previous = last.get((kind, series.tag))
            if previous is not None and len(series) and int(series.step[0]) <= previous:
                return True
    return False


def _owners(part: Part) -> set[str]:
    """Every run name the part's rows may be partitioned under (its runs and a Keras pair's parent)."""
    from tbmon.monitor.discovery import keras_pairing

    return set(part.runs) | {exp for run in part.runs if (exp := keras_pairing(run)[0]) is not None}


def _schemas() -> dict[str, Any]:
    import pyarrow as pa

    def fields(names: Sequence[str], kinds: dict[str, Any]) -> Any:
        return pa.schema([(name, kinds.get(name, pa.float64())) for name in names])

    return {
        "scalars": fields(SCALAR_COLUMNS, {"tag": pa.string(), "step": pa.int64()}),
        "histograms": fields(HISTOGRAM_COLUMNS, {"tag": pa.string(), "step": pa.int64()}),
        "alerts": fields(ALERT_COLUMNS, {"step": pa.int64(), "wall_time": pa.float64()} | dict.fromkeys(
            ("kind", "severity", "tag", "message", "evidence"), pa.string())),
    }  # fmt: skip


def _write_points(out: Path, table: str, frame: pd.DataFrame, runs: Sequence[str], number: int) -> None:
    """One file per run; a run without rows gets an empty one on its first write (``runs``), so
    every table exists with its columns and a query never fails on a missing table."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    schema = _schemas()[table]
    groups = frame.groupby("run", observed=True, sort=True) if len(frame) else []
    written = set()
    for run, rows in groups:
        tags = rows["tag"].to_numpy(dtype=object)
        if any(json_ready(tag) != tag for tag in pd.unique(tags)):  # bytes that are not UTF-8: shown as \xNN
            tags = np.array([json_ready(tag) for tag in tags], dtype=object)
        data = {"tag": pa.array(tags, pa.string())}
        data |= {name: pa.array(rows[name].to_numpy(), schema.field(name).type) for name in schema.names[1:]}
        _write(out, table, str(run), pa.table(data, schema=schema), number)
        written.add(str(run))
    for run in sorted(set(runs) - written):
        _write(out, table, run, schema.empty_table(), number)


def _write_alerts(out: Path, alerts: Sequence[Alert], runs: Sequence[str], number: int) -> None:
    import pyarrow as pa

    schema = _schemas()["alerts"]
    by_run: dict[str, list[dict[str, Any]]] = {run: [] for run in runs}
    for alert in alerts:
        row = alert.to_dict()
        row.update(step=int(alert.step), wall_time=float(alert.wall_time), evidence=json.dumps(row["evidence"]))
        by_run.setdefault(alert.run, []).append(json_ready(row))
    for run, rows in sorted(by_run.items()):
        _write(out, "alerts", run, pa.Table.from_pylist(rows, schema=schema), number)


def _write(out: Path, table: str, run: str, data: Any, number: int) -> None:
    """One part file, written under a temporary name and renamed: readers never see half a file."""
    import pyarrow.parquet as pq

    directory = _partition(out, table, run)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"part-{number:06d}.parquet"
    temporary = directory / f".{target.name}.tmp"
    pq.write_table(data, temporary, compression="zstd")
    os.replace(temporary, target)


MAX_PARTITION_NAME = 240
"""A folder name may hold 255 bytes; URL-encoding a deep run's name (``/`` → ``%2F``) can pass
that. Such names are cut and end in a hash of the whole name, so they stay distinct."""


def partition_value(run: str) -> str:
    """The run's value in its ``run=`` folder name: URL-encoded (bytes that are not UTF-8 as ``\\xNN``,
    as the JSON report shows them), shortened when too long."""
    value = quote(json_ready(run), safe="")
    if len(value) + len("run=") <= MAX_PARTITION_NAME:
        return value
    digest = hashlib.sha1(run.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    keep = value[: MAX_PARTITION_NAME - len("run=") - len(digest) - 1]
    return f"{keep.rsplit('%', 1)[0] if '%' in keep[-2:] else keep}~{digest}"


def _partition(out: Path, table: str, run: str) -> Path:
    return out / table / f"run={partition_value(run)}"


# -- state ----------------------------------------------------------------------------------


def _claim(out: Path, logdir: str) -> None:
    """Make ``out`` an export of ``logdir``; refuse a folder that holds anything else."""
    marker = out / STATE_DIR / "export.json"
    try:
        if marker.is_file():
            owner = json.loads(marker.read_text(encoding="utf-8")).get("logdir")
            if owner != logdir:
                raise UsageError(f"{out} holds an export of {owner}, not of {logdir}; choose another OUT folder")
            return
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise UsageError(f"{out} exists and is not a tbmon export; choose a new or empty OUT folder")
        (out / STATE_DIR / "parts").mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"logdir": logdir, "version": STATE_VERSION}) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write the export to {out}: {exc.strerror or exc}") from None


def _forget_regrouped(out: Path, parts: Sequence[Part]) -> None:
    """Drop the state of parts that no longer exist as such (a ``validation`` sibling appeared
    beside ``train``): their runs now belong to a new part, which starts over."""
    current = {_state_path(out, p).name for p in parts}
    runs = {run for p in parts for run in p.runs}
    for path in (out / STATE_DIR / "parts").glob("*.json"):
        if path.name in current:
            continue
        try:
            stale = set(json.loads(path.read_text(encoding="utf-8")).get("runs", ()))
        except (OSError, ValueError):
            stale = runs
        if stale & runs:
            path.unlink(missing_ok=True)


def _state_path(out: Path, part: Part) -> Path:
    digest = hashlib.sha1("\0".join(part.runs).encode("utf-8", "surrogateescape")).hexdigest()[:20]
    return out / STATE_DIR / "parts" / f"{digest}.json"


def _load(path: Path, part: Part) -> dict | None:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if state.get("version") != STATE_VERSION or tuple(state.get("runs", ())) != part.runs:
        return None
    return state


def _save(path: Path, state: dict) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(state), encoding="utf-8")
    os.replace(temporary, path)


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise UsageError("tbmon export --format parquet needs pyarrow: pip install 'tbmon[parquet]'") from None
