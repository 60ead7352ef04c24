"""LogdirReader / read(): multi-file runs, restarts, incremental polls, resume, deletions.

Every file here is written by a real writer (tensorboardX, torch.utils.tensorboard, or
tensorboardX's EventFileWriter for hand-built TF2 protos); TensorBoard's EventAccumulator is
the oracle where its semantics are the ones we promise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import tbmon.monitor.reader as reader_module
from tbmon.monitor import LogdirReader, read
from tbmon.monitor.exit_codes import UsageError
from tbmon.monitor.frames import SCALAR_COLUMNS, frames, kept_mask
from tbmon.monitor.reader import PollResult
from tests.conftest import session_start, tf2_histogram, tf2_scalar


def stream(batches, run: str, tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seq, step, value) of one tag of one run, concatenated over batches in order."""
    parts = [s for b in batches if b.run == run for s in b.scalars if s.tag == tag]
    return tuple(np.concatenate([getattr(s, f) for s in parts]) for f in ("seq", "step", "value"))


def run_seqs(batches, run: str) -> np.ndarray:
    """Every seq of a run across batches, in batch order, series merged by seq within a batch."""
    out = []
    for b in batches:
        if b.run == run:
            out.append(np.sort(np.concatenate([s.seq for s in (*b.scalars, *b.histograms)])))
    return np.concatenate(out)


def poll_until(watcher: LogdirReader, run: str, tag: str, n: int, flush, timeout: float = 10.0):
    """Poll until ``n`` points of ``tag`` arrived. tensorboardX's ``flush()`` does not wait for
    its background queue, so records queued after a flush sit in the file buffer until the
    next one: call ``flush`` between polls, as its 120 s timer would."""
    results = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        flush()
        results.append(watcher.poll())
        got = [s for r in results for b in r.batches if b.run == run for s in b.scalars if s.tag == tag]
        if sum(len(s) for s in got) >= n:
            break
        time.sleep(0.02)
    return results


def tag_frame(result, run: str, tag: str) -> pd.DataFrame:
    df = result.scalars
    return df[(df.run == run) & (df.tag == tag)].reset_index(drop=True)


# -- multi-file runs ----------------------------------------------------------------------


def test_every_file_of_a_run_is_read_in_name_order(tmp_path: Path, tb) -> None:
    first = tb.scalars(tmp_path / "run", {"loss": [3.0, 2.0]}, steps=[0, 1])
    second = tb.scalars(tmp_path / "run", {"loss": [1.5, 1.0]}, steps=[2, 3], backend="torch")
    assert first.name < second.name
    result = read(tmp_path)
    frame = tag_frame(result, "run", "loss")
    assert frame.step.tolist() == [0, 1, 2, 3]
    assert frame.value.tolist() == [3.0, 2.0, 1.5, 1.0]
    (info,) = result.runs
    assert [Path(f.path).name for f in info.files] == [first.name, second.name]
    assert all(f.records == 3 and f.bytes_read == f.size for f in info.files)  # version + 2 events
    assert np.all(np.diff(run_seqs(result.batches, "run")) > 0)


def test_a_keras_validation_run_is_handed_over_before_its_train_sibling(tmp_path: Path, tb) -> None:
    """Divergence reads a Keras training loss's epoch jumps against the validation level of the sibling run
    (tests/analyzers/test_divergence.py); a report brings each run as one batch, so the validation run must
    come first. On s17152's epochs as the real writer puts them (a training set memorised to float precision,
    its loss jittering 1e-15 -> 4e-3, 100x under the validation loss) nothing is a divergence."""
    from tbmon.analyzers import analyze
    from tests.analyzers.test_divergence import S17152_TRAIN, S17152_VAL

    epochs = list(range(1, len(S17152_TRAIN) + 1))
    tb.scalars(tmp_path / "exp" / "train", {"epoch_loss": S17152_TRAIN}, steps=epochs)
    tb.scalars(tmp_path / "exp" / "validation", {"epoch_loss": S17152_VAL}, steps=epochs)
    tb.scalars(tmp_path / "exp" / "trace", {"loss": [1.0]}, steps=[0])
    tb.scalars(tmp_path / "alone", {"loss": [1.0]}, steps=[0])
    result = read(tmp_path)
    assert [b.run for b in result.batches] == ["alone", "exp/validation", "exp/trace", "exp/train"]
    assert [a for a in analyze(result) if a.kind == "divergence"] == []


