"""`tbmon watch` end to end: real watcher process, real writer process, real inotify, real HTTP.

The writer is a separate process driven line by line over stdin; it writes with tensorboardX's
own ``EventsWriter`` (the class under ``SummaryWriter``) and flushes after every record, so the
test controls exactly when a NaN loss reaches the disk. Timeouts are generous (shared 2-core
machine); latency is measured in bench/latency.py, not asserted here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.monitor.test_notify import SECRET, Hook

CLI = [sys.executable, "-m", "tbmon.monitor.cli"]
WAIT = 60.0

pytestmark = pytest.mark.slow  # real watcher processes against a live writer: 5-15 s each

WRITER = r"""
import os, sys, time
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto import event_pb2, summary_pb2

logdir = sys.argv[1]
writers = {}
for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "scalar":
        run, tag, step, value = args
        if run not in writers:
            os.makedirs(os.path.join(logdir, run), exist_ok=True)
            writers[run] = EventsWriter(os.path.join(logdir, run, "events"), f".{os.getpid()}")
        value = summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
        event = event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=[value]))
        writers[run].write_event(event)
        writers[run].flush()
    print("ok", time.time(), flush=True)
for writer in writers.values():
    writer.close()
"""


class Writer:
    """A writer process; ``scalar`` returns once the record is flushed to the file."""

    def __init__(self, logdir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(logdir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def scalar(self, run: str, tag: str, step: int, value: float) -> float:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(f"scalar {run} {tag} {step} {value}\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().split()
        assert answer[:1] == ["ok"], answer
        return float(answer[1])

    def losses(self, run: str, values: list[float], start: int = 0) -> None:
        for step, value in enumerate(values, start):
            self.scalar(run, "train/loss", step, value)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(WAIT)


class Watcher:
    """``tbmon watch`` as a subprocess; its stdout lines are collected as they arrive."""

    def __init__(self, *args: str, fmt: str = "jsonl") -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [*CLI, "watch", "--format", fmt, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        threading.Thread(target=self._pump, daemon=True).start()
        self.stderr = ""

    def _pump(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    @property
    def records(self) -> list[dict[str, Any]]:
        with self._cond:
            return [json.loads(line) for line in self.lines]

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = WAIT) -> dict[str, Any]:
        """The first line matching ``predicate``; fails on timeout or when the watcher exited without it."""
        deadline = time.monotonic() + timeout
        checked = 0
        with self._cond:
            while True:
                for line in self.lines[checked:]:
                    record = json.loads(line)
                    if predicate(record):
                        return record
                checked = len(self.lines)
                exited = self.proc.poll() is not None
                if time.monotonic() > deadline or (exited and not self._cond.wait(0.5) and checked == len(self.lines)):
                    raise AssertionError(f"no matching line in {self.lines}; exited: {exited}")
                self._cond.wait(1.0)

    def ready(self) -> None:
        """Wait until the initial scan is done and file events are being followed."""
        self.wait_for(lambda r: r["type"] == "status" and r["message"].startswith("following"))

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(WAIT)
        assert self.proc.stderr
        self.stderr = self.proc.stderr.read()
        time.sleep(0.1)  # let the pump thread take the last lines
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def alerts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] == "alert"]


def is_alert(run: str, kind: str = "divergence") -> Callable[[dict[str, Any]], bool]:
    return lambda r: r["type"] == "alert" and r["run"] == run and r["kind"] == kind


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[Writer]:
    w = Writer(tmp_path / "logs")
    yield w
    w.close()


def test_live_alert_new_run_restart_and_clean_sigint(tmp_path: Path, writer: Writer) -> None:
    logdir, state = tmp_path / "logs", tmp_path / "state.json"
    writer.losses("exp1", [1.0, 0.9, 0.8, 0.7])
    watcher = Watcher(str(logdir), "--state", str(state))
    try:
        watcher.ready()
        writer.scalar("exp1", "train/loss", 4, float("nan"))
        alert = watcher.wait_for(is_alert("exp1"))
        assert alert["severity"] == "critical" and alert["step"] == 4 and alert["tag"] == "train/loss"
        assert alert["logdir"] == str(logdir)
        for field in ("wall_time", "message", "evidence"):
            assert field in alert

        writer.losses("exp2", [2.0, 1.5])  # a run that appears mid-watch
        watcher.wait_for(lambda r: r["type"] == "run" and r["event"] == "new" and r["run"] == "exp2")
        code = watcher.stop(signal.SIGINT)
    finally:
        watcher.kill()
    summary = watcher.records[-1]
    assert summary["type"] == "summary" and summary["runs"] == 2 and summary["alerts"]["critical"] == 1
    assert code == 1 == summary["exit_code"]  # --fail-on critical (default)
    assert "Traceback" not in watcher.stderr
    assert len(alerts(watcher.records)) == 1  # one episode, one alert

    # A restarted watcher with the same state repeats nothing, yet still alerts on new trouble.
    writer.scalar("exp1", "train/loss", 5, float("nan"))  # same episode, written while nobody watched
    again = Watcher(str(logdir), "--state", str(state), "--fail-on", "never")
    try:
        again.ready()
        writer.scalar("exp2", "train/loss", 2, float("inf"))
        again.wait_for(is_alert("exp2"))
        code = again.stop(signal.SIGTERM)
    finally:
        again.kill()
    assert [a["run"] for a in alerts(again.records)] == ["exp2"]
    summary = again.records[-1]
    assert summary["alerts_total"] == 2 and summary["new_alerts"] == 1
    assert code == 0  # --fail-on never


def test_webhook_reaches_a_real_server(tmp_path: Path, writer: Writer) -> None:
    hook = Hook()
    writer.losses("exp1", [1.0])
    watcher = Watcher(str(tmp_path / "logs"), "--no-state", "--notify-webhook", hook.url)
    try:
        watcher.ready()
        writer.scalar("exp1", "train/loss", 1, float("nan"))
        alert = watcher.wait_for(is_alert("exp1"))
        deadline = time.monotonic() + WAIT
        while not hook.bodies and time.monotonic() < deadline:
            time.sleep(0.05)
        watcher.stop()
    finally:
        watcher.kill()
        hook.close()
    assert len(hook.bodies) == 1
    body = hook.bodies[0]
    assert body["text"].startswith("[tbmon] CRITICAL divergence in run exp1")
    assert {k: body[k] for k in alert} == alert


def test_failing_webhooks_do_not_stop_watching(tmp_path: Path, writer: Writer) -> None:
    failing = Hook(statuses=[500] * 100)
    refused = "http://127.0.0.1:9/hook/" + SECRET  # port 9 (discard): nothing listens here
    writer.losses("a", [1.0])
    writer.losses("b", [1.0])
    watcher = Watcher(str(tmp_path / "logs"), "--no-state", "--notify-webhook", failing.url, "--notify-webhook", refused)
    try:
        watcher.ready()
        writer.scalar("a", "train/loss", 1, float("nan"))
        watcher.wait_for(is_alert("a"))
        writer.scalar("b", "train/loss", 1, float("nan"))
        watcher.wait_for(is_alert("b"))
        watcher.wait_for(lambda r: r["type"] == "status" and "not delivered" in r["message"] and ":9/" in r["message"])
        watcher.wait_for(lambda r: r["type"] == "status" and "HTTP 500" in r["message"])
        watcher.stop()
    finally:
        watcher.kill()
        failing.close()
    text = "\n".join(watcher.lines) + watcher.stderr
    assert SECRET not in text and "/hook" not in text and "/services" not in text


def test_polling_mode_and_a_logdir_that_appears_later(tmp_path: Path, writer: Writer) -> None:
    logdir = tmp_path / "logs"
    watcher = Watcher(str(logdir), "--no-state", "--poll", "0.2")
    try:
        watcher.wait_for(lambda r: r["type"] == "status" and "waiting for" in r["message"])
        watcher.ready()
        writer.losses("late", [1.0, float("nan")])
        alert = watcher.wait_for(is_alert("late"))
        assert alert["step"] == 1
        watcher.stop()
    finally:
        watcher.kill()
    assert any("polling" in r.get("message", "") for r in watcher.records if r["type"] == "status")


def test_corrupt_record_is_one_problem_line_not_a_traceback(tmp_path: Path, writer: Writer) -> None:
    writer.losses("exp1", [1.0, 0.5, 0.25])
    writer.close()
    path = next((tmp_path / "logs" / "exp1").iterdir())
    data = bytearray(path.read_bytes())
    middle = data.index(struct.pack("<f", 0.5))  # the value of the middle record (the last one at EOF
    data[middle] ^= 0xFF  # would be held back as a possibly torn write): its data CRC no longer matches
    path.write_bytes(bytes(data))
    watcher = Watcher(str(tmp_path / "logs"), "--no-state")
    try:
        watcher.wait_for(lambda r: r["type"] == "problem")
        watcher.ready()
        code = watcher.stop()
    finally:
        watcher.kill()
    problems = [r for r in watcher.records if r["type"] == "problem"]
    assert len(problems) == 1 and problems[0]["path"] == str(path)
    assert code == 0 and "Traceback" not in watcher.stderr


def test_once_scans_and_exits_with_the_ci_code(tmp_path: Path, writer: Writer) -> None:
    writer.losses("exp1", [1.0, float("nan")])
    done = subprocess.run(
        [*CLI, "watch", "--once", "--no-state", str(tmp_path / "logs")], capture_output=True, text=True, timeout=WAIT
    )
    assert done.returncode == 1
    first, summary = done.stdout.splitlines()
    assert "CRITICAL divergence run=exp1 tag=train/loss step=1" in first
    assert summary.startswith("tbmon: 1 run, 1 alert (")
    missing = subprocess.run(
        [*CLI, "watch", "--once", str(tmp_path / "nope")], capture_output=True, text=True, timeout=WAIT
    )
    assert missing.returncode == 2 and missing.stderr.startswith("tbmon: no such directory")


def test_plain_format_alerts_on_stdout_notices_on_stderr(tmp_path: Path, writer: Writer) -> None:
    writer.losses("exp1", [1.0])
    out = tmp_path / "alerts.log"
    watcher = Watcher(str(tmp_path / "logs"), "--no-state", "--output", str(out), fmt="plain")
    try:
        deadline = time.monotonic() + WAIT
        writer.scalar("exp1", "train/loss", 1, float("nan"))
        while "CRITICAL" not in (out.read_text() if out.exists() else "") and time.monotonic() < deadline:
            time.sleep(0.05)
        code = watcher.stop(signal.SIGTERM)
    finally:
        watcher.kill()
    lines = out.read_text().splitlines()
    assert "CRITICAL divergence run=exp1" in lines[0] and lines[-1].startswith("tbmon: 1 run, ")
    assert code == 1 and watcher.lines == []
    assert "following" in watcher.stderr and "Traceback" not in watcher.stderr
    assert os.path.getsize(out) < 2000


def delivered_in_checkpoint(state: Path, run: str) -> bool:
    """The state file records ``run``'s alert, and it or its delivery journal says the output has it."""
    try:
        saved = json.loads(state.read_text())
    except (OSError, ValueError):
        return False
    journal = state.with_name(state.name + ".delivered")
    confirmed = journal.read_text() if journal.exists() else ""
    records = [a for records in saved["alerts"].values() for a in records if a["run"] == run]
    return bool(records) and all(a["pending"] == [] or f'"{run}"' in confirmed for a in records)


