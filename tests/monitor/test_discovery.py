"""Run discovery: TensorBoard's run naming, nested runs, symlinks, Keras train/validation pairs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tbmon.monitor.discovery import discover, is_event_file_name, keras_pairing

REAL_LOGS = Path(__file__).resolve().parents[3] / "shared" / "real-logs"


def runs_of(logdir: Path) -> dict[str, list[str]]:
    return {r.run: [os.path.basename(f) for f in r.files] for r in discover(logdir).runs}


def test_nested_runs_at_any_depth_written_by_real_writers(tmp_path: Path, tb) -> None:
    tb.scalars(tmp_path, {"loss": [1.0]})
    tb.scalars(tmp_path / "a", {"loss": [1.0]}, backend="torch")
    tb.scalars(tmp_path / "a" / "b" / "c", {"loss": [1.0]})
    (tmp_path / "empty" / "deeper").mkdir(parents=True)
    runs = runs_of(tmp_path)
    assert list(runs) == [".", "a", "a/b/c"]
    assert all(len(files) == 1 and "tfevents" in files[0] for files in runs.values())


def test_files_are_sorted_by_name_and_lookalikes_ignored(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name in (
        "events.out.tfevents.1700000200.host.2",
        "events.out.tfevents.1700000100.host.1",
        ".events.out.tfevents.1700000300.host.XyZ12",  # rsync temp copy
        "events.out.tfevents.1700000000.host.profile-empty",  # profiler marker
        "checkpoint.pt",
    ):
        (run / name).write_bytes(b"")
    (tmp_path / "only-temp").mkdir()
    (tmp_path / "only-temp" / ".events.out.tfevents.1.h.tmp").write_bytes(b"")
    assert runs_of(tmp_path) == {
        "run": ["events.out.tfevents.1700000100.host.1", "events.out.tfevents.1700000200.host.2"]
    }


def test_same_second_torch_files_keep_their_creation_order(tmp_path: Path) -> None:
    """torch names files <time>.<host>.<pid>.<counter>: counter 10 sorts before 9 as text."""
    names = [f"events.out.tfevents.1700000000.host.4242.{n}" for n in (8, 9, 10, 11)]
    names.append("events.out.tfevents.1700000001.host.4242.3")
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert runs_of(tmp_path) == {".": names}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("events.out.tfevents.1585499054.Jaakkos-Mac-mini.local.11684.5.v2", True),
        ("events.out.tfevents.test", True),
        (".events.out.tfevents.1.host.abc", False),
        ("events.out.tfevents.1.host.profile-empty", False),
        ("model.ckpt", False),
    ],
)
def test_event_file_names(name: str, expected: bool) -> None:
    assert is_event_file_name(name) is expected


def test_symlinked_run_dir_is_followed_and_loops_are_cut(tmp_path: Path, tb) -> None:
    outside = tmp_path / "storage" / "exp7"
    tb.scalars(outside, {"loss": [1.0]})
    logdir = tmp_path / "logs"
    logdir.mkdir()
    (logdir / "linked").symlink_to(outside, target_is_directory=True)
    (logdir / "loop").symlink_to(logdir, target_is_directory=True)  # logs/loop -> logs
    tb.scalars(logdir / "real", {"loss": [1.0]})
    found = discover(logdir)
    assert [r.run for r in found.runs] == ["linked", "real"]
    assert found.runs[0].files[0].startswith(str(logdir / "linked"))


def test_keras_train_validation_siblings_form_one_experiment(tmp_path: Path, tb) -> None:
    for sub in ("train", "validation"):
        tb.scalars(tmp_path / "fit" / "20240101-120000" / sub, {"epoch_loss": [1.0]})
    for sub in ("val", "eval", "valid"):
        tb.scalars(tmp_path / "other" / sub, {"loss": [1.0]})
    tb.scalars(tmp_path / "train", {"loss": [1.0]})
    pairing = {r.run: (r.experiment_dir, r.role) for r in discover(tmp_path).runs}
    assert pairing == {
        "fit/20240101-120000/train": ("fit/20240101-120000", "train"),
        "fit/20240101-120000/validation": ("fit/20240101-120000", "validation"),
        "other/eval": ("other", "validation"),
        "other/val": ("other", "validation"),
        "other/valid": ("other", "validation"),
        "train": (".", "train"),
    }


def test_plain_runs_and_the_logdir_itself_have_no_role(tmp_path: Path) -> None:
    assert keras_pairing(".") == (None, None)
    assert keras_pairing("exp/trainer") == (None, None)
    train = tmp_path / "train"
    train.mkdir()
    (train / "events.out.tfevents.1.h").write_bytes(b"")
    (run,) = discover(train).runs  # the logdir itself is called "train": still run "."
    assert (run.run, run.experiment_dir, run.role) == (".", None, None)


def test_missing_logdir_is_empty_not_an_error(tmp_path: Path) -> None:
    found = discover(tmp_path / "not-yet")
    assert found.runs == () and found.unreadable_dirs == ()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unreadable_subdirectory_is_reported_and_the_rest_still_found(tmp_path: Path, tb) -> None:
    tb.scalars(tmp_path / "ok", {"loss": [1.0]})
    locked = tmp_path / "locked"
    tb.scalars(locked, {"loss": [1.0]})
    locked.chmod(0)
    try:
        found = discover(tmp_path)
    finally:
        locked.chmod(0o755)
    assert [r.run for r in found.runs] == ["ok"]
    assert found.unreadable_dirs == (str(locked),)


@pytest.mark.skipif(not REAL_LOGS.is_dir(), reason=f"real-logs corpus not found at {REAL_LOGS}")
def test_real_keras_layout_is_recognised() -> None:
    runs = {r.run: r for r in discover(REAL_LOGS).runs}
    assert len(runs) == 16  # SOURCES.md: 16 files, one per run directory
    keras = runs["Kapoorlabs-CAPED__caped-ai-oneat/logs/fit/20221123-151122/train"]
    assert (keras.experiment_dir, keras.role) == ("Kapoorlabs-CAPED__caped-ai-oneat/logs/fit/20221123-151122", "train")
