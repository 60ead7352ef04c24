"""What a framework callback does with the guard's alerts: warn, stop, or checkpoint and stop.

The guard raises alerts on the shim's writer thread; acting on them (printing, stopping the
trainer, saving a checkpoint) must happen on the training thread, at a hook. So the handler
here only queues and the callbacks call ``take_pending``/``stop_alert`` from their hooks.
"""

from __future__ import annotations

import collections
import logging
import math
import os
from typing import Any

from tbmon.analyzers.alerts import SEVERITIES, Alert, severity_rank
from tbmon.monitor.alert_lines import alert_record, plain_line

POLICIES = ("warn", "stop", "checkpoint_and_stop")
logger = logging.getLogger("tbmon")


class AlertPolicy:
    """``on_alert`` and ``severity`` as the user chose them, and the alerts waiting to be acted on.

    Alerts at or above ``severity`` are logged as warnings (below it: info) and, unless the
    policy is ``warn``, the first of them asks the trainer to stop.
    """

    def __init__(self, on_alert: str, severity: str) -> None:
        if on_alert not in POLICIES:
            raise ValueError(f"TbmonCallback(on_alert={on_alert!r}): choose one of {', '.join(POLICIES)}")
        if severity not in SEVERITIES:
            raise ValueError(f"TbmonCallback(severity={severity!r}): choose one of {', '.join(SEVERITIES)}")
        self.on_alert = on_alert
        self.severity = severity
        self.stop_alert: Alert | None = None
        self._pending: collections.deque[Alert] = collections.deque()

    @property
    def stops(self) -> bool:
        return self.on_alert != "warn"

    @property
    def checkpoints(self) -> bool:
        return self.on_alert == "checkpoint_and_stop"

    def handle(self, alert: Alert) -> None:
        """The shim's ``on_alert`` (writer thread): queue it, and note the first one that stops."""
        self._pending.append(alert)
        if self.stops and self.stop_alert is None and severity_rank(alert.severity) >= severity_rank(self.severity):
            self.stop_alert = alert

    def report_pending(self, logdir: str) -> None:
        """Log the alerts raised since the last call (training thread)."""
        while self._pending:
            alert = self._pending.popleft()
            level = logging.WARNING if severity_rank(alert.severity) >= severity_rank(self.severity) else logging.INFO
            logger.log(level, "tbmon: %s", plain_line(alert_record(alert, logdir)))

    def report_stop(self, logdir: str, step: int, checkpoint: str | None) -> None:
        assert self.stop_alert is not None
        saved = f"; checkpoint saved to {checkpoint}" if checkpoint else ""
        logger.warning(
            "tbmon: stopping training at step %d (on_alert=%r) because of: %s%s",
            step,
            self.on_alert,
            plain_line(alert_record(self.stop_alert, logdir)),
            saved,
        )


def known_nonfinite(value: Any) -> bool:
    """Whether ``value`` is a host number known to be NaN/Inf (a GPU tensor is not known without a sync)."""
    return isinstance(value, float) and not math.isfinite(value)


def checkpoint_path(logdir: str, step: int, suffix: str) -> str:
    """Where ``checkpoint_and_stop`` saves: beside the event files, named after the step."""
    return os.path.join(logdir, f"tbmon-stop-step{step}{suffix}")
