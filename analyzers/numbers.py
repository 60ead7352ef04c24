"""How tbmon prints a number for people: 4 significant digits, NaN/Inf spelled out (they are data).

One formatter for alert messages and for the report and dashboard around them, so a value reads
the same in the sentence and in the table next to it.
"""

from __future__ import annotations

import math


def fmt_number(value: float | None, missing: str = "–") -> str:
    """``1.859e+04``, ``0.1431``, ``NaN``, ``-inf``; ``missing`` when there is no value."""
    if value is None:
        return missing
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"
