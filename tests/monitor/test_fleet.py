"""`tbmon report --jobs N` / `--dask ADDRESS` and ``fleet.report_logdirs``: a logdir cut into parts,
read and analyzed in real worker processes or on a real Dask ``LocalCluster`` (2 worker processes),
must give exactly the report of one read in one process."""

from __future__ import annotations

import json
import os
import socket
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from tbmon.analyzers import analyze
from tbmon.analyzers.config import AnalyzerConfig
from tbmon.monitor import fleet, read
from tbmon.monitor.cli import main
from tbmon.monitor.report_formats import render_json
from tbmon.monitor.summary import build_report
from tbmon.monitor.version import tbmon_version
from tests.conftest import EventWriters
from tests.monitor.test_report import corrupt_one_record

VERSION = tbmon_version()


def _loss(n: int, seed: int, *, nan_at: int | None = None) -> list[float]:
    rng = np.random.default_rng(seed)
    values = 2.0 * np.exp(-np.arange(n) / 60) + 0.05 + 0.02 * rng.random(n)
    if nan_at is not None:
        values[nan_at:] = np.nan
    return values.tolist()


@pytest.fixture(scope="module")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Plain runs (two diverge), a restarted run, a corrupt copy, gradient histograms, and a Keras
    train/validation pair under a directory that is a run itself (its alerts span all three)."""
    root = tmp_path_factory.mktemp("fleet")
    tb = EventWriters()
    for i in range(6):
        tb.scalars(root / f"run_{i}", {"train/loss": _loss(300, i, nan_at=200 if i in (1, 4) else None),
                                       "lr": [0.1] * 300})
    tb.histograms(root / "run_0", {"grad/layer0.weight": [np.random.default_rng(s).normal(size=64) for s in range(5)]},
                  steps=[0, 50, 100, 150, 200])
    tb.scalars(root / "restarted", {"train/loss": _loss(120, 7)})
    tb.scalars(root / "restarted", {"train/loss": _loss(80, 8)}, steps=range(60, 140), purge_step=60)
    path = tb.scalars(root / "corrupt", {"train/loss": _loss(100, 9)})
    corrupt_one_record(path, index=10)
    tb.scalars(root / "exp", {"note": [1.0, 2.0]})
    epochs = np.arange(30)
    tb.scalars(root / "exp" / "train", {"epoch_loss": (np.exp(-epochs / 8) + 0.05).tolist()})
    val = 1.1 * np.exp(-np.minimum(epochs, 10) / 8) + 0.2 + 0.05 * np.maximum(epochs - 10, 0)  # bottoms out at 10
    tb.scalars(root / "exp" / "validation", {"epoch_loss": val.tolist()})
    return root


def _one_read_json(logdir: Path, config: AnalyzerConfig | None = None) -> dict:
    """The report as it is built from one whole read in this process (no parts)."""
    config = config or AnalyzerConfig()
    result = read(logdir)
    return json.loads(render_json([build_report(result, analyze(result, config), config)], VERSION))


def _fleet_json(reports: list) -> dict:
    return json.loads(render_json(reports, VERSION))


def test_parts_keep_keras_pairs_with_their_parent_run(logdir) -> None:
    plan = fleet.plan(logdir)
    assert [p.runs for p in plan.parts] == [
        ("corrupt",), ("exp", "exp/train", "exp/validation"), ("restarted",),
        *[(f"run_{i}",) for i in range(6)],
    ]  # fmt: skip
    assert all(Path(f).is_absolute() for p in plan.parts for f in p.files)


@pytest.mark.parametrize("jobs", [1, 3])
def test_jobs_give_the_report_of_one_whole_read(logdir, jobs) -> None:
    expected = _one_read_json(logdir)
    assert {a["kind"] for a in expected["alerts"]} >= {"divergence", "overfitting"}  # the data means something
    assert any(p["kind"] == "bad_data_crc" for p in expected["read_problems"])
    assert next(r for r in expected["runs"] if r["run"] == "restarted")["restarts"] == 1
    got = _fleet_json(fleet.report_logdirs([logdir], jobs=jobs))
    assert got == expected


def test_cli_jobs_prints_the_same_json_for_every_n(logdir, capsys) -> None:
    outputs = []
    for jobs in ("1", "2", "4"):
        assert main(["report", str(logdir), "--format", "json", "--fail-on", "never", "--jobs", jobs]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] == outputs[2]
    assert json.loads(outputs[0])["runs"]


def test_worker_processes_are_real_processes() -> None:
    with fleet.Processes(2) as backend:
        pids = {pid for _, pid in backend.run(os.getpid, [()] * 6)}
    assert pids and os.getpid() not in pids


def test_default_jobs_reads_small_logdirs_here_and_big_ones_on_every_core(logdir, monkeypatch) -> None:
    parts = fleet.plan(logdir).parts
    assert isinstance(fleet.backend_for(parts), fleet.InProcess)  # a few kB: workers would cost more
    monkeypatch.setattr(fleet, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(fleet, "cpu_count", lambda: 4)
    backend = fleet.backend_for(parts)
    with backend:
        assert isinstance(backend, fleet.Processes) and backend.jobs == 4
    assert isinstance(fleet.backend_for(parts, jobs=1), fleet.InProcess)


def test_bad_jobs_is_a_usage_error(logdir, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(logdir), "--jobs", "0"])
    assert exit_info.value.code == 2 and "at least 1" in capsys.readouterr().err


class _Charts(HTMLParser):
    """The runs that got a chart in the HTML report (the overlay of every run is not one of them)."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        label = dict(attrs).get("aria-label") or ""
        if tag == "div" and label.startswith("curves of run "):
            self.runs.add(label.removeprefix("curves of run "))


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_report_and_figures(logdir, capsys, tmp_path) -> None:
    """A real LocalCluster with 2 worker processes: the Python API with a Client, and the CLI's --dask."""
    distributed = pytest.importorskip("distributed")
    expected = _one_read_json(logdir)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            with distributed.get_task_stream(client) as stream:
                got = _fleet_json(fleet.report_logdirs([logdir], client=client))
            workers = {task["worker"] for task in stream.data if task["key"].startswith("report_part")}
            tasks = [task for task in stream.data if task["key"].startswith("report_part")]
            assert got == expected
            assert len(tasks) == len(fleet.plan(logdir).parts)  # one task per part, run on the cluster's workers
            assert workers and workers <= set(client.scheduler_info()["workers"])
        address = cluster.scheduler_address
        args = ["report", str(logdir), "--fail-on", "never"]
        assert main([*args, "--format", "json", "--dask", address]) == 0
        assert json.loads(capsys.readouterr().out) == expected
        assert main([*args, "--format", "html", "-o", str(tmp_path / "dask.html"), "--dask", address]) == 0
    assert main([*args, "--format", "html", "-o", str(tmp_path / "local.html"), "--jobs", "1"]) == 0
    dask_html, local_html = ((tmp_path / name).read_text(encoding="utf-8") for name in ("dask.html", "local.html"))
    assert dask_html == local_html  # chart data made by the cluster's workers, byte for byte
    charts = _Charts()
    charts.feed(dask_html)
    assert charts.runs == {r["run"] for r in expected["runs"]} - {"exp"}  # `exp` logs only `note`: no curve to draw


