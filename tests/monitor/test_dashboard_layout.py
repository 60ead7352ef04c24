"""The dashboard model at terminal widths and across a restart (issue 11 items 3 and 4), without a process.

The end-to-end versions (a real ``tbmon watch`` in a real pty) are in test_dashboard_terminal.py;
these pin the layout rules and the saved values precisely and run in well under a second each.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from tbmon.analyzers.series import RunBatch
from tbmon.monitor.dashboard import Board
from tbmon.monitor.state import WatchState, load_state, save_state
from tests.monitor.test_dashboard import alert, alone, classify, render, row_of, scalars

SWEEP = "imagenet-resnet50/sweep-lr-warmup"
RUNS = [f"{SWEEP}/{day}/lightning_logs/version_{v}" for day in ("2024-06-01_09-12-44", "2024-06-02_17-40-03") for v in (0, 3)]


def lightning_board(logdir: str = "/logs") -> Board:
    board = Board([logdir], classify)
    steps = list(range(0, 1200, 10))
    for i, run in enumerate(RUNS):
        losses = [2.0 * math.exp(-s / (300 + 100 * i)) + 0.1 for s in steps]
        board.observe(logdir, RunBatch(run, scalars=(scalars("train/loss", steps, losses),)))
        board.observe(logdir, RunBatch(run, scalars=(scalars("val/loss", [1190], [0.3 + i]), scalars("train/grad_norm", [1190], [0.5]))))
    board.add_alert(logdir, *alone(alert(RUNS[2], "divergence", "critical", 1190)))
    return board


def table_rows(text: str) -> list[str]:
    """The run rows: the lines between the table's rule and the blank line after it."""
    lines = [line.rstrip() for line in text.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("─")) + 1
    return lines[start : lines.index("", start)]


@pytest.mark.parametrize("width", [40, 60, 80, 120, 200])
def test_every_width_keeps_run_step_loss_and_status_and_tells_runs_apart(width: int) -> None:
    text = render(lightning_board(), width=width, height=30)
    assert all(len(line) <= width for line in text.splitlines()), text
    text = "\n".join(line.rstrip() for line in text.splitlines())
    if width >= 80:  # narrower, the counters alone take more than a line
        header = text.splitlines()[0]
        assert header.startswith("tbmon watch ") and header.endswith("0 read problems")  # one line, counters kept
    assert re.search(rf"^runs under {SWEEP}/$", text, re.M) or width < 60  # the dropped prefix, once
    columns = next(line for line in text.splitlines() if line.split()[:1] == ["run"]).split()
    assert {"step", "loss", "status"} <= set(columns), columns
    rows = table_rows(text)
    names = [row.split()[0] for row in rows]
    assert len(rows) == len(RUNS), rows
    # no two runs look the same (at 40 columns 11 cells are left: these names differ too far apart)
    assert len(set(names)) == len(RUNS) or width < 60, rows
    assert all(not name.startswith("imagenet") for name in names)
    critical = next(row for row in rows if "critical" in row)
    assert "1190" in critical.split() and "2024-06-02" in critical or width < 60, critical
    for row in rows:
        cells = row.split()
        assert "1190" in cells and any(re.fullmatch(r"0\.\d+", c) for c in cells), row  # step and loss shown whole
        assert "…" not in cells[1:], row  # only the name is ever elided


def test_wide_terminal_shows_every_column_and_whole_names() -> None:
    text = render(lightning_board(), width=200)
    header = next(line for line in text.splitlines() if line.split()[:1] == ["run"])
    assert header.split() == ["run", "step", "steps/s", "loss", "best", "trend", "val", "loss", "grad", "status", "incidents"]
    assert "2024-06-02_17-40-03/lightning_logs/version_3" in text


def test_narrow_terminal_drops_optional_columns_in_order() -> None:
    at = {width: next(line for line in render(lightning_board(), width=width).splitlines() if line.startswith(" run")).split()
          for width in (120, 80, 60)}  # fmt: skip
    assert "best" not in at[80] and "steps/s" not in at[80] and "grad" not in at[80]
    assert "trend" in at[120] and set(at[60]) <= set(at[80]) <= set(at[120])


