"""The sparkline, the dashboard model rendered to a fixed-size console, and (end to end) in a real pty."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from tbmon.analyzers.alerts import Alert
from tbmon.analyzers.incidents import Incident, IncidentTracker
from tbmon.analyzers.series import HistogramSeries, RunBatch, ScalarSeries
from tbmon.monitor.dashboard import Board
from tbmon.monitor.sparkline import BLOCKS, sparkline
from tests.monitor.pty_terminal import Terminal
from tests.monitor.test_watch_e2e import Writer


def test_sparkline_scales_min_to_max() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == BLOCKS
    assert sparkline([5, 5, 5]) == BLOCKS[4] * 3  # flat: mid-height
    assert sparkline([]) == ""


def test_sparkline_marks_non_finite_and_never_averages_it_away() -> None:
    assert sparkline([1.0, float("nan"), 2.0]) == BLOCKS[0] + "×" + BLOCKS[-1]
    line = sparkline([1.0] * 99 + [float("inf")], width=10)
    assert len(line) == 10 and line[-1] == "×" and "×" not in line[:-1]
    assert sparkline([float("nan")] * 3) == "×××"


def test_sparkline_buckets_average_down_to_width() -> None:
    line = sparkline(list(range(1000)), width=8)
    assert line == BLOCKS  # a straight ramp stays a straight ramp


def classify(tag: str, role: str | None) -> str | None:
    return {"train/loss": "train_loss", "val/loss": "val_loss", "train/grad_norm": "grad_norm"}.get(tag)


def scalars(tag: str, steps: list[int], values: list[float], t0: float | None = None) -> ScalarSeries:
    """Points written 2 steps per second, ending now (so the run is not idle)."""
    s = np.array(steps, dtype=np.int64)
    t0 = time.time() - 50 if t0 is None else t0
    return ScalarSeries(tag, s, s, t0 + s.astype(float) * 0.5, np.array(values, dtype=float))


def row_of(text: str, label: str) -> str:
    return next(line for line in text.splitlines() if line.split()[:1] == [label])


def render(board: Board, width: int = 140, height: int = 40) -> str:
    console = Console(file=io.StringIO(), width=width, height=height, color_system=None)
    console.print(board.render(height, width))
    return console.file.getvalue()


def alert(run: str, kind: str, severity: str, step: int) -> Alert:
    return Alert(run, kind, severity, step, 2000.0, "train/loss", f"{kind} at step {step}", {})


def alone(one: Alert) -> tuple[Alert, Incident]:
    """``one`` and the incident it opens on its own (what the watcher passes with a first alert)."""
    tracker = IncidentTracker()
    return one, tracker.by_id[tracker.add(one).incident]


def test_board_rows_show_progress_losses_and_status() -> None:
    board = Board(["/logs"], classify)
    steps = list(range(0, 100, 10))
    board.observe("/logs", RunBatch("good", scalars=(scalars("train/loss", steps, [1.0 / (1 + s) for s in steps]),)))
    board.observe("/logs", RunBatch("good", scalars=(scalars("val/loss", [90], [0.125]), scalars("train/grad_norm", [90], [0.5]))))
    board.observe("/logs", RunBatch("bad", scalars=(scalars("train/loss", [0, 1, 2], [1.0, 3.0, float("nan")]),)))
    board.add_alert("/logs", *alone(alert("bad", "divergence", "critical", 2)))
    board.backend = "inotify"
    board.files_tracked = 2
    text = render(board)
    lines = text.splitlines()
    assert "/logs" in lines[0] and "inotify" in lines[0] and "2 runs, 2 files" in lines[0]
    bad, good = row_of(text, "bad"), row_of(text, "good")
    assert lines.index(bad) < lines.index(good)  # worst first
    assert "NaN" in bad and "critical" in bad and "×" in bad
    # step 90, 2 steps/s of writer time, best loss 1/91, val and grad norm, ok status
    for cell in ("90", "2", "0.01099", "0.125", "0.5", "ok"):
        assert cell in good.split(), cell
    assert "CRITICAL divergence bad train/loss step 2: divergence at step 2" in text


def test_restored_alerts_count_on_rows_and_show_in_the_feed_at_their_own_time() -> None:
    """Issue 11 item 3: a restarted dashboard lost the alert messages raised before the restart."""
    board = Board(["/logs"], classify)
    board.add_alert("/logs", *alone(alert("old", "overfitting", "warning", 5)), replayed=True)  # wall_time 2000.0
    text = render(board)
    assert "none yet" not in text and re.search(r"old\s.*warning\s+1\s", text)
    stamp = time.strftime("%H:%M:%S", time.localtime(2000.0))
    assert f"{stamp} WARNING  overfitting old train/loss step 5: overfitting at step 5" in text


def test_gradient_alert_names_the_gradient_cell_and_histograms_advance_step() -> None:
    board = Board(["/a", "/b"], classify)
    s = np.array([7], dtype=np.int64)
    f = np.array([1.0])
    hist = HistogramSeries("grad/w", s, s, f, f, f, f, f, f, (np.array([1.0]),), (np.array([1.0]),))
    board.observe("/b", RunBatch("r", histograms=(hist,)))
    board.add_alert("/b", *alone(alert("r", "vanishing_gradients", "warning", 7)))
    row = row_of(render(board), "b:r")
    assert "vanishing" in row and " 7 " in row and "warning" in row


def test_many_runs_are_cut_to_the_screen_height() -> None:
    board = Board(["/logs"], classify)
    for i in range(300):
        board.add_run("/logs", f"run{i:03d}")
    text = render(board, height=30)
    assert len(text.splitlines()) <= 30
    assert "more runs" in text


def test_rich_dashboard_in_a_real_pty(tmp_path: Path) -> None:
    """`tbmon watch` on a terminal (a pty) draws the live table and the alert, then a summary on Ctrl-C."""
    writer = Writer(tmp_path / "logs")
    writer.losses("healthy", [1.0, 0.8, 0.6])
    term = Terminal("watch", "--no-state", tmp_path / "logs", columns=160, lines=40)
    try:
        term.wait_for(lambda s: "healthy" in s and "inotify" in s)
        writer.losses("diverging", [1.0, 5.0, float("nan")])
        text = term.wait_for(lambda s: "diverging" in s and "CRITICAL divergence" in s)
        code = term.interrupt()
        final = term.screen()
    finally:
        writer.close()
        term.close()
    assert "tbmon watch" in text and "inotify" in text
    assert re.search(r"healthy\s+2\s", text)  # the run row with its last step
    assert re.search(r"diverging\s+2\s.*NaN.*critical\s+1", text)
    assert "CRITICAL divergence diverging train/loss step 2" in text
    assert "tbmon: 2 runs, 1 alert " in final and code == 1
    assert b"Traceback" not in term.raw