def test_killed_watcher_does_not_repeat_its_alerts(tmp_path: Path, writer: Writer) -> None:
    """SIGKILL once the delivery is recorded: a restart stays quiet. (A kill before that
    re-delivers: at-least-once, tests/faults/test_delivery_faults.py.)"""
    logdir, state = tmp_path / "logs", tmp_path / "state.json"
    writer.losses("exp1", [1.0, 0.9])
    watcher = Watcher(str(logdir), "--state", str(state))
    try:
        watcher.ready()
        writer.scalar("exp1", "train/loss", 2, float("nan"))
        watcher.wait_for(is_alert("exp1"))
        deadline = time.monotonic() + WAIT
        while not delivered_in_checkpoint(state, "exp1"):
            assert time.monotonic() < deadline, "delivery never checkpointed"
            time.sleep(0.05)
    finally:
        watcher.kill()  # SIGKILL: no summary, no final save
    writer.losses("exp1", [0.5, 0.4], start=3)  # written while no one watched
    again = Watcher(str(logdir), "--state", str(state))
    try:
        again.ready()  # the catch-up scan is done once this line is out
        code = again.stop()
    finally:
        again.kill()
    assert alerts(again.records) == []
    assert again.records[-1]["alerts_total"] == 1 and code == 1


def test_deleted_run_and_rotated_file_are_followed(tmp_path: Path, writer: Writer) -> None:
    logdir = tmp_path / "logs"
    writer.losses("gone", [1.0])
    writer.losses("kept", [1.0])
    watcher = Watcher(str(logdir), "--no-state")
    try:
        watcher.ready()
        shutil.rmtree(logdir / "gone")
        watcher.wait_for(lambda r: r["type"] == "run" and r["event"] == "removed" and r["run"] == "gone")
        rotated = Writer(logdir)  # a second writer process: a new event file in the same run
        try:
            rotated.scalar("kept", "train/loss", 1, float("nan"))
        finally:
            rotated.close()
        watcher.wait_for(is_alert("kept"))
        oldest = min((logdir / "kept").iterdir(), key=lambda p: p.stat().st_mtime)
        oldest.unlink()  # log rotation: the run lives on in its newer file
        watcher.wait_for(lambda r: r["type"] == "status" and r["message"] == f"event file deleted: {oldest}")
        watcher.stop()
    finally:
        watcher.kill()
    assert watcher.records[-1]["runs"] == 1
    assert watcher.records[-1]["problems"] == 0  # deleting a run is not damage
    assert not any(r["type"] == "problem" for r in watcher.records)


