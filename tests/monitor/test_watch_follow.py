"""The follower against real directories and real inotify, with a stand-in reader that records calls.

The reader is a stand-in here (the real one has its own tests and is exercised end to end in
test_watch_e2e.py); the only mocked parts are the two inotify failures that cannot be produced
on this machine without root: an observer that cannot start (watch limit) and one that
delivers no events (network filesystem).
"""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tbmon.analyzers.series import RunBatch, ScalarSeries
from tbmon.monitor.follow import Follower

WAIT = 10.0  # generous: the machine is shared by several engineers


class StandInReader:
    """Records every poll; optionally reads the changed files (as the real reader does) and reports data."""

    def __init__(self, logdir: str, *, read_files: bool = False, always_data: bool = False) -> None:
        self.logdir = logdir
        self.calls: list[list[str] | None] = []
        self.read_files = read_files
        self.always_data = always_data
        self.lock = threading.Lock()

    def poll(self, paths: list[str] | None = None) -> Any:
        with self.lock:
            self.calls.append(paths)
        if self.read_files:
            for path in paths or []:
                Path(path).read_bytes()
        batches = []
        if self.always_data:
            one = np.array([1])
            series = ScalarSeries("loss", one, one, np.array([1.0]), np.array([0.5]))
            batches.append(RunBatch(run=".", scalars=(series,)))
        return SimpleNamespace(batches=batches, problems=[], new_runs=[], removed_runs=[])


class Harness:
    def __init__(self, logdir: Path, **kwargs: Any) -> None:
        reader_kwargs = kwargs.pop("reader_kwargs", {})
        self.readers: dict[str, StandInReader] = {}
        self.results: list[tuple[str, Any]] = []
        self.notices: list[str] = []

        def make_reader(path: str) -> StandInReader:
            self.readers[path] = StandInReader(path, **reader_kwargs)
            return self.readers[path]

        self.logdir = str(logdir)
        self.follower = Follower([self.logdir], make_reader, lambda d, r: self.results.append((d, r)), self.notices.append, **kwargs)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.follower.start()
        self.follower.run(self.stop)

    def __enter__(self) -> Harness:
        self.thread.start()
        wait_for(lambda: self.logdir in self.readers or any("waiting" in n for n in self.notices))
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.follower.wake()
        self.thread.join(WAIT)
        self.follower.close()
        assert not self.thread.is_alive()

    @property
    def calls(self) -> list[list[str] | None]:
        return self.readers[self.logdir].calls


