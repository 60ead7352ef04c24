"""An 8-level Unicode block sparkline: Rich has no sparkline renderable, and Textual is too big for one row."""

from __future__ import annotations

import math
from collections.abc import Sequence

BLOCKS = "▁▂▃▄▅▆▇█"
NON_FINITE = "×"  # a NaN/Inf loss must stand out in the trend, not vanish from it


def sparkline(values: Sequence[float], width: int | None = None) -> str:
    """One glyph per value (or per bucket of values when there are more than ``width``).

    Buckets average their finite values; a bucket holding any NaN/Inf shows ``×``, so a
    divergence is never averaged away. The scale spans the finite minimum to maximum.
    """
    buckets = _bucket(list(values), width)
    finite = [v for v in buckets if v is not None]
    if not finite:
        return NON_FINITE * len(buckets)
    low, high = min(finite), max(finite)
    span = high - low
    glyphs = []
    for value in buckets:
        if value is None:
            glyphs.append(NON_FINITE)
        elif span <= 0:
            glyphs.append(BLOCKS[len(BLOCKS) // 2])
        else:
            level = int((value - low) / span * (len(BLOCKS) - 1) + 0.5)
            glyphs.append(BLOCKS[level])
    return "".join(glyphs)


def _bucket(values: list[float], width: int | None) -> list[float | None]:
    """Average consecutive values into at most ``width`` buckets; ``None`` marks a non-finite bucket."""
    if width is None or len(values) <= width:
        groups = [[v] for v in values]
    else:
        groups = [values[i * len(values) // width : (i + 1) * len(values) // width] for i in range(width)]
    out: list[float | None] = []
    for group in groups:
        if not all(map(math.isfinite, group)):  # (map: a report of dense runs buckets every point)
            out.append(None)
        else:
            out.append(sum(group) / len(group))
    return out