def test_two_live_writers_in_one_folder_are_both_read(tmp_path: Path) -> None:
    from tensorboardX import SummaryWriter

    train = SummaryWriter(str(tmp_path), filename_suffix=".train")
    val = SummaryWriter(str(tmp_path), filename_suffix=".val")
    for step in range(20):
        train.add_scalar("train/loss", 1.0 / (step + 1), step)
        if step % 5 == 4:
            val.add_scalar("val/loss", 2.0 / (step + 1), step)
    train.close()
    val.close()
    result = read(tmp_path)
    counts = result.scalars.groupby("tag", observed=True).size().to_dict()
    assert counts == {"train/loss": 20, "val/loss": 4}
    assert result.runs[0].scalar_tags == ["train/loss", "val/loss"]


# -- restarts -----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["torch", "tensorboardX"])
def test_resume_with_purge_step_replaces_superseded_steps(tmp_path: Path, tb, backend: str) -> None:
    """The brief's restart: 0..99, then a new writer with purge_step=50 writing 50..120."""
    tb.scalars(tmp_path, {"loss": [float(s) for s in range(100)], "aux": [7.0] * 100}, backend=backend)
    resumed = tb.scalars(
        tmp_path, {"loss": [1000.0 + s for s in range(50, 121)]}, steps=range(50, 121),
        backend=backend, purge_step=50,
    )
    result = read(tmp_path)
    loss = tag_frame(result, ".", "loss")
    assert loss.step.tolist() == list(range(121))
    assert loss.value.tolist() == [float(s) for s in range(50)] + [1000.0 + s for s in range(50, 121)]
    # The marker supersedes every tag of the run, as TensorBoard does.
    assert tag_frame(result, ".", "aux").step.max() == 49
    accumulator = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    accumulator.Reload()
    for tag in ("loss", "aux"):
        oracle = accumulator.Scalars(tag)
        ours = tag_frame(result, ".", tag)
        assert ours.step.tolist() == [e.step for e in oracle]
        assert ours.value.tolist() == [e.value for e in oracle]
    (restart,) = result.runs[0].restarts
    assert (restart.step, restart.previous_step, restart.cause) == (50, 99, "session_start")
    assert restart.file == str(resumed) and restart.wall_time is not None
    # The batches keep the raw stream: all 100 + 71 loss points, in arrival order.
    seq, step, _ = stream(result.batches, ".", "loss")
    assert len(step) == 171 and np.all(np.diff(seq) > 0)
    assert result.batches[0].session_starts == (50,)


def test_steps_going_back_without_a_marker_is_one_restart(tmp_path: Path, tb) -> None:
    """A job resumed at step 50 by a writer that writes no marker (tensorboardX default)."""
    steps = list(range(100))
    tb.scalars(tmp_path, {"loss": [1.0] * 100, "val": [5.0] * 100}, steps=steps)
    # After the resume, val is only logged every 10 steps: its first new point (60) is later
    # than loss's (50), yet both belong to the same restart.
    new_steps = list(range(50, 80))
    tb.scalars(tmp_path, {"loss": [2.0] * 30}, steps=new_steps)
    tb.scalars(tmp_path, {"val": [6.0, 6.0, 6.0]}, steps=[60, 70, 80])
    result = read(tmp_path)
    (restart,) = result.runs[0].restarts
    assert (restart.step, restart.previous_step, restart.cause, restart.tag) == (50, 99, "step_regression", "loss")
    loss = tag_frame(result, ".", "loss")
    assert loss.step.tolist() == list(range(80)) and loss.value.tolist() == [1.0] * 50 + [2.0] * 30
    val = tag_frame(result, ".", "val")
    assert val.step.tolist() == list(range(60)) + [60, 70, 80]
    assert val.value.tolist() == [5.0] * 60 + [6.0] * 3


def test_duplicate_steps_keep_the_last_and_are_not_restarts(tmp_path: Path, tb) -> None:
    tb.scalars(tmp_path, {"loss": [1.0, 2.0, 3.0, 4.0]}, steps=[0, 1, 1, 2])
    result = read(tmp_path)
    loss = tag_frame(result, ".", "loss")
    assert loss.step.tolist() == [0, 1, 2] and loss.value.tolist() == [1.0, 3.0, 4.0]
    assert result.runs[0].restarts == []


