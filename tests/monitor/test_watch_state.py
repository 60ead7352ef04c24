"""The watcher's checkpoint file: exact round trip, atomic replace, and every way it can be unusable."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from tbmon.monitor.state import WatchState, default_state_path, load_state, save_state


def sample_state(logdir: str) -> WatchState:
    return WatchState(
        logdirs=[logdir],
        readers={logdir: {"version": 1, "runs": {"a": {"files": {"x": {"offset": 123}}}}}},
        engines={
            logdir: {
                "window": np.array([1.5, np.nan, np.inf], dtype=np.float64),
                "steps": np.arange(4, dtype=np.int64).reshape(2, 2),
                "pair": (1, "two"),
                "by_key": {("run", "tag"): [1.0, -math.inf]},
                "scalar": np.float32(0.25),
            }
        },
        alerts={
            logdir: [
                {
                    "run": "a", "kind": "divergence", "severity": "critical", "step": 3, "wall_time": 1.5, "tag": "loss",
                    "message": "loss is NaN", "evidence": {"value": "nan"}, "pending": ["output"],
                }
            ]
        },
    )


def test_round_trip_is_exact(tmp_path: Path) -> None:
    logdir = str(tmp_path / "logs")
    path = tmp_path / "state" / "s.json"
    save_state(path, sample_state(logdir))
    loaded, problem = load_state(path, [logdir])
    assert problem is None and loaded is not None
    engine = loaded.engines[logdir]
    np.testing.assert_array_equal(engine["window"], [1.5, np.nan, np.inf])
    assert engine["window"].dtype == np.float64
    assert engine["steps"].dtype == np.int64 and engine["steps"].shape == (2, 2)
    assert engine["pair"] == (1, "two")
    assert list(engine["by_key"]) == [("run", "tag")] and engine["by_key"][("run", "tag")][1] == -math.inf
    assert engine["scalar"] == 0.25
    assert loaded.readers == sample_state(logdir).readers
    assert loaded.alerts == sample_state(logdir).alerts
    json.loads(path.read_text())  # strict JSON, inspectable with any tool


def test_save_replaces_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    save_state(path, sample_state("/a"))
    save_state(path, WatchState(logdirs=["/a"]))
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]
    loaded, _ = load_state(path, ["/a"])
    assert loaded is not None and loaded.engines == {}


def test_missing_file_means_fresh_start_without_warning(tmp_path: Path) -> None:
    assert load_state(tmp_path / "none.json", ["/a"]) == (None, None)


def test_corrupt_file_means_fresh_start_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    save_state(path, sample_state("/a"))
    path.write_bytes(path.read_bytes()[:40])  # torn by something other than us
    state, problem = load_state(path, ["/a"])
    assert state is None and "corrupt" in problem and str(path) in problem
    path.write_text('{"version": 1}')
    state, problem = load_state(path, ["/a"])
    assert state is None and "corrupt" in problem


def test_other_version_or_other_logdirs_are_not_used(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"version": 99}))
    state, problem = load_state(path, ["/a"])
    assert state is None and "version 99" in problem
    save_state(path, sample_state("/a"))
    state, problem = load_state(path, ["/b"])
    assert state is None and "other logdirs" in problem


def test_default_path_is_per_set_of_logdirs(tmp_path: Path) -> None:
    one = default_state_path([str(tmp_path / "a"), str(tmp_path / "b")])
    assert one == default_state_path([str(tmp_path / "b"), str(tmp_path / "a")])
    assert one != default_state_path([str(tmp_path / "a")])
    assert "tbmon" in str(one)