def test_a_single_run_keeps_its_whole_name_and_no_prefix_line() -> None:
    board = Board(["/logs"], classify)
    board.observe("/logs", RunBatch(RUNS[0], scalars=(scalars("train/loss", [0, 1], [1.0, 0.5]),)))
    text = render(board, width=160)
    assert RUNS[0] in text and "runs under" not in text


def test_saved_values_bring_back_the_same_table_after_a_restart(tmp_path: Path) -> None:
    """Item 3: values saved through the real state file, resumed into a new board, render the same rows."""
    before = lightning_board()
    state_path = tmp_path / "state.json"
    save_state(state_path, WatchState(logdirs=["/logs"], dashboard=before.saved()))
    assert state_path.stat().st_size < 6000 * len(RUNS)  # bounded: ~120 trend points and 64 rate pairs per run
    loaded, problem = load_state(state_path, ["/logs"])
    assert problem is None and loaded is not None
    after = Board(["/logs"], classify)
    after.add_alert("/logs", *alone(alert(RUNS[2], "divergence", "critical", 1190)), replayed=True)
    reader_view = [(run, 1190, None) for run in RUNS]  # what the resumed reader knows
    assert after.resume("/logs", reader_view, loaded.dashboard["/logs"]) == len(RUNS)
    assert table_rows(render(after, width=120)) == table_rows(render(before, width=120))


def test_a_damaged_saved_row_keeps_the_readers_step_and_the_others_restore(tmp_path: Path) -> None:
    saved = lightning_board().saved()["/logs"]
    saved[RUNS[0]]["trend"] = "not a list of numbers"
    saved[RUNS[1]] = ["not", "a", "row"]
    after = Board(["/logs"], classify)
    assert after.resume("/logs", [(run, 1190, None) for run in RUNS], json.loads(json.dumps(saved))) == 2
    text = render(after, width=160)
    for run in RUNS[:2]:
        cells = row_of(text, run[len(f"{SWEEP}/") :]).split()
        assert cells[1] == "1190" and cells.count("—") >= 4, cells  # the reader's step, values to come
    for run in RUNS[2:]:
        assert "—" not in row_of(text, run[len(f"{SWEEP}/") :]).split()[1:5]


def test_a_long_logdir_and_a_long_shared_prefix_each_stay_on_one_line() -> None:
    logdir = "/mnt/shared-nfs/teams/vision/users/someone/experiments/2024/imagenet/logs"
    board = Board([logdir], classify)
    deep = "a-very-long-project-name/with-a-long-group-name/and-a-dated-folder-2024-06-01/lightning_logs"
    for version in (0, 1):
        board.observe(logdir, RunBatch(f"{deep}/version_{version}", scalars=(scalars("train/loss", [0, 1], [1.0, 0.5]),)))
    lines = [line.rstrip() for line in render(board, width=80).splitlines()]
    assert lines[0].startswith("tbmon watch /mnt/") and lines[0].endswith("/logs  •  starting  •  2 runs, 0 files  •  0 read problems")
    assert "…" in lines[0] and len(lines[0]) <= 80
    assert lines[1].startswith("runs under a-very-long") and lines[1].endswith("lightning_logs/") and "…" in lines[1]
    assert [row.split()[0] for row in table_rows("\n".join(lines))] == ["version_0", "version_1"]


def test_a_damaged_dashboard_entry_in_the_state_file_keeps_offsets_and_alerts(tmp_path: Path) -> None:
    state_path = tmp_path / "state.json"
    alerts = {"/logs": [alert("r", "divergence", "critical", 3).to_dict()]}
    save_state(state_path, WatchState(logdirs=["/logs"], readers={"/logs": {"version": 1}}, alerts=alerts))
    data = json.loads(state_path.read_text())
    data["dashboard"] = ["not", "a", "mapping"]
    state_path.write_text(json.dumps(data))
    loaded, problem = load_state(state_path, ["/logs"])
    assert problem is None and loaded is not None
    assert loaded.dashboard == {} and loaded.alerts == alerts and loaded.readers == {"/logs": {"version": 1}}
