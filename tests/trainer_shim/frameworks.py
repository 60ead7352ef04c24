"""What the framework tests share: `tbmon report --format json` run as users run it, and alert identity."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tbmon.analyzers import Alert


def report_alerts(logdir: str | Path) -> list[dict[str, Any]]:
    """The alerts of ``tbmon report LOGDIR --format json`` (a real CLI process)."""
    done = subprocess.run(
        [sys.executable, "-m", "tbmon.monitor.cli", "report", str(logdir), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)["alerts"]


def identity(alert: Alert | dict[str, Any]) -> tuple[Any, ...]:
    """What must agree between the guard and `tbmon report` (report adds the episode's length)."""
    d = alert.to_dict() if isinstance(alert, Alert) else alert
    return (d["run"], d["kind"], d["severity"], d["step"], d["tag"], d["message"])
