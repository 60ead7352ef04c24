"""Notifiers against a real HTTP server on 127.0.0.1 and real shell commands."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tbmon.monitor.notify import CommandNotifier, WebhookNotifier, check_webhook_url, redact_url

ALERT = {
    "type": "alert",
    "run": "exp1",
    "kind": "divergence",
    "severity": "critical",
    "step": 845,
    "wall_time": 1763900000.0,
    "tag": "train/loss",
    "message": "loss is NaN",
    "evidence": {"value": "nan"},
    "logdir": "/logs",
}
SECRET = "T000/B000/XXXXsecretXXXX"


class Hook:
    """A webhook endpoint: records bodies; answers with the scripted statuses, then 200."""

    def __init__(self, statuses: list[int] | None = None, delay: float = 0.0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.statuses = list(statuses or [])
        self.delay = delay
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(hook.delay)
                status = hook.statuses.pop(0) if hook.statuses else 200
                hook.bodies.append(json.loads(body))
                hook.headers.append(dict(self.headers))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/{SECRET}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_webhook_posts_slack_text_and_alert_fields(hook: Hook) -> None:
    reports: list[str] = []
    notifier = WebhookNotifier(hook.url, reports.append)
    notifier.submit(ALERT)
    wait_for(lambda: hook.bodies)
    notifier.close(5)
    body = hook.bodies[0]
    assert body["text"].startswith("[tbmon] CRITICAL divergence in run exp1")
    assert "loss is NaN" in body["text"]
    assert {k: body[k] for k in ALERT} == ALERT
    assert hook.headers[0]["Content-Type"] == "application/json"
    assert reports == []


def test_webhook_retries_server_errors_then_delivers() -> None:
    hook = Hook(statuses=[500, 503])
    reports: list[str] = []
    try:
        notifier = WebhookNotifier(hook.url, reports.append, backoff=0.01)
        notifier.submit(ALERT)
        wait_for(lambda: len(hook.bodies) == 3)
        notifier.close(5)
    finally:
        hook.close()
    assert reports == []


def test_webhook_gives_up_with_a_redacted_one_line_report() -> None:
    hook = Hook(statuses=[500] * 10)
    reports: list[str] = []
    try:
        notifier = WebhookNotifier(hook.url, reports.append, attempts=3, backoff=0.01)
        notifier.submit(ALERT)
        wait_for(lambda: reports)
        notifier.close(5)
    finally:
        hook.close()
    assert len(hook.bodies) == 3
    assert len(reports) == 1 and "\n" not in reports[0]
    assert "HTTP 500" in reports[0] and "127.0.0.1" in reports[0]
    assert SECRET not in reports[0] and "services" not in reports[0]


def test_client_errors_are_not_retried() -> None:
    hook = Hook(statuses=[404])
    reports: list[str] = []
    try:
        notifier = WebhookNotifier(hook.url, reports.append, backoff=0.01)
        notifier.submit(ALERT)
        wait_for(lambda: reports)
        notifier.close(5)
    finally:
        hook.close()
    assert len(hook.bodies) == 1 and "HTTP 404" in reports[0]


def test_refused_connection_is_reported_without_the_secret() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again at once: nothing listens there
    reports: list[str] = []
    notifier = WebhookNotifier(f"https://user:pw@127.0.0.1:{port}/hook/{SECRET}?token=abc", reports.append, backoff=0.01)
    notifier.submit(ALERT)
    wait_for(lambda: reports)
    notifier.close(5)
    assert "not delivered" in reports[0]
    for secret in (SECRET, "token", "pw", "user"):
        assert secret not in reports[0]


def test_submit_never_blocks_on_a_slow_endpoint() -> None:
    hook = Hook(delay=1.0)
    try:
        notifier = WebhookNotifier(hook.url, lambda m: None)
        started = time.monotonic()
        for _ in range(5):
            notifier.submit(ALERT)
        assert time.monotonic() - started < 0.5  # five deliveries take >= 5 s on the thread
        wait_for(lambda: hook.bodies)
        notifier.close(0.1)
    finally:
        hook.close()


def test_redaction_and_url_check() -> None:
    assert redact_url(f"https://hooks.slack.com/services/{SECRET}") == "https://hooks.slack.com/…"
    assert redact_url("http://u:p@localhost:8080/x?y=1") == "http://localhost:8080/…"
    check_webhook_url("https://example.org/hook")
    with pytest.raises(ValueError) as info:
        check_webhook_url(f"hooks.slack.com/services/{SECRET}")
    assert SECRET not in str(info.value)


def test_command_gets_the_alert_on_stdin_and_in_env(tmp_path: Path) -> None:
    out = tmp_path / "alert.json"
    env_out = tmp_path / "env.txt"
    command = f"cat > {out} && echo \"$TBMON_RUN $TBMON_KIND $TBMON_SEVERITY\" > {env_out}"
    reports: list[str] = []
    notifier = CommandNotifier(command, reports.append)
    notifier.submit(ALERT)
    notifier.close(10)
    assert json.loads(out.read_text()) == ALERT
    assert env_out.read_text().split() == ["exp1", "divergence", "critical"]
    assert reports == []


def test_pages_name_the_incident_they_open_or_escalate(tmp_path: Path, hook: Hook) -> None:
    """Issue 11 item 2: the second page of one blow-up must read as the same incident, not a new one."""
    opened = {**ALERT, "severity": "warning", "incident": "exp1:instability@840", "incident_event": "opened",
              "incident_severity": "warning", "incident_alerts": 1}  # fmt: skip
    escalated = {**ALERT, "incident": "exp1:instability@840", "incident_event": "escalated",
                 "incident_severity": "critical", "incident_alerts": 2}  # fmt: skip
    notifier = WebhookNotifier(hook.url, [].append)
    for page in (opened, escalated):
        notifier.submit(page)
    wait_for(lambda: len(hook.bodies) == 2)
    notifier.close(5)
    assert hook.bodies[0]["text"] == (
        "[tbmon] WARNING divergence in run exp1 (train/loss, step 845): loss is NaN [incident exp1:instability@840]"
    )
    assert hook.bodies[1]["text"].startswith(
        "[tbmon] CRITICAL (incident exp1:instability@840 escalated, 2 alerts so far) divergence in run exp1"
    )
    assert hook.bodies[1]["incident_event"] == "escalated" and hook.bodies[1]["incident_alerts"] == 2
    env_out = tmp_path / "env.txt"
    command = CommandNotifier(f'echo "$TBMON_INCIDENT" > {env_out}', [].append)
    command.submit(escalated)
    command.close(10)
    assert env_out.read_text() == "exp1:instability@840\n"


def test_failing_command_is_reported_and_later_alerts_still_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    reports: list[str] = []
    failing = CommandNotifier(f"{sys.executable} -c 'import sys; sys.exit(\"boom\")'", reports.append)
    failing.submit(ALERT)
    failing.close(10)
    assert len(reports) == 1 and "exit status 1" in reports[0] and "boom" in reports[0]
    working = CommandNotifier(f"touch {marker}", reports.append)
    working.submit(ALERT)
    working.close(10)
    assert marker.exists()
