"""Alert delivery off the watch loop: a JSON webhook (Slack-compatible) and a user command.

Each notifier owns one daemon thread and a bounded queue, so a slow or dead endpoint delays
only its own deliveries, never the reading of event files. Failures are reported through a
callback as one line, with the webhook URL reduced to scheme and host: Slack and Discord
webhook URLs carry their secret token in the path. What an endpoint answers is data, not text
for the terminal: replies are summarised and escaped, and each notifier reports at most one
failure per ``REPORT_EVERY`` seconds (with a count of the ones it held back).

Every delivery ends with a result callback (delivered, refused for good, or to retry), which the
watcher's delivery ledger uses to retry later and to re-deliver after a restart (at-least-once,
``delivery.py``).
"""

from __future__ import annotations

import base64
import email.utils
import http.client
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
from urllib.parse import unquote, urlsplit, urlunsplit

from tbmon.monitor.delivery import DELIVERED, RETRY, RETRY_MAX, Outcome
from tbmon.monitor.sanitize import chat_text, json_ready

QUEUE_LIMIT = 1000
"""Alerts are episodes, not per-step events, so 1000 pending means the endpoint is dead: more are not
queued (memory stays bounded) but left to the delivery ledger, which retries them later."""

REPORT_EVERY = 60.0
"""At most one failure line per notifier per minute: a dead endpoint and 1,500 alerts make one line a minute, not 1,500."""

REPLY_CHARS = 80
"""How much of a malformed reply a failure line quotes (escaped): enough to recognise, not to flood."""

WEBHOOK_ENV = "TBMON_WEBHOOK_URL"
"""Environment variable with webhook URL(s), whitespace-separated: unlike arguments, not shown by ``ps``."""

Report = Callable[[str], None]
Done = Callable[[Outcome], None]
"""Called once per submitted alert, on the notifier's thread: delivered (or refused for good), or to retry."""

RETRIED_4XX = (408, 429)
"""Client errors that mean "not now" (timeout, rate limit), not "never": retried like 5xx."""


def redact_url(url: str) -> str:
    """``scheme://host[:port]/…``: enough to tell which endpoint failed, nothing that authenticates."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def check_webhook_url(url: str) -> None:
    """Raise ``ValueError`` (with the URL redacted) unless ``url`` is an http(s) URL with a host."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError("a webhook URL could not be parsed (not shown: it may hold a secret)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"a webhook needs an http:// or https:// URL with a host, got {redact_url(url)}")


def webhook_urls(arguments: list[str], files: list[str], environ: dict[str, str]) -> list[str]:
    """The webhook URLs from ``--notify-webhook``, ``--notify-webhook-file`` and ``TBMON_WEBHOOK_URL``.

    A file holds one URL per line (blank lines and ``#`` comments ignored). Raises ``ValueError``
    for an unreadable file or a malformed URL, without quoting the URL's secret.
    """
    urls = list(arguments)
    for name in files:
        try:
            with open(name, encoding="utf-8") as handle:
                lines = handle.read(1 << 20).splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read --notify-webhook-file {name}: {getattr(exc, 'strerror', None) or exc}") from None
        urls += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    urls += environ.get(WEBHOOK_ENV, "").split()
    for url in urls:
        check_webhook_url(url)
    return list(dict.fromkeys(urls))


def split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """``http://user:pass@host/…`` → the URL without them and a Basic ``Authorization`` header.

    urllib would take ``user:pass@host`` for the host name and fail every delivery.
    """
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, {}
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    token = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
    plain = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return plain, {"Authorization": "Basic " + base64.b64encode(token).decode("ascii")}


