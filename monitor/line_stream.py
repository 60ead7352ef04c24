"""Where ``watch`` writes its lines (stdout or ``-o FILE``), so that a failed write loses nothing.

A buffered text stream that hits ENOSPC keeps half a line in its buffer and replays it into a
later write; a killed process leaves half a line in the file. Each line is written here with
``os.write`` as one unit instead: when a write to a regular file fails part-way, the file is cut
back to where the line began, so the file holds whole lines only and the caller knows exactly
which lines did not land (the watcher keeps those alerts and retries them).
"""

from __future__ import annotations

import os
import stat
import sys
from typing import IO


class LineStream:
    """Whole-line writes to one file descriptor (or, without one, to a text stream)."""

    def __init__(self, name: str, fd: int | None = None, text: IO[str] | None = None, owned: bool = False) -> None:
        self.name = name
        self._fd = fd
        self._text = text
        self._owned = owned
        self._regular = fd is not None and stat.S_ISREG(os.fstat(fd).st_mode)

    @classmethod
    def open(cls, path: str) -> LineStream:
        """Append to ``path`` (created if missing); raises ``OSError`` when it cannot be opened."""
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        return cls(path, fd=fd, owned=True)

    @classmethod
    def stdout(cls) -> LineStream:
        """Standard output: its file descriptor when it has one (after flushing what Python buffered)."""
        try:
            sys.stdout.flush()
            return cls("standard output", fd=sys.stdout.fileno())
        except (AttributeError, OSError, ValueError):  # replaced by a stream without a descriptor
            return cls("standard output", text=sys.stdout)

    def write(self, line: str) -> None:
        """Write ``line`` and a newline, all or nothing on a regular file; raises ``OSError``."""
        data = (line + "\n").encode("utf-8", "backslashreplace")
        if self._fd is None:
            assert self._text is not None
            self._text.write(line + "\n")
            self._text.flush()
            return
        start = os.fstat(self._fd).st_size if self._regular else 0
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:
            if self._regular and len(view) < len(data):
                try:
                    os.ftruncate(self._fd, start)  # no half line for readers, none to replay later
                except OSError:
                    pass
            raise

    def close(self) -> None:
        if self._owned and self._fd is not None:
            os.close(self._fd)
            self._fd = None
