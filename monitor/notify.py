"""Alert delivery off the watch loop: a JSON webhook (Slack-compatible) and a user command.

Each notifier owns one daemon thread and a bounded queue, so a slow or dead endpoint delays
only its own deliveries, never the reading of event files. Failures are reported through a
callback as one line, with the webhook URL reduced to scheme and host: Slack and Discord
webhook URLs carry their secret token in the path.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from tbmon.monitor.sanitize import chat_text, json_ready

QUEUE_LIMIT = 1000
"""Alerts are episodes, not per-step events, so 1000 pending means the endpoint is dead; drop, don't grow."""

Report = Callable[[str], None]


def redact_url(url: str) -> str:
    """``scheme://host[:port]/…``: enough to tell which endpoint failed, nothing that authenticates."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def check_webhook_url(url: str) -> None:
    """Raise ``ValueError`` (with the URL redacted) unless ``url`` is an http(s) URL with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--notify-webhook needs an http:// or https:// URL with a host, got {redact_url(url)}")


def alert_text(alert: dict[str, Any]) -> str:
    """The one line a chat channel shows (Slack's ``text`` field), names escaped for its markup."""
    where = ", ".join(str(part) for part in (alert.get("tag"), f"step {alert.get('step')}") if part)
    return chat_text(
        f"[tbmon] {str(alert.get('severity', '')).upper()} {alert.get('kind')} in run "
        f"{alert.get('run')} ({where}): {alert.get('message')}"
    )


class _Worker:
    """A daemon thread draining a bounded queue with ``deliver``; ``close`` waits a grace period."""

    def __init__(self, name: str, report: Report) -> None:
        self._report = report
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(QUEUE_LIMIT)
        self._dropped = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, alert: dict[str, Any]) -> None:
        """Queue ``alert`` (a contract alert dict); never blocks the caller."""
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self._dropped += 1
            if self._dropped == 1:
                self._report(f"{self.describe()}: queue full, dropping alerts")

    def close(self, timeout: float) -> None:
        """Let pending deliveries finish for up to ``timeout`` seconds, then give up on them."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _loop(self) -> None:
        while (alert := self._queue.get()) is not None:
            try:
                self.deliver(alert)
            except Exception as exc:  # noqa: BLE001 - a notifier must never kill its thread
                self._report(f"{self.describe()}: {type(exc).__name__}: {exc}")

    def describe(self) -> str:
        raise NotImplementedError

    def deliver(self, alert: dict[str, Any]) -> None:
        raise NotImplementedError


class WebhookNotifier(_Worker):
    """POST each alert as JSON: ``text`` (what Slack/Mattermost display) plus the contract fields.

    Retries connection errors, timeouts, HTTP 429 and 5xx with exponential backoff; other 4xx
    answers mean the request itself is wrong, so retrying would not help.
    """

    def __init__(
        self,
        url: str,
        report: Report,
        *,
        timeout: float = 5.0,
        attempts: int = 4,
        backoff: float = 0.5,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        super().__init__("tbmon-webhook", report)

    def describe(self) -> str:
        return f"webhook {redact_url(self.url)}"

    def deliver(self, alert: dict[str, Any]) -> None:
        body = json.dumps(json_ready({"text": alert_text(alert), **alert})).encode()
        last_error = ""
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(
                self.url, data=body, method="POST", headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    response.read()
                return
            except urllib.error.HTTPError as exc:
                last_error = f"HTTP {exc.code}"
                if exc.code != 429 and exc.code < 500:
                    break
            except ValueError as exc:  # malformed URL; its text may quote the secret, so name the type only
                last_error = type(exc).__name__
                break
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                last_error = f"{type(reason).__name__}: {reason}" if isinstance(reason, Exception) else str(reason)
        self._report(f"{self.describe()}: alert not delivered ({last_error}; {alert.get('kind')} in {alert.get('run')})")


class CommandNotifier(_Worker):
    """Run a shell command per alert with the alert JSON on stdin (like a git hook).

    The command is the user's own, so it goes through the shell to allow pipes; it also gets
    ``TBMON_RUN``, ``TBMON_KIND``, ``TBMON_SEVERITY`` in its environment for one-liners.
    """

    def __init__(self, command: str, report: Report, *, timeout: float = 30.0) -> None:
        self.command = command
        self.timeout = timeout
        super().__init__("tbmon-on-alert", report)

    def describe(self) -> str:
        program = self.command.split()[:1] or [""]
        return f"--on-alert command {program[0]!r}"

    def deliver(self, alert: dict[str, Any]) -> None:
        env = {
            **os.environ,
            "TBMON_RUN": str(alert.get("run")),
            "TBMON_KIND": str(alert.get("kind")),
            "TBMON_SEVERITY": str(alert.get("severity")),
        }
        try:
            done = subprocess.run(
                self.command,
                shell=True,
                input=(json.dumps(json_ready(alert)) + "\n").encode(),  # a line: `read` and line tools need the newline
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            self._report(f"{self.describe()}: timed out after {self.timeout:g} s")
            return
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            self._report(f"{self.describe()}: exit status {done.returncode} {tail[0]}".rstrip())
