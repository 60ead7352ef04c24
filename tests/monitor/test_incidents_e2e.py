"""Issue 11 item 2 as the user met it: the demo's one divergence paged four times.

A real training (the demo's diverging MLP, logged by the trainer shim) is watched by a real
``tbmon watch`` process with a webhook on a real HTTP server on 127.0.0.1 and an ``--on-alert``
command; its alerts must come as one incident: every alert in the JSON lines with the incident
id ``tbmon report`` gives it, pages only when the incident opens or its severity rises. Then the
same across a restart (state file), and on the dashboard in a real pty.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.monitor.pty_terminal import Terminal
from tests.monitor.test_notify import Hook
from tests.monitor.test_watch_e2e import WAIT, Watcher, alerts

pytest.importorskip("torch", reason="the diverging run is a real PyTorch training (the dev extra installs torch)")
pytestmark = pytest.mark.slow  # real trainings and watcher processes: 10-30 s each

CLI = [sys.executable, "-m", "tbmon.monitor.cli"]
TRAIN = (
    "import sys, threading; from pathlib import Path; from tbmon.monitor import demo\n"
    "demo.STEP_SECONDS = float(sys.argv[2])\n"
    "demo._train(Path(sys.argv[1]), 0.01, demo.LR_GROWTH, threading.Event())\n"
)


def train_diverging(run_dir: Path, step_seconds: float) -> subprocess.Popen[bytes]:
    """The demo's diverging run (lr x1.04 a step until NaN), written by the shim as `tbmon demo` does."""
    return subprocess.Popen([sys.executable, "-c", TRAIN, str(run_dir), str(step_seconds)])


def report_alerts(logdir: Path) -> list[dict[str, Any]]:
    done = subprocess.run([*CLI, "report", str(logdir), "--format", "json"], capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)["alerts"]


def key(alert: dict[str, Any]) -> tuple[str, str, str, int]:
    return (alert["run"], alert["kind"], alert["tag"], alert["step"])


