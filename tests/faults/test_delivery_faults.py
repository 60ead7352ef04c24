"""Issue 15, delivery half: no kill, full disk, neighbour or damaged file loses an alert.

Every case is a real ``tbmon watch`` process on real files: SIGKILL loops, ``/dev/full`` (the
kernel's always-full device: ENOSPC without root), a file-size limit (``RLIMIT_FSIZE``, raised
later with ``prlimit`` to play "space freed": a real EFBIG from the kernel, no mount needed), a
state directory that is a file, a second watcher, hand-damaged state files, and real HTTP/TCP
servers on 127.0.0.1 (the well-behaved one from tests/monitor/test_notify.py, and one that
answers garbage). "Lost" below means: an alert the files call for that a sink never got.
"""

from __future__ import annotations

import base64
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tensorboardX import SummaryWriter

from tests.monitor.test_notify import SECRET, Hook
from tests.monitor.test_watch_e2e import Writer

CLI = [sys.executable, "-m", "tbmon.monitor.cli"]
WAIT = 60.0
NAN = float("nan")


# -- helpers --------------------------------------------------------------------------------
def diverged_runs(logdir: Path, names: list[str]) -> None:
    """Runs written by tensorboardX's SummaryWriter, each ending in a NaN loss (one critical alert each).

    They log a validation loss too, as real trainings do, so no missing-signal hint joins the status lines."""
    for name in names:
        with SummaryWriter(str(logdir / name)) as writer:
            for step, value in enumerate([1.0, 0.9, NAN]):
                writer.add_scalar("train/loss", value, step)
            writer.add_scalar("val/loss", 1.0, 1)


def start_watch(*args: str, stderr: Path, env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen[bytes]:
    """``tbmon watch --format jsonl ARGS`` with stderr to a file (read after it exits or while it runs)."""
    with open(stderr, "ab") as err:
        return subprocess.Popen(
            [*CLI, "watch", "--format", "jsonl", *args],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, **(env or {})},
            **popen,
        )


def wait_until(condition: Callable[[], Any], timeout: float = WAIT, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} not met within {timeout:.0f} s"
        time.sleep(0.05)
    return value


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The complete JSON lines of ``path`` (a line being written right now is not complete yet)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n") and line.strip()]


def alert_runs(path: Path) -> list[str]:
    return [r["run"] for r in json_lines(path) if r.get("type", "alert") == "alert" and "kind" in r]


def following(path: Path) -> bool:
    return any(r.get("type") == "status" and r["message"].startswith("following") for r in json_lines(path))


def _following_lines(path: Path) -> int:
    return sum(r.get("type") == "status" and r["message"].startswith("following") for r in json_lines(path))


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGINT)
    return proc.wait(WAIT)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Watchers started by a test; any still running at the end are killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- item 3: at-least-once delivery -----------------------------------------------------------