def test_unreachable_scheduler_is_one_line_exit_2(logdir, capsys) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = main(["report", str(logdir), "--dask", f"tcp://127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 2 and f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_html_of_many_runs_lists_alerts_first_and_draws_only_them(tmp_path, capsys) -> None:
    tb = EventWriters()
    diverging = {f"r{i:02d}" for i in (3, 17, 29, 41, 55)}
    for i in range(60):
        name = f"r{i:02d}"
        tb.scalars(tmp_path / name, {"train/loss": _loss(120, i, nan_at=80 if name in diverging else None)})
    target = tmp_path / "report.html"
    code = main(["report", str(tmp_path), "--format", "html", "-o", str(target), "--max-plots", "3", "--jobs", "2"])
    assert code == 1
    text = target.read_text(encoding="utf-8")
    table = text[text.index("<table class='sortable'>") : text.index("</table>")]
    rows = table.split("<tr>")[2:]
    assert {row.split("<td>")[1].split("</td>")[0] for row in rows[:5]} == diverging  # alerts first
    assert all("class='ok'" in row for row in rows[5:])
    charts = _Charts()
    charts.feed(text)
    assert len(charts.runs) == 3 and charts.runs <= diverging
    assert "Charts for 3 of 60 runs" in text
    assert "aria-label='training loss of 3 of 60 runs in" in text  # the overlay says it holds only those


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max-plots", "3"], "--max-plots only applies to --format html"),
        (["--jobs", "2", "--dask", "tcp://127.0.0.1:1"], "--jobs and --dask exclude each other"),
    ],
)
def test_flag_misuse_is_one_line_exit_2(logdir, capsys, extra, message) -> None:
    assert main(["report", str(logdir), *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_worker_that_dies_is_a_clear_error_not_a_traceback() -> None:
    from tbmon.monitor.exit_codes import UsageError

    with fleet.Processes(1) as backend, pytest.raises(UsageError, match="worker process died"):
        list(backend.run(os._exit, [(9,)]))  # what the kernel's OOM killer does to a worker


@pytest.mark.parametrize("jobs", [1, 2])
def test_progress_counts_every_byte_once_in_order(logdir, jobs) -> None:
    calls: list[tuple[int, int]] = []
    with fleet.Fleet([logdir], jobs=jobs) as runs:
        runs.reports(lambda done, total: calls.append((done, total)))
    total = sum(f.stat().st_size for f in logdir.rglob("*tfevents*"))
    assert calls[-1] == (total, total)
    assert all(t == total for _, t in calls) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len(calls) >= len(fleet.plan(logdir).parts)  # at least one step per part
