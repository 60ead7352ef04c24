"""Write failures never stop training: one warning, the shim switches itself off, the loop goes on."""

from __future__ import annotations

import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

from tbmon.trainer_shim import ShimWarning, TrainerShim
from tbmon.trainer_shim.writer import Record
from tests.trainer_shim.training import load, mlp, train

ROOT = str(Path(__file__).resolve().parents[2])


@pytest.mark.slow  # a subprocess training under a file-size limit: ~9 s
def test_disk_full_mid_training_gives_one_warning_and_training_finishes(tmp_path: Path) -> None:
    """A real EFBIG from the kernel: the file-size limit (as a quota would) is hit after ~20 KB."""
    code = f"""
import resource, signal, sys, warnings
sys.path.insert(0, {ROOT!r})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG errors instead of being killed
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
from tbmon.trainer_shim import TrainerShim
from tests.trainer_shim.training import mlp, train
shim = TrainerShim({str(tmp_path)!r}, mlp(), hist_every=2, flush_secs=0.01)
losses = train(shim, shim.model, 150)
shim.close()
print("finished", len(losses), shim.enabled)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["finished", "150", "False"]
    assert result.stderr.count("ShimWarning") == 1, result.stderr
    assert "File too large" in result.stderr and "training continues" in result.stderr
    (event_file,) = tmp_path.iterdir()
    assert 0 < event_file.stat().st_size <= 20_000
    assert len(load(tmp_path).Scalars("train/loss")) > 0  # what was written before the error is readable


def test_logdir_that_cannot_be_created_warns_once_and_training_runs(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.warns(ShimWarning, match="stopped logging") as caught:
        shim = TrainerShim(blocker / "run", mlp(), hist_every=1)
        losses = train(shim, shim.model, 5)
        shim.close()
    assert len(caught) == 1 and len(losses) == 5 and not shim.enabled


def test_file_closed_under_the_writer_is_contained(tmp_path: Path) -> None:
    shim = TrainerShim(tmp_path, mlp(), hist_every=1)
    train(shim, shim.model, 2)
    assert shim.flush()
    shim._writer._file.close()  # type: ignore[union-attr]  # e.g. a library closing stray fds
    with pytest.warns(ShimWarning) as caught:
        losses = train(shim, shim.model, 30)
        shim.close()
    assert len(caught) == 1 and len(losses) == 30
    assert [e.step for e in load(tmp_path).Scalars("train/loss")] == [0, 1]


def test_a_full_queue_drops_records_instead_of_blocking(tmp_path: Path) -> None:
    shim = TrainerShim(tmp_path, max_queue=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(2000):  # far faster than the writer thread drains a queue of one
            shim.log_scalars(step, loss=1.0)
        shim.close()
    dropped = [w for w in caught if "dropped" in str(w.message)]
    assert len(dropped) == 1 and shim._writer.dropped > 0  # type: ignore[union-attr]
    assert 0 < len(load(tmp_path).Scalars("train/loss")) < 2000


def test_a_writer_behind_on_gradient_statistics_drops_them_and_keeps_every_scalar(tmp_path: Path) -> None:
    """The writer thread is held inside a histogram record (a slow disk); the loop goes on logging gradient
    statistics and losses. Only gradient records are dropped: the loss curve and validation points (rare,
    and what the overfitting rule reads) are whole. Before the separate bounds, one queue dropped both."""
    shim = TrainerShim(tmp_path, mlp(), hist_every=1, max_queue=5)  # scalars: 50
    writer = shim._writer
    assert writer is not None
    entered, release = threading.Event(), threading.Event()

    def stalled() -> tuple[list, bool]:
        entered.set()
        release.wait(10)
        return [], False

    writer.submit(Record(0, 0.0, stalled, bulky=True))
    assert entered.wait(5)
    with pytest.warns(ShimWarning, match="dropped"):
        train(shim, shim.model, 40)
        for step in range(0, 40, 10):
            shim.log_scalars(step, val_loss=1.0)
    release.set()
    shim.close()
    events = load(tmp_path)
    assert [e.step for e in events.Scalars("train/loss")] == list(range(40))
    assert [e.step for e in events.Scalars("val/loss")] == [0, 10, 20, 30]
    gradient_steps = {e.step for tag in events.Tags()["histograms"] for e in events.Histograms(tag)}
    assert 0 < len(gradient_steps) <= 5 and writer.dropped == 40 - len(gradient_steps)


def test_a_fast_loop_wakes_the_writer_before_its_queue_is_full(tmp_path: Path) -> None:
    """flush_secs=60: the writer would sleep through the whole run. Half a bound queued wakes it, so a real
    training loop that logs a loss every step loses nothing (it kept the first 120 of 1,000 when only time woke it)."""
    shim = TrainerShim(tmp_path, mlp(), flush_secs=60, max_queue=120)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ShimWarning)
        train(shim, shim.model, 1000)
    shim.close()
    assert [e.step for e in load(tmp_path).Scalars("train/loss")] == list(range(1000))


def test_a_bad_value_is_skipped_with_one_warning_and_logging_goes_on(tmp_path: Path) -> None:
    shim = TrainerShim(tmp_path)
    with pytest.warns(ShimWarning, match="ignores") as caught:
        for step in range(3):
            shim.log_scalars(step, {"note": "hello", "vec": [1.0, 2.0]}, loss=float(step))
    shim.close()
    assert sorted(str(w.message).split("'")[1] for w in caught) == ["note", "vec"]  # once per tag, not per step
    assert {w.filename for w in caught} == {__file__}  # points at the caller's line
    assert shim.enabled is False and [e.value for e in load(tmp_path).Scalars("train/loss")] == [0.0, 1.0, 2.0]