def test_corrupt_state_file_means_a_fresh_start_with_a_warning(tmp_path: Path, writer: Writer) -> None:
    writer.losses("exp1", [1.0, float("nan")])
    state = tmp_path / "state.json"
    state.write_text('{"version": 1, "logdirs": [')
    done = subprocess.run(
        [*CLI, "watch", "--once", "--format", "jsonl", "--state", str(state), str(tmp_path / "logs")],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert any(r["type"] == "status" and "corrupt" in r["message"] for r in records)
    assert [a["run"] for a in alerts(records)] == ["exp1"] and done.returncode == 1
    assert json.loads(state.read_text())["version"] == 1  # rewritten whole


def test_a_run_that_stops_writing_while_watched_gets_one_stalled_note(tmp_path: Path, writer: Writer) -> None:
    """The writer process stops mid-run (as a hung or killed job would); a run that was already complete
    when the watcher started stays quiet, however long it has not been written."""
    writer.losses("finished", [1.0, 0.9, 0.8])
    writer.losses("live", [1.0])
    watcher = Watcher(str(tmp_path / "logs"), "--no-state", "--stall-after", "2")
    try:
        watcher.ready()
        for step in (1, 2, 3):
            writer.scalar("live", "train/loss", step, 1.0 / (step + 1))
            time.sleep(0.2)
        silent_since = time.monotonic()
        stalled = watcher.wait_for(is_alert("live", "stalled"))
        noticed_after = time.monotonic() - silent_since
        time.sleep(3)  # another threshold: no repeat, and the finished run never counts
        code = watcher.stop(signal.SIGTERM)
    finally:
        watcher.kill()
    assert stalled["severity"] == "info" and stalled["step"] == 3
    assert stalled["evidence"]["quiet_seconds"] >= 2 and noticed_after >= 1.5
    assert "written nothing" in stalled["message"] and "every under a second" in stalled["message"]
    assert [(a["run"], a["kind"]) for a in alerts(watcher.records)] == [("live", "stalled")]
    assert code == 0 and "Traceback" not in watcher.stderr
