"""`tbmon export LOGDIR OUT --format parquet`, read back with DuckDB and checked row for row
against ``tbmon.monitor.read`` and ``tbmon.analyzers.analyze``, including incremental re-runs
(new runs, new files, a file that grew under a live writer, a resume that supersedes rows)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tbmon.analyzers import analyze
from tbmon.monitor import read
from tbmon.monitor.cli import main
from tests.conftest import EventWriters
from tests.monitor.test_fleet import _loss

duckdb = pytest.importorskip("duckdb", reason="the export test reads the tables with DuckDB: pip install -e '.[dev]'")
pytest.importorskip("pyarrow", reason="tbmon export --format parquet needs pyarrow: pip install -e '.[dev]'")


def build_logdir(root: Path, tb: EventWriters) -> Path:
    """Runs with scalars and gradient histograms, a diverging run, and a Keras train/validation pair.
    Later files must come from the same ``tb``: a new one would reuse its file names."""
    rng = np.random.default_rng(0)
    for i in range(3):
        tb.scalars(root / f"run_{i}", {"train/loss": _loss(200, i, nan_at=150 if i == 2 else None), "lr": [0.1] * 200})
        tb.histograms(root / f"run_{i}", {"grad/w": [rng.normal(size=50) for _ in range(4)]}, steps=[0, 50, 100, 150])
    epochs = np.arange(30)
    tb.scalars(root / "exp" / "train", {"epoch_loss": (np.exp(-epochs / 8) + 0.05).tolist()})
    val = 1.1 * np.exp(-np.minimum(epochs, 10) / 8) + 0.2 + 0.05 * np.maximum(epochs - 10, 0)
    tb.scalars(root / "exp" / "validation", {"epoch_loss": val.tolist()})
    return root


def export(logdir: Path, out: Path, *extra: str) -> str:
    code = main(["export", str(logdir), str(out), "--format", "parquet", *extra])
    assert code == 0
    return str(out)


def table(out: Path, name: str, columns: str) -> list[tuple]:
    return duckdb.sql(f"SELECT {columns} FROM read_parquet('{out}/{name}/*/*.parquet', hive_partitioning=true) "
                      f"ORDER BY ALL").fetchall()  # fmt: skip


def assert_matches_read(logdir: Path, out: Path) -> None:
    """Every table holds what ``read``/``analyze`` return: same counts, same values."""
    result = read(logdir)
    expected = sorted(
        (str(r.run), str(r.tag), int(r.step), float(r.wall_time), float(r.value))
        for r in result.scalars.itertuples(index=False)
    )
    got = table(out, "scalars", "run, tag, step, wall_time, value")
    assert len(got) == len(expected)
    assert [g[:4] for g in got] == [e[:4] for e in expected]
    assert np.allclose([g[4] for g in got], [e[4] for e in expected], equal_nan=True, rtol=0, atol=0)
    hist = result.histograms
    expected_h = sorted(
        (str(r.run), str(r.tag), int(r.step), *map(float, (r.num, r.sum, r.sum_squares, r.min, r.max)))
        for r in hist.itertuples(index=False)
    )
    assert table(out, "histograms", "run, tag, step, num, sum, sum_squares, min, max") == expected_h
    alerts = sorted((a.run, a.kind, a.severity, a.step, a.tag, a.message) for a in analyze(result))
    assert table(out, "alerts", "run, kind, severity, step, tag, message") == alerts


def test_export_reads_back_with_duckdb_as_read_returns_it(tmp_path, capsys, tb) -> None:
    logdir = build_logdir(tmp_path / "logs", tb)
    out = tmp_path / "out"
    export(logdir, out)
    assert "exported 5 runs" in capsys.readouterr().err
    assert_matches_read(logdir, out)
    kinds = {row[0] for row in table(out, "alerts", "kind")}
    assert {"divergence", "overfitting"} <= kinds  # the overfitting alert is on the Keras experiment `exp`
    assert ("exp", "overfitting") in table(out, "alerts", "run, kind")
    counts = dict(duckdb.sql(f"SELECT run, count(*) FROM '{out}/scalars/*/*.parquet' GROUP BY run").fetchall())
    assert counts["run_0"] == 400 and counts["exp/train"] == 30  # partition names decode to run names
    assert (out / "scalars" / "run=exp%2Ftrain").is_dir()
    evidence = duckdb.sql(f"SELECT evidence FROM '{out}/alerts/*/*.parquet' LIMIT 1").fetchall()[0][0]
    assert isinstance(json.loads(evidence), dict)
    assert table(out, "histograms", "count(*)")[0][0] == 12


def test_rerun_exports_only_new_data(tmp_path, capsys, tb) -> None:
    logdir = build_logdir(tmp_path / "logs", tb)
    out = tmp_path / "out"
    export(logdir, out)
    capsys.readouterr()
    untouched = out / "scalars" / "run=run_0" / "part-000000.parquet"
    stamp = untouched.stat().st_mtime_ns
    tb.scalars(logdir / "run_1", {"train/loss": _loss(100, 11)}, steps=range(200, 300))  # a new file, later steps
    tb.scalars(logdir / "run_new", {"train/loss": _loss(50, 12)})
    export(logdir, out)
    err = capsys.readouterr().err
    assert "(1 appended, 1 new, 4 unchanged): 150 scalar rows" in err
    assert untouched.stat().st_mtime_ns == stamp  # unchanged runs are not rewritten
    newest = out / "scalars" / "run=run_1" / "part-000001.parquet"
    appended = duckdb.sql(f"SELECT count(*), min(step) FROM '{newest}'").fetchall()[0]
    assert appended == (100, 200)  # only the new points were read and written
    assert_matches_read(logdir, out)
    export(logdir, out)
    assert "(6 unchanged): 0 scalar rows" in capsys.readouterr().err


def test_a_file_growing_under_a_live_writer_is_appended(tmp_path, capsys, tb) -> None:
    from tensorboardX import SummaryWriter

    logdir, out = tmp_path / "logs", tmp_path / "out"
    writer = SummaryWriter(str(logdir / "live"))
    values = _loss(400, 3)
    try:
        for step in range(200):
            writer.add_scalar("train/loss", values[step], step)
        _flushed(writer, logdir, 200)
        export(logdir, out)
        for step in range(200, 400):
            writer.add_scalar("train/loss", values[step], step)
        _flushed(writer, logdir, 400)
        export(logdir, out)
        assert "(1 appended): 200 scalar rows" in capsys.readouterr().err
        assert len(list((out / "scalars" / "run=live").glob("*.parquet"))) == 2
        assert_matches_read(logdir, out)
    finally:
        writer.close()


def _flushed(writer, logdir: Path, points: int) -> None:
    """tensorboardX's ``flush()`` does not wait for its background queue (see test_reader's
    ``poll_until``): flush until the file holds ``points`` points."""
    deadline = time.monotonic() + 10
    while len(read(logdir).scalars) < points:
        assert time.monotonic() < deadline, "the writer never flushed"
        writer.flush()
        time.sleep(0.05)


def test_a_resume_that_supersedes_exported_rows_rewrites_the_run(tmp_path, capsys, tb) -> None:
    logdir, out = build_logdir(tmp_path / "logs", tb), tmp_path / "out"
    export(logdir, out)
    capsys.readouterr()
    tb.scalars(logdir / "run_0", {"train/loss": _loss(60, 9)}, steps=range(120, 180), purge_step=120)
    export(logdir, out)
    assert "1 rewritten" in capsys.readouterr().err
    assert [p.name for p in (out / "scalars" / "run=run_0").iterdir()] == ["part-000000.parquet"]
    assert_matches_read(logdir, out)  # the superseded steps 120-199 of the first file are gone


def test_jobs_write_the_same_tables(tmp_path, tb) -> None:
    logdir = build_logdir(tmp_path / "logs", tb)
    export(logdir, tmp_path / "one", "--jobs", "1")
    export(logdir, tmp_path / "two", "--jobs", "2")
    for name, columns in (("scalars", "run, tag, step, CAST(value AS VARCHAR)"), ("histograms", "run, tag, step, sum"),
                          ("alerts", "run, kind, step, message")):  # fmt: skip
        assert table(tmp_path / "one", name, columns) == table(tmp_path / "two", name, columns)


def test_refuses_to_write_into_a_foreign_folder(tmp_path, capsys, tb) -> None:
    logdir = build_logdir(tmp_path / "logs", tb)
    other = tmp_path / "other"
    tb.scalars(other / "r", {"loss": [1.0]})
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert main(["export", str(logdir), str(busy)]) == 2
    assert "is not a tbmon export" in capsys.readouterr().err
    export(logdir, tmp_path / "out")
    assert main(["export", str(other), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "holds an export of" in err and "Traceback" not in err
    assert (busy / "notes.txt").read_text() == "mine"


def test_empty_logdir_exits_2_and_writes_nothing(tmp_path, capsys, tb) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "empty"), str(tmp_path / "out")]) == 2
    assert "no event files" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_file_rewritten_in_place_rewrites_the_run(tmp_path, capsys, tb) -> None:
    """A file replaced under the same name (a copy job, a writer reusing the name): its old rows
    are gone from the logdir, so they must go from the export too."""
    logdir, out = build_logdir(tmp_path / "logs", tb), tmp_path / "out"
    export(logdir, out)
    capsys.readouterr()
    replacement = tb.scalars(tmp_path / "elsewhere", {"train/loss": _loss(40, 5)})
    target = min((logdir / "run_1").iterdir(), key=lambda p: p.name)  # its scalars file (written first)
    target.write_bytes(replacement.read_bytes())
    export(logdir, out)
    assert "1 rewritten" in capsys.readouterr().err
    assert_matches_read(logdir, out)
    assert table(out, "scalars", "count(*) FILTER (WHERE run = 'run_1')")[0][0] == 40


def test_without_pyarrow_says_which_extra_to_install(tmp_path, capsys, tb, monkeypatch) -> None:
    logdir = build_logdir(tmp_path / "logs", tb)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # what `import pyarrow` does when it is not installed
    assert main(["export", str(logdir), str(tmp_path / "out")]) == 2
    assert "pip install 'tbmon[parquet]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_run_name_too_long_for_a_folder_name_is_shortened_not_lost(tmp_path, tb) -> None:
    from urllib.parse import unquote

    from tbmon.monitor.export import partition_value

    deep = "/".join(f"level_{i}_" + "x" * 50 for i in range(5))  # 304 bytes; URL-encoded it passes 255
    tb.scalars(tmp_path / "logs" / deep, {"train/loss": _loss(30, 1)})
    export(tmp_path / "logs", tmp_path / "out")
    value = partition_value(deep)
    assert len(f"run={value}") <= 240 and value != partition_value(deep + "_other")
    assert table(tmp_path / "out", "scalars", "run") == [(unquote(value),)] * 30  # DuckDB decodes the shortened name
    assert unquote(value).startswith(deep[:150])
