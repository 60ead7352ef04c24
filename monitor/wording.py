"""Small wording helpers shared by every human-facing output."""

from __future__ import annotations


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 alert``, ``2 alerts``, ``0 alerts``; ``many`` for irregular plurals."""
    return f"{count} {word}" if count == 1 else f"{count} {many or word + 's'}"
