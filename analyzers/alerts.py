"""The alert record every rule emits and every output format prints (contract: "Alerts")."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

SEVERITIES = ("info", "warning", "critical")
"""Ordered from least to most severe; `--fail-on` compares by position in this tuple."""


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


def json_safe(value: Any) -> Any:
    """JSON has no NaN/Inf: encode them as strings so a diverged run still yields valid JSON."""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item"):  # numpy scalar
        return json_safe(value.item())
    return value


@dataclass(frozen=True, slots=True)
class Alert:
    run: str
    kind: str
    severity: str
    step: int
    wall_time: float
    tag: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def key(self) -> tuple[str, str, str, int]:
        """Identity of the episode: one alert per (run, kind, tag) episode, starting at `step`."""
        return (self.run, self.kind, self.tag, self.step)

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "run": self.run,
                "kind": self.kind,
                "severity": self.severity,
                "step": int(self.step),
                "wall_time": float(self.wall_time),
                "tag": self.tag,
                "message": self.message,
                "evidence": self.evidence,
            }
        )


def alerts_frame(alerts: Iterable[Alert]) -> pd.DataFrame:
    """Alerts as a pandas DataFrame, one row each, columns in contract order (``evidence`` a dict
    per row; NaN stays a float here, unlike JSON): filter, group and join them like ``read()``'s
    frames, e.g. ``alerts_frame(analyze("logs/")).query("severity == 'critical'")``. The last column,
    ``incident``, groups each run's causally linked alerts as ``report`` and ``watch`` do."""
    import pandas as pd

    from tbmon.analyzers.incidents import group_alerts  # it imports this module

    alerts = list(alerts)
    assignments, _ = group_alerts(alerts)
    rows = [{**asdict(a), "incident": assignments[a.key()].incident} for a in alerts]
    columns = [f.name for f in fields(Alert)] + ["incident"]
    return pd.DataFrame(rows, columns=columns).astype({"step": "int64", "wall_time": "float64"})
