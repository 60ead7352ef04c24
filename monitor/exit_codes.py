"""Exit codes of the contract, and the one exception type that carries a user-facing reason."""

from __future__ import annotations

from collections.abc import Iterable

from tbmon.analyzers.alerts import Alert, severity_rank

OK = 0
ALERTS = 1
BAD_INPUT = 2

FAIL_ON_CHOICES = ("info", "warning", "critical", "never")


class UsageError(Exception):
    """Bad usage or unreadable input. The CLI prints ``tbmon: <message>`` and exits 2, no traceback."""


def exit_code_for(alerts: Iterable[Alert], fail_on: str) -> int:
    """0 when nothing is at or above ``fail_on``, 1 otherwise (``never`` always gives 0)."""
    if fail_on == "never":
        return OK
    threshold = severity_rank(fail_on)
    return ALERTS if any(severity_rank(a.severity) >= threshold for a in alerts) else OK