def test_kept_mask_matches_a_direct_definition() -> None:
    """Vectorised supersession == 'no later point or later marker at a step <= mine'."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(0, 30))
        seq = np.sort(rng.choice(100, size=n, replace=False)).astype(np.int64)
        step = rng.integers(0, 20, size=n).astype(np.int64)
        m = int(rng.integers(0, 4))
        m_seq = rng.integers(0, 100, size=m).astype(np.int64)
        m_step = rng.integers(0, 20, size=m).astype(np.int64)
        expected = [
            not any(step[j] <= step[i] for j in range(i + 1, n))
            and not any(m_seq[k] > seq[i] and m_step[k] <= step[i] for k in range(m))
            for i in range(n)
        ]
        assert kept_mask(seq, step, m_seq, m_step).tolist() == expected


# -- frames -------------------------------------------------------------------------------


def test_frames_are_lean_and_columnar(tmp_path: Path, tb) -> None:
    tb.scalars(tmp_path / "a", {"loss": [1.0, 0.5], "lr": [0.1, 0.1]})
    tb.scalars(tmp_path / "b", {"loss": [2.0]})
    tb.histograms(tmp_path / "a", {"grad/w": [np.arange(10.0), np.ones(5)]})
    result = read(tmp_path, histograms="summary")
    df = result.scalars
    assert tuple(df.columns) == SCALAR_COLUMNS
    assert isinstance(df.run.dtype, pd.CategoricalDtype) and isinstance(df.tag.dtype, pd.CategoricalDtype)
    assert (df.step.dtype, df.wall_time.dtype, df.value.dtype) == (np.int64, np.float64, np.float64)
    assert df[["run", "tag", "step"]].astype(str).values.tolist() == [
        ["a", "loss", "0"], ["a", "loss", "1"], ["a", "lr", "0"], ["a", "lr", "1"], ["b", "loss", "0"],
    ]
    h = result.histograms  # per-step summaries: the bucket columns hold None
    assert list(h.columns) == [
        "run", "tag", "step", "wall_time", "min", "max", "num", "sum", "sum_squares", "bucket_limits", "bucket_counts",
    ]
    assert h.num.tolist() == [10.0, 5.0] and h["max"].tolist() == [9.0, 1.0]
    assert h.bucket_limits.tolist() == h.bucket_counts.tolist() == [None, None]
    assert all(b.histograms[0].bucket_limits == () for b in result.batches if b.histograms)
    full = read(tmp_path).histograms  # the contract's default: every bucket
    summary_columns = list(h.columns[:-2])
    pd.testing.assert_frame_equal(full[summary_columns], h[summary_columns])
    assert full.bucket_counts.map(lambda c: float(c.sum())).tolist() == [10.0, 5.0]
    with pytest.raises(ValueError, match="histograms='buckets'"):
        read(tmp_path, histograms="buckets")


def test_empty_logdir_gives_empty_frames_with_the_contract_columns(tmp_path: Path) -> None:
    (tmp_path / "no-runs-here").mkdir()
    result = read(tmp_path)
    assert tuple(result.scalars.columns) == SCALAR_COLUMNS and len(result.scalars) == 0
    assert len(result.histograms.columns) == 11 and len(result.histograms) == 0
    assert result.runs == [] and result.batches == [] and result.problems == []


def test_unreadable_logdir_is_a_one_line_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        read(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a directory"):
        read(tmp_path / "file")
    event_file = tmp_path / "events.out.tfevents.1700000000.host"
    event_file.write_bytes(b"")
    with pytest.raises(UsageError, match="pass the folder that holds it") as info:
        read(event_file)
    assert "\n" not in str(info.value) and repr(str(tmp_path)) in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_permission_denied_logdir_is_a_usage_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        with pytest.raises(UsageError, match="cannot read"):
            read(locked)
    finally:
        locked.chmod(0o755)


def test_progress_reaches_the_total_bytes(tmp_path: Path, tb) -> None:
    paths = [tb.scalars(tmp_path / f"r{i}", {"loss": list(range(50))}) for i in range(3)]
    calls: list[tuple[int, int]] = []
    read(tmp_path, progress=lambda done, total: calls.append((done, total)))
    total = sum(p.stat().st_size for p in paths)
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))


def test_keras_tf2_tensor_scalars_and_histograms(tmp_path: Path, tb) -> None:
    exp = tmp_path / "fit" / "run1"
    tb.events(exp / "train", [tf2_scalar("epoch_loss", e, 1.0 / (e + 1)) for e in range(5)])
    tb.events(
        exp / "validation",
        [tf2_scalar("epoch_loss", e, 2.0 / (e + 1), encoding="double_val") for e in range(5)]
        + [tf2_histogram("dense/kernel_0", 4, [[0.0, 1.0, 3.0], [1.0, 2.0, 5.0]])],
    )
    result = read(tmp_path)
    runs = {r.run: r for r in result.runs}
    assert (runs["fit/run1/train"].experiment_dir, runs["fit/run1/train"].role) == ("fit/run1", "train")
    assert runs["fit/run1/validation"].role == "validation"
    assert {b.run: (b.experiment_dir, b.role) for b in result.batches} == {
        "fit/run1/train": ("fit/run1", "train"), "fit/run1/validation": ("fit/run1", "validation"),
    }
    val = tag_frame(result, "fit/run1/validation", "epoch_loss")
    assert val.value.tolist() == [2.0 / (e + 1) for e in range(5)]
    (hist,) = read(tmp_path, histograms="full").histograms.itertuples()
    assert hist.num == 8.0 and hist.bucket_limits.tolist() == [1.0, 2.0]


# -- incremental polling ------------------------------------------------------------------


def test_incremental_polls_return_only_new_points(tmp_path: Path) -> None:
    from tensorboardX import SummaryWriter

    watcher = LogdirReader(tmp_path / "logs")
    assert watcher.poll().batches == []  # the logdir does not exist yet: fine for a watcher
    writer = SummaryWriter(str(tmp_path / "logs" / "run"))
    for step in range(10):
        writer.add_scalar("loss", float(step), step)
    first = poll_until(watcher, "run", "loss", 10, writer.flush)
    assert [r for p in first for r in p.new_runs] == ["run"]
    seq1, step1, _ = stream([b for p in first for b in p.batches], "run", "loss")
    assert step1.tolist() == list(range(10))
    assert watcher.poll().batches == []
    assert watcher.runs["run"].last_step == 9
    for step in range(10, 15):
        writer.add_scalar("loss", float(step), step)
    writer.close()
    (path,) = (tmp_path / "logs" / "run").iterdir()
    second = watcher.poll([path])
    seq2, step2, _ = stream(second.batches, "run", "loss")
    assert step2.tolist() == list(range(10, 15)) and seq2[0] > seq1[-1]
    assert second.new_runs == [] and watcher.runs["run"].last_step == 14


def test_poll_with_paths_does_not_walk_the_tree(tmp_path: Path, tb, monkeypatch) -> None:
    paths = [tb.scalars(tmp_path / f"run{i:03d}", {"loss": [1.0]}) for i in range(20)]
    watcher = LogdirReader(tmp_path)
    assert len(watcher.poll().new_runs) == 20

    def no_walk(*args, **kwargs):
        raise AssertionError("poll(paths) walked the directory tree")

    monkeypatch.setattr(watcher.store, "discover", no_walk)
    assert watcher.poll(paths[:5]).batches == []
    (tmp_path / "run000" / "model.ckpt").write_bytes(b"not an event file")
    assert watcher.poll([tmp_path / "run000" / "model.ckpt", tmp_path.parent / "elsewhere"]) == PollResult()
    newcomer = tb.scalars(tmp_path / "new" / "run", {"loss": [2.0, 1.0]})
    result = watcher.poll([newcomer])  # a new file in a new run: discovered from its path alone
    assert result.new_runs == ["new/run"]
    assert stream(result.batches, "new/run", "loss")[2].tolist() == [2.0, 1.0]


def test_poll_of_a_new_directory_discovers_the_runs_inside(tmp_path: Path, tb) -> None:
    watcher = LogdirReader(tmp_path)
    watcher.poll()
    tb.scalars(tmp_path / "exp" / "train", {"epoch_loss": [1.0]})
    tb.scalars(tmp_path / "exp" / "validation", {"epoch_loss": [2.0]})
    result = watcher.poll([tmp_path / "exp"])
    assert result.new_runs == ["exp/train", "exp/validation"]
    assert [b.role for b in result.batches] == ["validation", "train"]  # the level its train sibling is read against


def test_state_dict_round_trip_resumes_without_rereading(tmp_path: Path) -> None:
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "run"))
    for step in range(30):
        writer.add_scalar("loss", float(step), step)
    before = LogdirReader(tmp_path)
    polls = poll_until(before, "run", "loss", 30, writer.flush)
    seq_before, step_before, _ = stream([b for p in polls for b in p.batches], "run", "loss")
    assert step_before.tolist() == list(range(30))
    saved = json.loads(json.dumps(before.state_dict()))  # must survive JSON
    for step in range(30, 40):
        writer.add_scalar("loss", float(step), step)
    writer.close()
    after = LogdirReader(tmp_path)
    after.load_state_dict(saved)
    result = after.poll()
    assert result.new_runs == []
    seq, step, _ = stream(result.batches, "run", "loss")
    assert step.tolist() == list(range(30, 40)) and seq[0] > seq_before[-1]
    assert after.runs["run"].first_step == 0 and after.runs["run"].last_step == 39


def test_deleted_run_mid_poll_is_reported_not_raised(tmp_path: Path, tb) -> None:
    keep = tb.scalars(tmp_path / "keep", {"loss": [1.0]})
    gone = tb.scalars(tmp_path / "gone", {"loss": [1.0]})
    watcher = LogdirReader(tmp_path)
    assert watcher.poll().new_runs == ["gone", "keep"]
    shutil.rmtree(tmp_path / "gone")
    result = watcher.poll()
    assert result.removed_runs == ["gone"]
    assert [(p.path, p.kind) for p in result.problems] == [(str(gone), "deleted")]
    assert list(watcher.runs) == ["keep"]
    assert watcher.poll().problems == [] and watcher.poll([gone, tmp_path / "gone"]).removed_runs == []
    # The same through explicit paths (inotify reported the deletion).
    keep.unlink()
    result = watcher.poll([keep])
    assert result.removed_runs == ["keep"] and [p.kind for p in result.problems] == ["deleted"]


def test_rewritten_file_is_read_again_and_noted_as_a_restart(tmp_path: Path, tb) -> None:
    path = tb.scalars(tmp_path, {"loss": [float(s) for s in range(40)]})
    watcher = LogdirReader(tmp_path)
    watcher.poll()
    replacement = tb.scalars(tmp_path / "elsewhere", {"loss": [9.0] * 5})
    os.replace(replacement, path)  # what rsync without --inplace does
    result = watcher.poll([path])
    assert [p.kind for p in result.problems] == ["rewritten"]
    _, step, value = stream(result.batches, ".", "loss")
    assert step.tolist() == [0, 1, 2, 3, 4] and value.tolist() == [9.0] * 5
    (restart,) = watcher.runs["."].restarts
    assert (restart.step, restart.previous_step, restart.cause) == (0, 39, "rewritten")


def test_session_start_marker_alone_records_nothing_when_nothing_goes_back(tmp_path: Path, tb) -> None:
    tb.events(tmp_path, [session_start(0), tf2_scalar("loss", 0, 1.0), tf2_scalar("loss", 1, 0.5)])
    tb.events(tmp_path, [session_start(2), tf2_scalar("loss", 2, 0.25)])
    result = read(tmp_path)
    assert result.runs[0].restarts == []
    assert tag_frame(result, ".", "loss").step.tolist() == [0, 1, 2]


_APPENDER = textwrap.dedent(
    """
    import sys, time
    from tensorboardX import SummaryWriter
    writer = SummaryWriter(sys.argv[1], flush_secs=1)
    for step in range(int(sys.argv[2])):
        writer.add_scalar("loss", 1.0 / (step + 1), step)
        writer.add_scalar("lr", 0.1, step)
        writer.flush()
        time.sleep(0.01)
    writer.close()
    """
)


def test_file_growing_while_another_process_appends(tmp_path: Path) -> None:
    steps = 150
    proc = subprocess.Popen([sys.executable, "-c", _APPENDER, str(tmp_path / "run"), str(steps)])
    watcher = LogdirReader(tmp_path)
    batches, problems, polls_with_data = [], [], 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = proc.poll() is not None
        result = watcher.poll()
        batches += result.batches
        problems += result.problems
        polls_with_data += bool(result.batches)
        if done:
            break
        time.sleep(0.05)
    assert proc.wait(timeout=10) == 0
    assert problems == []
    assert polls_with_data >= 3  # it really was read while growing, not once at the end
    _, step, value = stream(batches, "run", "loss")
    assert step.tolist() == list(range(steps))
    assert np.allclose(value, 1.0 / (np.arange(steps) + 1), rtol=1e-6)
    assert np.all(np.diff(run_seqs(batches, "run")) > 0)
    # `watch` (many polls) and `report` (one read) see the same stream.
    once = read(tmp_path)
    for tag in ("loss", "lr"):
        assert [a.tolist() for a in stream(batches, "run", tag)] == [
            a.tolist() for a in stream(once.batches, "run", tag)
        ]


def test_bad_saved_state_is_rejected_and_leaves_the_reader_intact(tmp_path: Path, tb) -> None:
    tb.scalars(tmp_path / "run", {"loss": [1.0, 2.0]})
    watcher = LogdirReader(tmp_path)
    watcher.poll()
    good = watcher.state_dict()
    with pytest.raises(ValueError, match="version"):
        watcher.load_state_dict({"version": 999, "runs": {}})
    broken = json.loads(json.dumps(good))
    del broken["runs"]["run"]["next_seq"]
    with pytest.raises(KeyError):
        watcher.load_state_dict(broken)
    assert watcher.state_dict() == good and list(watcher.runs) == ["run"]


def test_status_and_checkpoint_calls_from_another_thread_while_polling(tmp_path: Path, tb) -> None:
    """`tbmon watch` polls in a follower thread and reads `runs`/`state_dict()` from the main one."""
    import threading

    watcher = LogdirReader(tmp_path)
    errors: list[BaseException] = []
    stop = threading.Event()

    def poll_loop() -> None:
        try:
            while not stop.wait(0.002):
                watcher.poll()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=poll_loop)
    thread.start()
    try:
        for i in range(40):
            tb.scalars(tmp_path / f"run{i:02d}", {"loss": [1.0, 0.5], "lr": [0.1, 0.1]})
            json.dumps(watcher.state_dict())
            assert all(info.run == name for name, info in watcher.runs.items())
    finally:
        stop.set()
        thread.join(timeout=30)
    assert errors == []
    watcher.poll()
    assert len(watcher.runs) == 40 and all(r.points == 4 for r in watcher.runs.values())


def test_restart_seen_live_is_recorded_as_by_read(tmp_path: Path, tb) -> None:
    """The watcher sees the first job, then the resumed one in a later poll: same restarts,
    and its batches rebuild the same frames as read()."""
    rng = np.random.default_rng(1)
    watcher = LogdirReader(tmp_path)
    tb.scalars(tmp_path, {"loss": [float(s) for s in range(30)]}, backend="torch")
    tb.histograms(tmp_path, {"grad/w": [rng.normal(size=50) for _ in range(30)]}, backend="torch")
    live = [watcher.poll()]
    tb.scalars(tmp_path, {"loss": [-1.0] * 10}, steps=range(20, 30), backend="torch", purge_step=20)
    tb.histograms(tmp_path, {"grad/w": [np.ones(3)] * 10}, steps=range(20, 30), backend="torch")
    live.append(watcher.poll())
    once = read(tmp_path, histograms="summary")  # as the live LogdirReader stores them
    assert watcher.runs["."].restarts == once.runs[0].restarts
    (restart,) = once.runs[0].restarts
    assert (restart.step, restart.previous_step, restart.cause) == (20, 29, "session_start")
    hist = once.histograms
    assert hist.step.tolist() == list(range(30)) and hist.num.tolist() == [50.0] * 20 + [3.0] * 10
    markers = {".": watcher._runs["."].purge_markers()}
    scalars, histograms = frames([b for p in live for b in p.batches], markers)
    # The per-poll batches are pieces of the same stream: they give the same frames.
    pd.testing.assert_frame_equal(scalars, once.scalars)
    pd.testing.assert_frame_equal(histograms, once.histograms)


def test_one_restart_for_all_tags_going_back_together_within_a_file(tmp_path: Path, tb) -> None:
    steps = list(range(10)) + list(range(5, 10))
    tb.scalars(tmp_path, {"a": [1.0] * 15, "b": [2.0] * 15, "c": [3.0] * 15}, steps=steps)
    (restart,) = read(tmp_path).runs[0].restarts
    assert (restart.step, restart.previous_step, restart.tag) == (5, 9, "a")


def test_steps_that_are_not_a_clock_cannot_flood_the_restart_list(tmp_path: Path, tb, monkeypatch) -> None:
    monkeypatch.setattr(reader_module, "MAX_LISTED_RESTARTS", 5)
    steps = np.random.default_rng(3).integers(0, 1000, size=400).tolist()
    tb.scalars(tmp_path, {"x": [0.0] * 400}, steps=steps)
    info = read(tmp_path).runs[0]
    assert len(info.restarts) == 5 and info.restarts_truncated
    assert [r.seq for r in info.restarts] == sorted(r.seq for r in info.restarts)


def test_a_corrupt_record_costs_one_point_and_is_reported_once(tmp_path: Path, tb) -> None:
    path = tb.scalars(tmp_path / "run", {"loss": [float(s) for s in range(50)]})
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside some record: its data CRC (or header) no longer matches
    path.write_bytes(bytes(data))
    result = read(tmp_path)
    assert len(result.problems) == 1 and result.problems[0].path == str(path)
    assert len(result.scalars) == 49
    watcher = LogdirReader(tmp_path)
    assert len(watcher.poll().problems) == 1
    assert watcher.poll().problems == [] and watcher.poll([path]).problems == []
    assert watcher.runs["run"].files[0].problems == {result.problems[0].kind: 1}


@pytest.mark.parametrize("damage", ["cut", "bad_last_crc"])
def test_a_damaged_end_is_reported_by_read_and_waited_for_by_a_watcher(tmp_path: Path, tb, damage: str) -> None:
    """A job killed mid-write leaves a partial last record; a bit flip may hit the last record. A watcher
    waits for more bytes (a writer may still be landing them); a one-shot read says what it skipped."""
    path = tb.scalars(tmp_path / "run", {"loss": [float(s) for s in range(50)]})
    data = bytearray(path.read_bytes())
    if damage == "cut":
        data = data[:-7]
    else:
        data[-1] ^= 0xFF  # the last record's data CRC
    path.write_bytes(bytes(data))
    watcher = LogdirReader(tmp_path)
    assert watcher.poll().problems == []
    result = read(tmp_path)
    assert len(result.scalars) == 49
    [problem] = result.problems
    assert (problem.kind, problem.path) == ("truncated", str(path))
    assert problem.offset + problem.skipped_bytes == len(data)
    assert result.runs[0].files[0].problems == {"truncated": 1}


def test_an_intact_file_has_no_damaged_end(tmp_path: Path, tb) -> None:
    tb.scalars(tmp_path / "run", {"loss": [float(s) for s in range(50)]})
    assert read(tmp_path).problems == []


def test_frames_are_built_when_first_used_and_a_result_pickles(tmp_path: Path) -> None:
    """`read()` leaves the pandas frames to the first ``.scalars``/``.histograms`` (a report never
    asks, issue 14); asked for, they are the same, and a result still travels between processes."""
    import pickle

    from tensorboardX import SummaryWriter

    with SummaryWriter(str(tmp_path / "run")) as writer:
        for step in range(30):
            writer.add_scalar("loss", 1.0 / (step + 1), step)
            writer.add_histogram("w", np.arange(5.0) + step, step)
    result = read(tmp_path)
    assert "_frames" not in vars(result)
    copy = pickle.loads(pickle.dumps(result))
    assert len(result.scalars) == 30 and len(result.histograms) == 30 and "_frames" in vars(result)
    assert copy.scalars.equals(result.scalars)
    assert copy.histograms["bucket_counts"].map(len).tolist() == result.histograms["bucket_counts"].map(len).tolist()
    assert read(tmp_path, pivot=True).scalars.columns.tolist() == ["run", "step", "loss"]
