"""How tbmon prints a number for people: 4 significant digits, NaN/Inf spelled out (they are data)."""

from __future__ import annotations

import math


def fmt_number(value: float | None, missing: str = "–") -> str:
    """``1.859e+04``, ``0.1431``, ``nan``, ``-inf``; ``missing`` when there is no value."""
    if value is None:
        return missing
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"
