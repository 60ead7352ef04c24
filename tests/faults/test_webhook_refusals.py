"""Issue 15, webhook answers: a 4xx that means "never" is said once and not retried; "not now" is.

Real ``tbmon watch`` processes against a real HTTP server on 127.0.0.1 whose answers are scripted
per path: a refusing endpoint (403 with a hostile body), a healthy one, and a rate-limited one
(429 with ``Retry-After``). Before: a 403 was retried every 2 s, doubling to 5 min, forever, and
repeated after every restart; a 429's Retry-After was ignored.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.faults.test_delivery_faults import WAIT, alert_runs, diverged_runs, json_lines, procs, start_watch, stop, wait_until
from tests.monitor.test_notify import SECRET

__all__ = ["procs"]  # the fixture, imported for the tests below

REFUSAL_BODY = b'{"ok":false,"error":"invalid_token"}\x1b[2J\x1b]0;owned\x07' + b" " * 100 + b"x" * 3000
RUNS = ["exp1", "exp2", "exp3"]


class Endpoints:
    """One HTTP server; ``/refuse/…`` answers 403 and a hostile body, ``/limit/…`` answers 429
    with ``Retry-After`` to its first request, everything else 200. Records (path, run, time)."""

    def __init__(self, retry_after: str = "3") -> None:
        self.posts: list[tuple[str, str, float]] = []
        self._limited = False
        endpoints = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                kind = self.path.split("/")[1]
                endpoints.posts.append((kind, body["run"], time.monotonic()))
                if kind == "refuse":
                    self.send_response(403)
                    self.send_header("Content-Length", str(len(REFUSAL_BODY)))
                    self.end_headers()
                    self.wfile.write(REFUSAL_BODY)
                    return
                if kind == "limit" and not endpoints._limited:
                    endpoints._limited = True
                    self.send_response(429)
                    self.send_header("Retry-After", retry_after)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, kind: str) -> str:
        return f"{self.base}/{kind}/{SECRET}"

    def runs(self, kind: str) -> list[str]:
        return [run for k, run, _ in self.posts if k == kind]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoints() -> Iterator[Endpoints]:
    server = Endpoints()
    yield server
    server.close()


def _statuses(out: Path) -> list[str]:
    return [r["message"] for r in json_lines(out) if r.get("type") == "status"]


def test_refused_webhook_is_said_once_not_retried_and_other_sinks_get_everything(
    tmp_path: Path, endpoints: Endpoints, procs: list[Any]
) -> None:
    logdir, state, out, got = tmp_path / "logs", tmp_path / "state.json", tmp_path / "out.jsonl", tmp_path / "got.jsonl"
    diverged_runs(logdir, RUNS)
    hooks = tmp_path / "hooks.txt"
    hooks.write_text(f"{endpoints.url('refuse')}\n{endpoints.url('ok')}\n")
    args = ("--state", str(state), "-o", str(out), "--notify-webhook-file", str(hooks),
            "--on-alert", f"cat >> {got}; echo >> {got}", str(logdir))
    watcher = start_watch(*args, stderr=tmp_path / "err")
    procs.append(watcher)
    wait_until(lambda: sorted(endpoints.runs("ok")) == RUNS and sorted(alert_runs(got)) == RUNS, what="every delivery")
    time.sleep(7)  # retries were due at 2 s and 6 s: a refused alert must get none of them
    assert sorted(endpoints.runs("refuse")) == RUNS  # one POST per alert, no retry
    assert stop(watcher) == 1

    refusals = [m for m in _statuses(out) if "refused with HTTP 403" in m]
    assert len(refusals) == 1, _statuses(out)  # said once (later ones of the same status: throttled)
    line = refusals[0]
    assert "Forbidden" in line and "invalid_token" in line and "check the webhook URL" in line
    assert "\x1b" not in line and "\\x1b" in line and len(line) < 400  # the reply: escaped and summarised
    assert SECRET not in out.read_text() + (tmp_path / "err").read_text()
    assert sorted(alert_runs(out)) == RUNS and "Traceback" not in (tmp_path / "err").read_text()

    # a restart does not deliver the refused alerts again: they were settled, not left owed
    again = start_watch(*args, stderr=tmp_path / "err")
    procs.append(again)
    wait_until(lambda: sum(m.startswith("following") for m in _statuses(out)) == 2, what="the restarted watcher")
    time.sleep(3)
    assert stop(again) == 1
    assert sorted(endpoints.runs("refuse")) == RUNS and sorted(endpoints.runs("ok")) == RUNS


def test_rate_limited_webhook_is_retried_no_sooner_than_retry_after(
    tmp_path: Path, endpoints: Endpoints, procs: list[Any]
) -> None:
    """429 with ``Retry-After: 3`` to the first POST: that alert comes again after >= 3 s (the
    ledger's own first retry would be at 2 s), the others go through at once, none is lost."""
    logdir, out = tmp_path / "logs", tmp_path / "out.jsonl"
    diverged_runs(logdir, RUNS)
    watcher = start_watch("--no-state", "-o", str(out), str(logdir), stderr=tmp_path / "err",
                          env={"TBMON_WEBHOOK_URL": endpoints.url("limit")})
    procs.append(watcher)
    wait_until(lambda: len(endpoints.runs("limit")) == len(RUNS) + 1, timeout=WAIT, what="the retried delivery")
    assert stop(watcher) == 1
    first_run, first_at = endpoints.posts[0][1:]
    retried_at = [at for _, run, at in endpoints.posts[1:] if run == first_run]
    assert len(retried_at) == 1 and retried_at[0] - first_at >= 2.9
    assert sorted(set(endpoints.runs("limit"))) == RUNS
    assert any("retried in 3 s as the endpoint asked" in m for m in _statuses(out))
