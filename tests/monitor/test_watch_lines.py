"""Plain and JSON-line renderings of the watcher's records."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest

from tbmon.analyzers.alerts import Alert
from tbmon.monitor.alert_lines import (
    alert_record,
    json_line,
    plain_line,
    problem_record,
    run_record,
    status_record,
    summary_record,
)
from tbmon.analyzers.incidents import IncidentTracker
from tbmon.monitor.event_file import ReadProblem

NAN_ALERT = Alert("exp1", "divergence", "critical", 845, 1763900000.0, "train/loss", "loss is NaN", {"value": float("nan")})


def test_alert_line_is_the_contract_fields_plus_type_and_strict_json() -> None:
    line = json_line(alert_record(NAN_ALERT, "/logs"))
    data = json.loads(line, parse_constant=lambda token: pytest.fail(f"bare {token} in JSON"))
    assert "\n" not in line and data["evidence"] == {"value": "nan"}
    assert data["type"] == "alert" and data["logdir"] == "/logs"
    assert {k: data[k] for k in NAN_ALERT.to_dict()} == NAN_ALERT.to_dict()


def test_plain_alert_line_names_everything_on_one_line() -> None:
    line = plain_line(alert_record(NAN_ALERT, "/logs"))
    when = time.strftime("%H:%M:%S", time.localtime(1763900000.0))
    assert line == f"{when} CRITICAL divergence run=exp1 tag=train/loss step=845: loss is NaN"
    run_wide = plain_line(alert_record(dataclasses.replace(NAN_ALERT, kind="stalled", severity="info", tag=""), "/logs"))
    assert run_wide == f"{when} INFO     stalled run=exp1 step=845: loss is NaN"  # no empty "tag="


def test_other_records_render_in_both_forms() -> None:
    problem = problem_record(ReadProblem("/logs/r/events", 120, "bad_data_crc", "record skipped", 40), "/logs")
    assert json.loads(json_line(problem))["type"] == "problem"
    assert plain_line(problem) == "tbmon: problem (bad_data_crc) in /logs/r/events @ byte 120: record skipped"
    assert plain_line(run_record("/logs", "r2", "new")) == "tbmon: new run: r2 (in /logs)"
    assert plain_line(status_record("waiting for /x")) == "tbmon: waiting for /x"
    summary = summary_record(3, [NAN_ALERT], 1, 1, 0, 1)
    assert summary["alerts"] == {"info": 0, "warning": 0, "critical": 1}
    assert plain_line(summary) == "tbmon: 3 runs, 1 alert (0 info, 0 warning, 1 critical; 1 new); exit code 1"
    grouped = summary_record(3, [NAN_ALERT] * 4, 4, 1, 0, 1)
    assert plain_line(grouped) == "tbmon: 3 runs, 4 alerts in 1 incident (0 info, 0 warning, 4 critical; 4 new); exit code 1"


def test_plain_lines_say_which_incident_an_alert_opens_escalates_or_updates() -> None:
    """Issue 11 item 2: a person reading the log sees one incident growing, not four separate alarms."""
    tracker = IncidentTracker()
    spike = dataclasses.replace(NAN_ALERT, severity="warning", step=840, message="jumped")
    lines = [plain_line({**alert_record(a, "/logs"), **tracker.add(a).fields()}) for a in (spike, NAN_ALERT, NAN_ALERT)]
    when = time.strftime("%H:%M:%S", time.localtime(1763900000.0))
    assert lines[0] == f"{when} WARNING  divergence run=exp1 tag=train/loss step=840 incident=exp1:instability@840: jumped"
    assert lines[1] == (f"{when} CRITICAL divergence run=exp1 tag=train/loss step=845 incident=exp1:instability@840 "
                        "(escalated to critical, alert 2 of it): loss is NaN")
    assert lines[2].endswith("incident=exp1:instability@840 (update: alert 3 of it, incident critical): loss is NaN")