def visible(text: str, limit: int = REPLY_CHARS) -> str:
    """``text`` safe for one status line: control characters as escapes, cut to ``limit`` characters."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[: limit * 2])
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


class Throttle:
    """Pass the first report at once, then at most one per ``every`` s with a count of those held back."""

    def __init__(self, report: Report, every: float = REPORT_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        self._report = report
        self._every = every
        self._clock = clock
        self._last = -float("inf")
        self._held = 0
        self._lock = threading.Lock()

    def __call__(self, message: str) -> None:
        with self._lock:
            now = self._clock()
            if now - self._last < self._every:
                self._held += 1
                return
            held, self._held, self._last = self._held, 0, now
        self._report(message + (f" ({held} more failures held back since the last such line)" if held else ""))

    def now(self, message: str) -> None:
        """Report at once, throttle or not (news the user must see), and restart the interval."""
        with self._lock:
            self._last = self._clock()
        self._report(message)

    def flush(self) -> None:
        """Say how many were held back since the last report (at exit)."""
        with self._lock:
            held, self._held = self._held, 0
        if held:
            self._report(f"... and {held} more {'failure' if held == 1 else 'failures'} like the last one")


def alert_text(alert: dict[str, Any]) -> str:
    """The one line a chat channel shows (Slack's ``text`` field), names escaped for its markup.

    Only an incident's first alert and those that raise its severity are sent (``analyzers.incidents``):
    the line says which, so an escalation reads as the same incident, not a new one."""
    where = ", ".join(str(part) for part in (alert.get("tag"), f"step {alert.get('step')}") if part)
    escalated, opened = "", ""
    if alert.get("incident_event") == "opened":
        opened = f" [incident {alert.get('incident')}]"
    elif alert.get("incident_event") is not None:
        escalated = f"(incident {alert.get('incident')} escalated, {alert.get('incident_alerts')} alerts so far) "
    return chat_text(
        f"[tbmon] {str(alert.get('severity', '')).upper()} {escalated}{alert.get('kind')} in run "
        f"{alert.get('run')} ({where}): {alert.get('message')}{opened}"
    )


class _Worker:
    """A daemon thread draining a bounded queue with ``deliver``; ``close`` waits a grace period."""

    def __init__(self, name: str, report: Report) -> None:
        self._report = Throttle(report)
        self._refusals_said: set[int] = set()  # statuses already said at once, whatever the throttle held
        self._queue: queue.Queue[tuple[dict[str, Any], Done] | None] = queue.Queue(QUEUE_LIMIT)
        self._dropped = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, alert: dict[str, Any], done: Done = lambda outcome: None) -> bool:
        """Queue ``alert`` (a contract alert dict); never blocks. ``False``: queue full, not taken."""
        try:
            self._queue.put_nowait((alert, done))
        except queue.Full:
            self._dropped += 1
            if self._dropped == 1:
                self._report(f"{self.describe()}: queue full, holding alerts back to retry later")
            return False
        return True

    def close(self, timeout: float) -> None:
        """Let pending deliveries finish for up to ``timeout`` seconds, then give up on them."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)
        self._report.flush()

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            alert, done = item
            outcome = RETRY
            try:
                outcome = self.deliver(alert)
            except Exception as exc:  # noqa: BLE001 - a notifier must never kill its thread
                self._report(f"{self.describe()}: {type(exc).__name__}: {visible(str(exc))}")
            try:
                done(outcome)
            except Exception as exc:  # noqa: BLE001 - nor may the watcher's bookkeeping
                self._report(f"{self.describe()}: recording the delivery failed: {type(exc).__name__}")

    def describe(self) -> str:
        raise NotImplementedError

    def deliver(self, alert: dict[str, Any]) -> Outcome:
        """Deliver one alert: settled when the other side has it (or refused it for good). Reports its own failures."""
        raise NotImplementedError


class WebhookNotifier(_Worker):
    """POST each alert as JSON: ``text`` (what Slack/Mattermost display) plus the contract fields.

    Retries connection errors, timeouts, HTTP 408, 429 and 5xx with exponential backoff (the
    ledger then retries later, a 429 no sooner than its Retry-After). Any other 4xx means the
    request itself is wrong (a revoked token, a mistyped URL): retrying cannot help, so the
    alert is settled as refused, and the notifier says so with the status and the reply's gist.
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
        self._target, self._auth = split_credentials(url)
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        super().__init__("tbmon-webhook", report)

    def describe(self) -> str:
        return f"webhook {redact_url(self.url)}"

    def deliver(self, alert: dict[str, Any]) -> Outcome:
        body = json.dumps(json_ready({"text": alert_text(alert), **alert})).encode()
        last_error = ""
        retry_after = 0.0
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(
                self._target, data=body, method="POST", headers={"Content-Type": "application/json", **self._auth}
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    response.read(1 << 16)
                return DELIVERED
            except urllib.error.HTTPError as exc:
                last_error = f"HTTP {exc.code}"
                if 400 <= exc.code < 500 and exc.code not in RETRIED_4XX:
                    return self._refused(alert, exc)
                if exc.code == 429:
                    retry_after = retry_after_seconds(exc.headers.get("Retry-After"))
                    break  # the endpoint said when: the ledger waits that long, this thread does not
            except ValueError as exc:  # malformed URL; its text may quote the secret, so name the type only
                last_error = type(exc).__name__
                break
            except http.client.HTTPException as exc:  # not HTTP at all: quote a little of it, escaped
                last_error = f"malformed reply: {type(exc).__name__} {visible(str(exc))}".rstrip()
                break  # the same endpoint will answer the same; the ledger retries later
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                text = f"{type(reason).__name__}: {reason}" if isinstance(reason, Exception) else str(reason)
                last_error = visible(text)
        self._report(
            f"{self.describe()}: alert not delivered ({last_error}; {visible(str(alert.get('kind')), 40)} in "
            f"{visible(str(alert.get('run')), 60)}); it is kept and retried"
            + (f" in {retry_after:.0f} s as the endpoint asked" if retry_after else "")
        )
        return Outcome(settled=False, retry_after=retry_after)

    def _refused(self, alert: dict[str, Any], exc: urllib.error.HTTPError) -> Outcome:
        """A 4xx that retrying cannot fix: say so (status, reason, the reply's gist), settle the alert."""
        try:
            reply = exc.read(REPLY_CHARS * 4).decode("utf-8", errors="replace")
        except (OSError, http.client.HTTPException):
            reply = ""
        gist = " ".join(reply.split())
        say = self._report if exc.code in self._refusals_said else self._report.now
        self._refusals_said.add(exc.code)
        say(
            f"{self.describe()}: refused with HTTP {exc.code} {visible(str(exc.reason or ''), 40)}".rstrip()
            + (f" ({visible(gist)})" if gist else "")
            + f"; {visible(str(alert.get('kind')), 40)} in {visible(str(alert.get('run')), 60)} is not retried: "
            "check the webhook URL and its token"
        )
        return Outcome(settled=True)


class CommandNotifier(_Worker):
    """Run a shell command per alert with the alert JSON on stdin (like a git hook).

    The command is the user's own, so it goes through the shell to allow pipes; it also gets
    ``TBMON_RUN``, ``TBMON_KIND``, ``TBMON_SEVERITY``, ``TBMON_INCIDENT`` in its environment for one-liners.
    """

    def __init__(self, command: str, report: Report, *, timeout: float = 30.0) -> None:
        self.command = command
        self.timeout = timeout
        super().__init__("tbmon-on-alert", report)

    def describe(self) -> str:
        program = self.command.split()[:1] or [""]
        return f"--on-alert command {program[0]!r}"

    def deliver(self, alert: dict[str, Any]) -> Outcome:
        env = {
            **os.environ,
            "TBMON_RUN": str(alert.get("run")),
            "TBMON_KIND": str(alert.get("kind")),
            "TBMON_SEVERITY": str(alert.get("severity")),
            "TBMON_INCIDENT": str(alert.get("incident", "")),
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
            self._report(f"{self.describe()}: timed out after {self.timeout:g} s; the alert is kept and retried")
            return RETRY
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            self._report(f"{self.describe()}: exit status {done.returncode} {visible(tail[0])}".rstrip() + "; retried later")
            return RETRY
        return DELIVERED


def retry_after_seconds(value: str | None) -> float:
    """An HTTP ``Retry-After`` (seconds or an HTTP date) as seconds from now, within ``[0, RETRY_MAX]``;
    0 when absent or unreadable (an endpoint's header is data: it cannot park an alert for a year)."""
    if not value:
        return 0.0
    value = value.strip()
    try:
        seconds = float(value) if value.isdigit() else email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError, OverflowError, IndexError):
        return 0.0
    return min(max(seconds, 0.0), RETRY_MAX)
