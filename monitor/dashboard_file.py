"""The dashboard's ``-o FILE`` as Rich sees it: a text file whose write never raises.

Rich draws from a background thread and prints the final frame and the summary at exit; an
``OSError`` there (a full disk, a quota, a file-size limit, a terminal gone) would kill the
painter or end the watch with an internal error, and alerts would stop reaching the other
sinks. A dashboard is redrawn whole, so a frame that cannot be written is simply dropped: the
failure is said once on stderr, every later write retries, and recovery is said too.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable


class DashboardFile(io.TextIOBase):
    """Append-only text output to ``path`` for a Rich ``Console``; failed writes are dropped, not raised."""

    def __init__(self, path: str, say: Callable[[str], None]) -> None:
        super().__init__()
        self.name = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        self._say = say
        self.failing = False
        self._dropped = 0

    @property
    def encoding(self) -> str:  # type: ignore[override] - Rich reads it to choose box characters
        return "utf-8"

    def write(self, text: str) -> int:
        view = memoryview(text.encode("utf-8", "backslashreplace"))
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            if not self.failing:
                self._say(f"tbmon: cannot write the dashboard to {self.name}: {exc.strerror or exc}; "
                          "frames are dropped until it is writable again, alerts still reach every other sink, "
                          "watching goes on")
            self.failing = True
            self._dropped += 1
            return len(text)
        if self.failing:
            self.failing = False
            self._say(f"tbmon: {self.name} is writable again ({self._dropped} dashboard writes were dropped)")
            self._dropped = 0
        return len(text)

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()