def wait_for(condition: Any, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def event_file(directory: Path, name: str = "events.out.tfevents.1.host") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(b"")
    return path


def test_append_wakes_a_read_of_just_that_file(tmp_path: Path) -> None:
    path = event_file(tmp_path / "run1")
    with Harness(tmp_path) as h:
        assert h.follower.backend == "inotify"
        wait_for(lambda: h.calls == [None])  # the initial catch-up scan
        with path.open("ab") as f:
            f.write(b"x" * 10)
        wait_for(lambda: [str(path)] in h.calls)


def test_new_run_directory_is_handed_to_the_reader(tmp_path: Path) -> None:
    """The reader discovers runs from the reported paths; no directory walk per event."""
    with Harness(tmp_path) as h:
        wait_for(lambda: h.calls == [None])
        path = event_file(tmp_path / "later" / "deeper")
        reported = lambda: {p for call in h.calls[1:] for p in call or []}  # noqa: E731
        wait_for(lambda: str(tmp_path / "later") in reported() or str(path) in reported())
        assert h.calls.count(None) == 1


def test_non_event_files_are_ignored(tmp_path: Path) -> None:
    """Checkpoints written next to the logs must not cost reads."""
    with Harness(tmp_path) as h:
        wait_for(lambda: h.calls == [None])
        (tmp_path / "model.ckpt").write_bytes(b"w" * 1000)
        time.sleep(0.5)
        assert h.calls == [None]


def test_own_reads_do_not_wake_the_loop(tmp_path: Path) -> None:
    """Reading a file raises IN_OPEN/IN_ACCESS/IN_CLOSE_NOWRITE; reacting to them would be a busy loop."""
    path = event_file(tmp_path)
    with Harness(tmp_path, reader_kwargs={"read_files": True}) as h:
        wait_for(lambda: h.calls == [None])
        with path.open("ab") as f:
            f.write(b"x")
        wait_for(lambda: len(h.calls) == 2)
        time.sleep(1.0)
        assert len(h.calls) == 2


def test_burst_of_writes_is_debounced(tmp_path: Path) -> None:
    """2000 appends (a fast writer) become a few reads, not 2000: bounded by the 30 ms debounce."""
    path = event_file(tmp_path)
    with Harness(tmp_path) as h:
        wait_for(lambda: h.calls == [None])
        with path.open("ab", buffering=0) as f:
            for _ in range(2000):
                f.write(b"y")
        wait_for(lambda: len(h.calls) >= 2)
        time.sleep(0.5)
        assert 2 <= len(h.calls) < 100


def test_missing_logdir_is_awaited_then_followed(tmp_path: Path) -> None:
    logdir = tmp_path / "not-yet"
    with Harness(logdir) as h:
        assert any("waiting for" in n for n in h.notices)
        assert h.readers == {}
        path = event_file(logdir / "run")
        wait_for(lambda: str(logdir) in h.readers and h.calls)
        assert any("appeared" in n for n in h.notices)
        with path.open("ab") as f:
            f.write(b"z")
        wait_for(lambda: [str(path)] in h.calls)


def test_deleted_logdir_is_reported_and_awaited_again(tmp_path: Path) -> None:
    logdir = tmp_path / "logs"
    path = event_file(logdir)
    with Harness(logdir) as h:
        wait_for(lambda: h.calls == [None])
        path.unlink()
        logdir.rmdir()
        wait_for(lambda: any("disappeared" in n for n in h.notices))
        polls_while_gone = len(h.calls)
        path = event_file(logdir)
        # attaching ends with a rescan (which reads whatever was written while the watch was set up)
        wait_for(lambda: any("appeared;" in n for n in h.notices) and len(h.calls) > polls_while_gone)
        with path.open("ab") as f:
            f.write(b"z")
        wait_for(lambda: [str(path)] in h.calls)


class FailingObserver:
    """Mock: what watchdog raises when fs.inotify.max_user_instances is exhausted."""

    def start(self) -> None:
        raise OSError(errno.EMFILE, "inotify instance limit reached")


def test_observer_failure_falls_back_to_polling(tmp_path: Path) -> None:
    path = event_file(tmp_path)
    with Harness(tmp_path, poll_interval=None, observer_factory=FailingObserver) as h:
        assert h.follower.backend == "polling"
        assert any("inotify instance limit" in n and "polling every" in n for n in h.notices)
        with path.open("ab") as f:
            f.write(b"p")
        wait_for(lambda: h.calls.count(None) >= 3)  # periodic rescans


class SilentObserver:
    """Mock: an observer that starts fine but never delivers an event (inotify on NFS/SSHFS)."""

    def start(self) -> None:
        pass

    def schedule(self, *args: Any, **kwargs: Any) -> object:
        return object()

    def unschedule(self, watch: object) -> None:
        pass

    def stop(self) -> None:
        pass

    def join(self, timeout: float | None = None) -> None:
        pass


def test_data_without_file_events_switches_to_polling(tmp_path: Path) -> None:
    event_file(tmp_path)
    with Harness(
        tmp_path, observer_factory=SilentObserver, safety_rescan=0.2, reader_kwargs={"always_data": True}
    ) as h:
        wait_for(lambda: h.follower.backend == "polling")
        assert any("without file events" in n for n in h.notices)


def test_polling_mode_reads_on_its_own(tmp_path: Path) -> None:
    event_file(tmp_path)
    with Harness(tmp_path, poll_interval=0.1) as h:
        assert h.follower.backend == "polling"
        wait_for(lambda: h.calls.count(None) >= 4)


def _thread_cpu(tids: set[str]) -> float:
    """CPU seconds (user + system) used so far by these threads of this process."""
    total = 0
    for tid in tids:
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")
def test_idle_follower_uses_no_cpu(tmp_path: Path) -> None:
    """Blocking on the wake event, not spinning: < 2 % of one core while nothing is written.

    Only the follower's own threads (its loop and watchdog's) are measured, so threads left
    by other tests in this process cannot make it flaky. A busy loop would show ~100 %.
    """
    for i in range(50):
        event_file(tmp_path / f"run{i}")
    existing = set(os.listdir("/proc/self/task"))
    with Harness(tmp_path) as h:
        wait_for(lambda: h.calls == [None])
        ours = set(os.listdir("/proc/self/task")) - existing
        assert len(ours) >= 2  # the loop and watchdog's emitter/observer threads
        before = _thread_cpu(ours)
        time.sleep(2.0)
        used = _thread_cpu(ours) - before
    assert used < 0.04