def test_alerts_queued_for_a_command_when_killed_are_delivered_after_restart(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """Before: the state said "sent" as soon as an alert was printed, so the --on-alert deliveries
    still queued when SIGKILL came were lost for good (5 of 6 here). After: 0 lost."""
    logdir, state, out, got = tmp_path / "logs", tmp_path / "state.json", tmp_path / "out.jsonl", tmp_path / "got.jsonl"
    runs = [f"r{i}" for i in range(6)]
    diverged_runs(logdir, runs)
    command = f"cat >> {got}; echo >> {got}; sleep 0.5"  # a slow pager: the later alerts wait in its queue
    args = ("--state", str(state), "-o", str(out), "--on-alert", command, str(logdir))
    first = start_watch(*args, stderr=tmp_path / "err1")
    procs.append(first)
    wait_until(lambda: alert_runs(got), what="a first --on-alert delivery")
    first.kill()  # SIGKILL: the other alerts are printed but still queued for the command
    first.wait()
    assert sorted(alert_runs(out)) == runs
    assert len(set(alert_runs(got))) < len(runs), "the kill came too late to test anything"
    again = start_watch(*args, stderr=tmp_path / "err2")
    procs.append(again)
    wait_until(lambda: set(alert_runs(got)) == set(runs), what="every alert at the command")
    assert stop(again) == 1
    assert sorted(alert_runs(out)) == runs  # printed once: the journal recorded the output had them
    assert "Traceback" not in (tmp_path / "err2").read_text()
    redelivered = [r for r in json_lines(out) if r.get("type") == "status" and "confirmed before the last stop" in r["message"]]
    assert len(redelivered) == 1


@pytest.mark.slow
def test_sigkill_loop_loses_no_alert_and_leaves_no_temp_files(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """A writer diverges one run after another while the watcher is SIGKILLed at random moments
    (mid-save, mid-print, mid-notify) and restarted; every alert reaches the output and the
    command at least once, and no temp file of an interrupted save survives."""
    logdir, state, out, got = tmp_path / "logs", tmp_path / "state.json", tmp_path / "out.jsonl", tmp_path / "got.jsonl"
    command = f"cat >> {got}; echo >> {got}; sleep 0.2"
    args = ("--state", str(state), "-o", str(out), "--on-alert", command, str(logdir))
    writer = Writer(logdir)
    rng = random.Random(15)
    runs: list[str] = []
    try:
        for round_ in range(12):
            watcher = start_watch(*args, stderr=tmp_path / "err")
            procs.append(watcher)
            for _ in range(2):
                run = f"run{len(runs)}"
                runs.append(run)
                writer.losses(run, [1.0, 0.9, NAN])
            time.sleep(rng.uniform(0.3, 2.0) if round_ else 3.0)
            watcher.kill()
            watcher.wait()
    finally:
        writer.close()
    started_before = _following_lines(out)
    last = start_watch(*args, stderr=tmp_path / "err")
    procs.append(last)
    # the killed watchers may have delivered everything already: Ctrl-C only once this one is following
    # (a SIGINT while Python is still starting kills it before tbmon can handle it)
    wait_until(lambda: _following_lines(out) > started_before, what="the last watcher following")
    wait_until(lambda: set(alert_runs(out)) >= set(runs) and set(alert_runs(got)) >= set(runs), what="every alert")
    assert stop(last) == 1
    assert set(alert_runs(out)) == set(runs) and set(alert_runs(got)) == set(runs)  # 0 lost
    assert not list(tmp_path.glob(".state.json.*.tmp"))
    assert "Traceback" not in (tmp_path / "err").read_text()


def test_temp_file_of_a_save_killed_midway_is_removed(tmp_path: Path) -> None:
    logdir, state = tmp_path / "logs", tmp_path / "state.json"
    diverged_runs(logdir, ["exp1"])
    stale = tmp_path / ".state.json.k1ll3d.tmp"
    stale.write_text('{"version": 1, "logdirs": [')  # what a SIGKILL during save_state leaves
    done = subprocess.run([*CLI, "watch", "--once", "--format", "jsonl", "--state", str(state), str(logdir)],
                          capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 1 and not stale.exists()
    assert any("temp file" in json.loads(line).get("message", "") for line in done.stdout.splitlines())


# -- item 6: a full disk ------------------------------------------------------------------------
def test_full_disk_on_the_output_keeps_watching_and_notifying(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """``-o /dev/full`` (every write: ENOSPC). Before: exit 2 at the first alert, the rest never
    reached --on-alert (7 of 8 lost there). After: all 8 reach the command, one line says the
    output failed, the watcher runs on."""
    logdir, got, err = tmp_path / "logs", tmp_path / "got.jsonl", tmp_path / "err"
    diverged_runs(logdir, [f"early{i}" for i in range(5)])
    watcher = start_watch("--no-state", "-o", "/dev/full", "--on-alert", f"cat >> {got}; echo >> {got}", str(logdir), stderr=err)
    procs.append(watcher)
    wait_until(lambda: len(set(alert_runs(got))) == 5, what="the early alerts at the command")
    writer = Writer(logdir)
    try:
        for i in range(3):
            writer.losses(f"late{i}", [1.0, 0.9, NAN])
    finally:
        writer.close()
    wait_until(lambda: len(set(alert_runs(got))) == 8, what="the late alerts at the command")
    assert watcher.poll() is None
    assert stop(watcher) == 1
    lines = err.read_text().splitlines()
    assert len([line for line in lines if "cannot write to /dev/full: No space left on device" in line]) == 1
    assert not any("Traceback" in line or "internal error" in line for line in lines)


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return apply


def test_output_that_hits_the_size_limit_is_retried_when_space_returns(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """The output file is 10 bytes short of the process's file-size limit, so every line is written
    in part (10 bytes) and then fails with EFBIG. Before: exit 2, alert lost.
    After: the torn part is cut back, and once the limit is raised (``prlimit``, as freeing
    space would) the retry writes every alert exactly once, as whole lines."""
    logdir, out, err = tmp_path / "logs", tmp_path / "out.jsonl", tmp_path / "err"
    limit = 4096
    filler = '{"filler":"' + "f" * (limit - 10 - 14) + '"}\n'  # a JSON line: the file stays valid jsonl
    out.write_text(filler)
    writer = Writer(logdir)
    try:
        writer.losses("exp1", [1.0, 0.9])
        watcher = start_watch("--no-state", "-o", str(out), str(logdir), stderr=err, preexec_fn=_limit_file_size(limit))
        procs.append(watcher)
        wait_until(lambda: "File too large" in err.read_text(), what="the output failure")
        writer.losses("exp2", [1.0, 0.9, NAN])
        writer.scalar("exp1", "train/loss", 2, NAN)
        time.sleep(1.0)
        assert watcher.poll() is None and out.read_text() == filler  # nothing torn left in the file
        resource.prlimit(watcher.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        wait_until(lambda: sorted(alert_runs(out)) == ["exp1", "exp2"], what="the retried alerts")
    finally:
        writer.close()
    assert stop(watcher) == 1
    body = out.read_text()[len(filler) :]
    records = [json.loads(line) for line in body.splitlines()]  # whole lines only
    assert len(filler) == limit - 10 and sorted(r["run"] for r in records if r["type"] == "alert") == ["exp1", "exp2"]
    said = err.read_text()
    assert said.count("cannot write to") == 1 and "writable again" in said


def test_state_file_that_cannot_be_written_is_retried(tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    """The state's directory is a file. Before: one notice, then no checkpoint for the whole
    session (a restart re-reads everything and repeats every alert). After: retried every few
    seconds; once the directory can be made, the state is saved and a restart repeats nothing."""
    logdir, blocker, out = tmp_path / "logs", tmp_path / "statedir", tmp_path / "out.jsonl"
    blocker.write_text("not a directory")
    state = blocker / "state.json"
    diverged_runs(logdir, ["exp1"])
    watcher = start_watch("--state", str(state), "-o", str(out), str(logdir), stderr=tmp_path / "err")
    procs.append(watcher)
    wait_until(lambda: alert_runs(out) == ["exp1"], what="the alert")
    wait_until(lambda: any("cannot save state" in r.get("message", "") for r in json_lines(out)), what="the notice")
    blocker.unlink()
    blocker.mkdir()  # the disk is back
    wait_until(state.exists, timeout=20, what="a retried save")
    wait_until(lambda: any("state saved to" in r.get("message", "") for r in json_lines(out)), what="recovery notice")
    watcher.kill()
    watcher.wait()
    again = start_watch("--state", str(state), "-o", str(out), str(logdir), stderr=tmp_path / "err")
    procs.append(again)
    wait_until(lambda: following(out) and len([r for r in json_lines(out) if r.get("message", "").startswith("following")]) == 2,
               what="the restarted watcher")
    assert stop(again) == 1
    assert alert_runs(out) == ["exp1"]  # said once across both sessions
    assert len([r for r in json_lines(out) if "cannot save state" in r.get("message", "")]) == 1


# -- item 7: two watchers, one state file -------------------------------------------------------
def test_second_watcher_on_the_same_state_file_is_refused_and_named(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """Before: both ran and both delivered every alert. After: the second exits 2 at once, naming
    the first's pid; the first keeps alerting."""
    logdir, state, out = tmp_path / "logs", tmp_path / "state.json", tmp_path / "out.jsonl"
    diverged_runs(logdir, ["exp1"])
    first = start_watch("--state", str(state), "-o", str(out), str(logdir), stderr=tmp_path / "err1")
    procs.append(first)
    wait_until(lambda: following(out), what="the first watcher")
    second = subprocess.run([*CLI, "watch", "--format", "jsonl", "--state", str(state), str(logdir)],
                            capture_output=True, text=True, timeout=WAIT)
    assert second.returncode == 2 and second.stdout == ""
    assert "in use by another tbmon watch" in second.stderr and f"pid {first.pid} " in second.stderr
    diverged_runs(logdir, ["exp2"])
    wait_until(lambda: sorted(alert_runs(out)) == ["exp1", "exp2"], what="the first watcher's next alert")
    assert stop(first) == 1
    again = subprocess.run([*CLI, "watch", "--once", "--format", "jsonl", "--state", str(state), str(logdir)],
                           capture_output=True, text=True, timeout=WAIT)
    assert again.returncode == 1  # the lock went with its holder


# -- item 8: hand-damaged state files -----------------------------------------------------------
def _deep(data: dict[str, Any]) -> str:
    return '{"version": 1, "logdirs": ' + "[" * 100_000 + "]" * 100_000 + "}"


def _first_alert(data: dict[str, Any]) -> dict[str, Any]:
    return next(iter(data["alerts"].values()))[0]


def _list_step(data: dict[str, Any]) -> str:
    _first_alert(data)["step"] = [2, 3]
    return json.dumps(data)


def _unknown_severity(data: dict[str, Any]) -> str:
    _first_alert(data)["severity"] = "apocalyptic"
    return json.dumps(data)


def _object_array(data: dict[str, Any]) -> str:
    data["engines"] = {k: {"x": {"__ndarray__": [1], "dtype": "|O", "shape": [1]}} for k in data["engines"]}
    return json.dumps(data)


@pytest.mark.parametrize("damage", [_deep, _list_step, _unknown_severity, _object_array])
def test_hand_damaged_state_is_set_aside_and_rebuilt(tmp_path: Path, damage: Callable[[dict[str, Any]], str]) -> None:
    """Before: RecursionError / TypeError / ValueError on every start (exit 2, no alert ever again);
    an object-dtype array was decoded into the engine. After: one notice, the file kept as
    STATE.bad, the state rebuilt from the event files (its alert raised and delivered again)."""
    logdir, state = tmp_path / "logs", tmp_path / "state.json"
    diverged_runs(logdir, ["exp1"])
    once = [*CLI, "watch", "--once", "--format", "jsonl", "--state", str(state), str(logdir)]
    assert subprocess.run(once, capture_output=True, timeout=WAIT).returncode == 1
    state.write_text(damage(json.loads(state.read_text())))
    done = subprocess.run(once, capture_output=True, text=True, timeout=WAIT)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    notices = [r["message"] for r in records if r["type"] == "status"]
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert len(notices) == 1 and "set aside" in notices[0] and "rebuilding" in notices[0]
    assert [r["run"] for r in records if r["type"] == "alert"] == ["exp1"]  # rebuilt: raised again, not lost
    assert (tmp_path / "state.json.bad").exists()
    quiet = subprocess.run(once, capture_output=True, text=True, timeout=WAIT)
    assert quiet.returncode == 1 and [json.loads(line)["type"] for line in quiet.stdout.splitlines()] == ["summary"]


# -- item 10: the webhook secret ----------------------------------------------------------------
def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


@pytest.mark.parametrize("source", ["env", "file"])
def test_webhook_url_from_env_or_file_stays_out_of_the_process_list(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]], source: str
) -> None:
    """Before: only --notify-webhook URL existed (in `ps` for every local user); the env variable
    was ignored and the file option unknown. After: both deliver, and the secret is not in
    /proc/PID/cmdline."""
    logdir, out = tmp_path / "logs", tmp_path / "out.jsonl"
    diverged_runs(logdir, ["exp1"])
    hook = Hook()
    try:
        if source == "env":
            extra: tuple[str, ...] = ()
            env = {"TBMON_WEBHOOK_URL": hook.url}
        else:
            urls = tmp_path / "hooks.txt"
            urls.write_text(f"# team channel\n{hook.url}\n")
            extra, env = ("--notify-webhook-file", str(urls)), {}
        watcher = start_watch("--no-state", "-o", str(out), *extra, str(logdir), stderr=tmp_path / "err", env=env)
        procs.append(watcher)
        wait_until(lambda: hook.bodies, what="the webhook delivery")
        assert SECRET.encode() not in _cmdline(watcher.pid)
        assert stop(watcher) == 1
    finally:
        hook.close()
    assert [b["run"] for b in hook.bodies] == ["exp1"]


def test_credentials_in_the_webhook_url_are_sent_as_basic_auth(tmp_path: Path) -> None:
    """Before: ``http://user:pass@host/`` passed the URL check and every delivery failed. After:
    the request goes to the host with an Authorization header."""
    logdir = tmp_path / "logs"
    diverged_runs(logdir, ["exp1"])
    hook = Hook()
    try:
        url = hook.url.replace("http://", "http://alerts:p%40ss@")
        done = subprocess.run([*CLI, "watch", "--once", "--format", "jsonl", "--no-state", str(logdir)],
                              capture_output=True, text=True, timeout=WAIT, env={**os.environ, "TBMON_WEBHOOK_URL": url})
    finally:
        hook.close()
    assert done.returncode == 1 and [b["run"] for b in hook.bodies] == ["exp1"]
    assert hook.headers[0]["Authorization"] == "Basic " + base64.b64encode(b"alerts:p@ss").decode()
    assert "p%40ss" not in done.stdout + done.stderr


# -- item 12: garbage replies ---------------------------------------------------------------------
GARBAGE = b"\x1b[2J\x1b]0;owned\x07\x1b]8;;file:///etc/passwd\x1b\\click\x1b]8;;\x1b\\" + b"A" * 5000 + b"\r\n\r\n"


class GarbageServer:
    """A TCP server on 127.0.0.1 that answers every request with terminal escapes and 5 KB of noise."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook/{SECRET}"
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                self.requests += 1
                conn.sendall(GARBAGE)

    def close(self) -> None:
        self.sock.close()


def test_garbage_webhook_replies_are_summarised_escaped_and_rate_limited(tmp_path: Path) -> None:
    """30 alerts to an endpoint that answers escapes and noise. Before: 30 status lines, each with
    the raw ESC sequences (screen clear, window title, a file:// link) and 5 KB of noise. After:
    one escaped, short line and a count; the alerts stay pending in the state (not lost)."""
    logdir, state = tmp_path / "logs", tmp_path / "state.json"
    runs = [f"r{i:02d}" for i in range(30)]
    diverged_runs(logdir, runs)
    server = GarbageServer()
    try:
        done = subprocess.run(
            [*CLI, "watch", "--once", "--format", "plain", "--state", str(state), "--notify-webhook-file", "/dev/stdin",
             str(logdir)],
            input=server.url, capture_output=True, text=True, timeout=WAIT,
        )
    finally:
        server.close()
    assert done.returncode == 1 and server.requests >= 30
    webhook_lines = [line for line in done.stderr.splitlines() if line.startswith("tbmon: webhook")]
    assert 1 <= len(webhook_lines) <= 2, webhook_lines
    assert "\x1b" not in done.stderr and "\x07" not in done.stderr
    assert all(len(line) < 400 for line in webhook_lines)
    assert "malformed reply" in webhook_lines[0] and "\\x1b" in webhook_lines[0]
    assert "29 more" in done.stderr
    saved = json.loads(state.read_text())
    assert sorted(a["run"] for a in saved["alerts"][str(logdir)] if a["pending"]) == runs  # owed, retried next start


def _reader_step_list(data: dict[str, Any]) -> None:
    next(iter(data["readers"].values()))["runs"]["exp1"]["first_step"] = [1, 2]


def _reader_wall_text(data: dict[str, Any]) -> None:
    next(iter(data["readers"].values()))["runs"]["exp1"]["last_wall"] = "yesterday"


def _engine_count_list(data: dict[str, Any]) -> None:
    next(iter(data["engines"].values()))["rules"]["exp1"]["divergence"]["tags"]["train/loss"]["n"] = [1, 2]


@pytest.mark.parametrize("damage", [_reader_step_list, _reader_wall_text, _engine_count_list])
def test_damage_inside_reader_or_engine_state_means_a_fresh_read_not_a_crash(
    tmp_path: Path, damage: Callable[[dict[str, Any]], None]
) -> None:
    """Wrong types deep in the reader's or the analyzers' saved state pass their loaders and trip
    the first read or analysis of new data. Before: exit 2 on every start, the NaN written since
    never alerted (1 of 1 lost). After: one notice, that logdir read again from the start, the
    alert raised (0 lost), the alert raised before not repeated."""
    logdir, state = tmp_path / "logs", tmp_path / "state.json"
    with SummaryWriter(str(logdir / "exp1")) as writer:
        for step in range(50):
            writer.add_scalar("train/loss", 1.0 - step / 100, step)
            writer.add_scalar("val/loss", 1.0 - step / 200, step)
    once = [*CLI, "watch", "--once", "--format", "jsonl", "--state", str(state), str(logdir)]
    assert subprocess.run(once, capture_output=True, timeout=WAIT).returncode == 0
    saved = json.loads(state.read_text())
    damage(saved)
    state.write_text(json.dumps(saved))
    # the job goes on (a second event file) and diverges; the suffix keeps a restart within the same second
    # from reusing the first file's name (tensorboardX names files by the second), which would replace it
    with SummaryWriter(str(logdir / "exp1"), filename_suffix=".resumed") as writer:
        for step in range(50, 60):
            writer.add_scalar("train/loss", NAN if step == 59 else 0.5, step)
    done = subprocess.run(once, capture_output=True, text=True, timeout=WAIT)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 1 and "internal error" not in done.stderr, done.stderr
    assert [r["message"] for r in records if r["type"] == "status"] == [
        f"saved state for {logdir} unusable (TypeError); rereading it from the start"
    ]
    assert [(r["run"], r["step"]) for r in records if r["type"] == "alert"] == [("exp1", 59)]
