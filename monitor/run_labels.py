"""Run names that fit a dashboard column and still tell the runs apart.

Nested run directories (Lightning's ``project/group/2024-06-01_…/lightning_logs/version_3``)
share long beginnings, so cutting them at the end makes every row look the same. Instead the
leading directories all runs share are dropped (the dashboard shows them once), and a name still
too long loses its middle: it keeps a head and its tail, where runs usually differ (the version,
the seed), and where two shortened names would still coincide the cut moves until they differ.

Widths are terminal cells (a CJK character takes two). Names come in already made visible by
:func:`tbmon.monitor.sanitize.visible`; nothing here escapes them again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from rich.cells import cell_len, get_character_cell_size

ELLIPSIS = "…"


def common_prefix(labels: Sequence[str]) -> str:
    """The leading directories (with their ``/``) that every label shares; "" for fewer than two labels.

    Never a whole label: each keeps at least its last path component.
    """
    if len(labels) < 2:
        return ""
    shared: list[str] = []
    for parts in zip(*(label.split("/")[:-1] for label in labels)):
        if any(part != parts[0] for part in parts):
            break
        shared.append(parts[0])
    return "".join(f"{part}/" for part in shared)


def fit_labels(labels: Sequence[str], width: int) -> list[str]:
    """Each label in at most ``width`` cells, elided in the middle; distinct labels stay distinct where the width allows."""
    fitted = [_elide(label, _preferred_tail(label, width), width) for label in labels]
    groups: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(fitted):
        groups[label].append(index)
    for members in groups.values():
        if len(members) < 2 or len({labels[i] for i in members}) < 2:
            continue  # unique, or the same name twice (two logdirs): nothing to tell apart
        _separate(labels, fitted, members, width)
    return fitted


def _separate(labels: Sequence[str], fitted: list[str], members: list[int], width: int) -> None:
    """Move the cut of the ``members`` (which collide) until they differ from each other and from the rest."""
    others = {label for index, label in enumerate(fitted) if index not in members}
    for shift in _shifts(width):
        trial = [_elide(labels[i], _preferred_tail(labels[i], width) + shift, width) for i in members]
        if len(set(trial)) == len(trial) and not others.intersection(trial):
            for index, label in zip(members, trial):
                fitted[index] = label
            return


def _shifts(width: int) -> list[int]:
    """0, -1, 1, -2, 2, ...: the nearest cuts first (a longer head, then a longer tail)."""
    return [sign * step for step in range(width) for sign in ((1,) if step == 0 else (-1, 1))]


def _preferred_tail(label: str, width: int) -> int:
    """Cells kept at the end: the last component with its ``/``, leaving at least a third of the width to the head."""
    last = label.rsplit("/", 1)[-1]
    return min(cell_len(last) + (1 if "/" in label else 0), width - 1 - (width - 1) // 3)


def _elide(label: str, tail: int, width: int) -> str:
    """``label`` itself when it fits, else ``head…tail`` in ``width`` cells with ``tail`` cells kept at the end."""
    if cell_len(label) <= width:
        return label
    if width < 2:
        return ELLIPSIS[:width]
    tail = max(0, min(tail, width - 1))
    return _head(label, width - 1 - tail) + ELLIPSIS + _tail(label, tail)


def _head(text: str, cells: int) -> str:
    used = 0
    for index, char in enumerate(text):
        used += get_character_cell_size(char)
        if used > cells:
            return text[:index]
    return text


def _tail(text: str, cells: int) -> str:
    return _head(text[::-1], cells)[::-1]