def wait_until(condition: Any, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.fixture(scope="module")
def diverged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished diverging run (its logdir), for the restart and dashboard cases."""
    logdir = tmp_path_factory.mktemp("diverged")
    assert train_diverging(logdir / "diverging", 0.0).wait(120) == 0
    return logdir


def test_live_divergence_pages_once_per_incident_and_json_keeps_every_alert(tmp_path: Path) -> None:
    logdir, hook, paged = tmp_path / "logs", Hook(), tmp_path / "paged.jsonl"
    logdir.mkdir()
    watcher = Watcher(str(logdir), "--no-state", "--notify-webhook", hook.url, "--on-alert", f"cat >> {paged}")
    try:
        watcher.ready()
        assert train_diverging(logdir / "diverging", 0.02).wait(120) == 0  # live: the alerts come over many polls
        expected = report_alerts(logdir)
        wait_until(lambda: len(alerts(watcher.records)) >= len(expected), f"{len(expected)} alerts in {watcher.lines}")
        wait_until(lambda: paged.exists() and len(hook.bodies) == len(paged.read_text().splitlines()) > 0, "deliveries")
        time.sleep(1.0)  # nothing more is on its way
        assert watcher.stop() == 1
    finally:
        watcher.kill()
        hook.close()
    got = alerts(watcher.records)
    assert len(got) == len(expected) >= 3, got  # the user's case: several alerts for one blow-up
    # JSON keeps every alert, each with its incident: the one `report` gives it
    assert {key(a): a["incident"] for a in got} == {key(a): a["incident"] for a in expected}
    assert {a["incident"] for a in got} == {f"diverging:instability@{min(a['step'] for a in got)}"}
    # pages: the incident opening, then only a rise in severity; every other alert is an update
    events = Counter(a["incident_event"] for a in got)
    assert events["opened"] == 1 and events["escalated"] <= 2 and events["updated"] >= 1, events
    pages = [a for a in got if a["incident_event"] != "updated"]
    assert [key(b) for b in hook.bodies] == [key(a) for a in pages]
    assert [key(json.loads(line)) for line in paged.read_text().splitlines()] == [key(a) for a in pages]
    assert len(hook.bodies) < len(got)
    assert hook.bodies[0]["text"].endswith(f"[incident {pages[0]['incident']}]")
    assert all("escalated" in b["text"] and b["incident_severity"] == b["severity"] for b in hook.bodies[1:])
    summary = watcher.records[-1]
    assert summary["type"] == "summary" and summary["incidents"] == 1 and summary["alerts_total"] == len(got)


def cut_after_step(events: bytes, step: int) -> int:
    """The byte offset of the first TFRecord whose event step is above ``step`` (a clean record boundary)."""
    from tensorboardX.proto import event_pb2

    offset = 0
    while offset < len(events):
        (length,) = struct.unpack("<Q", events[offset : offset + 8])
        data = events[offset + 12 : offset + 12 + length]
        if event_pb2.Event.FromString(data).step > step:
            return offset
        offset += 12 + length + 4
    raise AssertionError(f"no step above {step}")


def test_a_restarted_watcher_keeps_the_incident_and_pages_no_update(diverged: Path, tmp_path: Path) -> None:
    """Stopped after the incident opened, restarted on more of the same run: the later alerts are
    updates of the same incident (same id as `report`), not a new page."""
    expected = report_alerts(diverged)
    first_noticed = min(a["evidence"].get("noticed_step", a["step"]) for a in expected)
    (source,) = (diverged / "diverging").glob("*tfevents*")
    whole = source.read_bytes()
    cut = cut_after_step(whole, first_noticed + 1)
    logdir, state, hook = tmp_path / "logs", tmp_path / "state.json", Hook()
    (logdir / "diverging").mkdir(parents=True)
    target = logdir / "diverging" / source.name
    target.write_bytes(whole[:cut])
    lines = []
    try:
        for part in ("first", "second"):
            done = subprocess.run([*CLI, "watch", str(logdir), "--once", "--state", str(state), "--format", "jsonl",
                                   "--notify-webhook", hook.url], capture_output=True, text=True, timeout=120)  # fmt: skip
            assert done.returncode in (0, 1) and "Traceback" not in done.stderr, done.stderr
            lines += [json.loads(line) for line in done.stdout.splitlines()]
            if part == "first":
                assert alerts(lines) and len(alerts(lines)) < len(expected), "the cut must fall inside the incident"
                with target.open("ab") as handle:  # the training writes on while no watcher runs
                    handle.write(whole[cut:])
    finally:
        hook.close()
    got = alerts(lines)
    assert sorted(map(key, got)) == sorted(map(key, expected))  # each alert once across the restart
    assert {key(a): a["incident"] for a in got} == {key(a): a["incident"] for a in expected}
    assert len({a["incident"] for a in got}) == 1
    pages = [a for a in got if a["incident_event"] != "updated"]
    assert sorted(map(key, hook.bodies)) == sorted(map(key, pages)) and len(pages) < len(got)
    assert [a["incident_alerts"] for a in got] == list(range(1, len(got) + 1))  # counted on across the restart


def test_the_dashboard_shows_one_incident_line_with_its_alert_count(diverged: Path, tmp_path: Path) -> None:
    logdir = tmp_path / "logs"
    shutil.copytree(diverged, logdir)
    count = len(report_alerts(logdir))
    term = Terminal("watch", "--no-state", logdir, columns=120, lines=30)
    try:
        screen = term.wait_for(lambda s: f"1 ({count} alerts)" in s and "instability incident" in s)
        screen = term.settle()
    finally:
        term.interrupt()
        term.close()
    row = next(line for line in screen.splitlines() if line.split()[:1] == ["diverging"])
    assert "critical" in row and row.rstrip().endswith(f"1 ({count} alerts)"), screen  # the incidents column
    feed = screen[screen.index("alerts (latest first)") :].splitlines()[1:]
    entries = [line for line in feed if line[:9].count(":") == 2 and line[9:].lstrip().startswith(("CRITICAL", "WARNING"))]
    assert len(entries) == 1, screen  # one line for the incident, not one per alert
    assert "CRITICAL instability incident diverging since step" in entries[0] and f"{count} alerts" in entries[0]


def test_report_tables_show_the_incident_and_json_csv_keep_every_alert(diverged: Path) -> None:
    expected = report_alerts(diverged)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, "report", str(diverged), *args], capture_output=True, text=True, timeout=120)

    markdown = run("--format", "markdown").stdout
    rows = [line for line in markdown.splitlines() if line.startswith("| critical | instability@")]
    assert len(rows) == 1 and f"| {len(expected)}: divergence" in rows[0], markdown  # one row, not one per alert
    assert f"**Incidents (1, from {len(expected)} alerts)**" in markdown
    table = run().stdout
    assert f"Incidents (1, from {len(expected)} alerts)" in table and "instability incident  diverging · steps" in table
    # Every alert still shown, under it: compared without whitespace, as Rich wraps a long line at a space
    # (dropping it) wherever the terminal's width puts the break.
    flat = "".join(table.split())
    assert all("".join(a["message"][:40].split()) in flat for a in expected), table
    page = run("--format", "html").stdout
    assert f"<h3>Incidents (1, from {len(expected)} alerts)</h3>" in page
    assert page.count("<td>instability@") == 1 and f"<summary>Every alert ({len(expected)})</summary>" in page
    csv_rows = run("--format", "csv", "--csv-alerts").stdout.splitlines()
    assert csv_rows[0].endswith(",incident") and len(csv_rows) == len(expected) + 1
    assert {row.rsplit(",", 1)[1] for row in csv_rows[1:]} == {expected[0]["incident"]}
