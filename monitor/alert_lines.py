"""One-line renderings of watcher events: plain text for logs, JSON lines for machines.

Every record is a flat dict with a ``type`` (contract: alert lines are ``"type": "alert"`` plus
the contract alert fields); the plain form of each is one line a person can grep. Both forms
are built from the same record so they never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tbmon.analyzers.alerts import SEVERITIES, Alert, json_safe
from tbmon.monitor.sanitize import clock_time, json_ready, visible
from tbmon.monitor.wording import plural

if TYPE_CHECKING:
    from tbmon.monitor.event_file import ReadProblem


def alert_record(alert: Alert, logdir: str) -> dict[str, Any]:
    """The jsonl alert line: ``type``, the contract fields, and which logdir the run is under."""
    return {"type": "alert", **alert.to_dict(), "logdir": logdir}


def problem_record(problem: ReadProblem, logdir: str) -> dict[str, Any]:
    """A reader problem (corrupt record, unreadable file or directory, ...) as a ``problem`` line."""
    return {
        "type": "problem",
        "logdir": logdir,
        "path": problem.path,
        "kind": problem.kind,
        "offset": problem.offset,
        "skipped_bytes": problem.skipped_bytes,
        "count": problem.count,
        "message": problem.message,
    }


def run_record(logdir: str, run: str, event: str) -> dict[str, Any]:
    """A run appeared (``event="new"``) or its directory went away (``"removed"``)."""
    return {"type": "run", "event": event, "logdir": logdir, "run": run}


def status_record(message: str) -> dict[str, Any]:
    """Something about the watcher itself (backend, waiting for a logdir, a failed webhook)."""
    return {"type": "status", "message": message}


def summary_record(
    runs: int, alerts: list[Alert], new_alerts: int, exit_code: int, problems: int, incidents: int
) -> dict[str, Any]:
    """The closing line: runs followed, alerts by severity and the incidents they form (all known, incl. earlier sessions)."""
    by_severity = {severity: 0 for severity in SEVERITIES}
    for alert in alerts:
        by_severity[alert.severity] = by_severity.get(alert.severity, 0) + 1
    return {
        "type": "summary",
        "runs": runs,
        "alerts": by_severity,
        "alerts_total": len(alerts),
        "incidents": incidents,
        "new_alerts": new_alerts,
        "problems": problems,
        "exit_code": exit_code,
    }


def json_line(record: Mapping[str, Any]) -> str:
    """Compact, always-valid JSON (NaN/Inf become strings, as in the alert contract; names valid UTF-8)."""
    return json.dumps(json_ready(json_safe(dict(record))), ensure_ascii=False, separators=(",", ":"))


def plain_line(record: Mapping[str, Any]) -> str:
    """The human one-liner for any record built above: one printable line whatever the names hold."""
    return visible(_plain_text(record))


def _plain_text(record: Mapping[str, Any]) -> str:
    kind = record["type"]
    if kind == "alert":
        when = clock_time(record["wall_time"])
        tag = f" tag={record['tag']}" if record["tag"] else ""  # run-wide alerts (stalled) have none
        return (
            f"{when} {record['severity'].upper():8} {record['kind']} run={record['run']}{tag} "
            f"step={record['step']}{_incident_text(record)}: {record['message']}"
        )
    if kind == "problem":
        where = f"{record['path']}" + (f" @ byte {record['offset']}" if record.get("offset") is not None else "")
        return f"tbmon: problem ({record['kind']}) in {where}: {record['message']}"
    if kind == "run":
        verb = "new run" if record["event"] == "new" else "run removed"
        return f"tbmon: {verb}: {record['run']} (in {record['logdir']})"
    if kind == "summary":
        counts = ", ".join(f"{n} {s}" for s, n in record["alerts"].items())
        problems = f", {plural(record['problems'], 'read problem')}" if record["problems"] else ""
        grouped = f" in {plural(record['incidents'], 'incident')}" if record["incidents"] < record["alerts_total"] else ""
        return (
            f"tbmon: {plural(record['runs'], 'run')}, {plural(record['alerts_total'], 'alert')}{grouped} ({counts}; "
            f"{record['new_alerts']} new){problems}; exit code {record['exit_code']}"
        )
    return f"tbmon: {record.get('message', '')}"


def _incident_text(record: Mapping[str, Any]) -> str:
    """`` incident=ID``, and for an alert that does not open its incident what it did to it."""
    if "incident" not in record:
        return ""
    event, count, severity = record["incident_event"], record["incident_alerts"], record["incident_severity"]
    if event == "escalated":
        return f" incident={record['incident']} (escalated to {severity}, alert {count} of it)"
    if event == "updated":
        return f" incident={record['incident']} (update: alert {count} of it, incident {severity})"
    return f" incident={record['incident']}"
