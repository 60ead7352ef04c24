"""One watcher per state file: an advisory lock beside it that names its holder.

Two watchers sharing a state file would both print and notify every alert and overwrite each
other's checkpoints. The lock is ``flock`` on ``STATE.lock`` (released by the kernel when the
holder exits, even by SIGKILL, so a crash never leaves a stale lock); the file's text says who
holds it, for the error message of the second watcher.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path


class StateBusy(Exception):
    """Another process holds the state file's lock; the message says which."""


class StateLock:
    """Held from ``acquire`` until ``release`` (or the process ends)."""

    def __init__(self, state_path: Path) -> None:
        self.state_path = state_path
        self.path = state_path.with_name(state_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``StateBusy`` naming the holder; ``OSError`` if the file cannot be made."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.read(fd, 4096))
            os.close(fd)
            raise StateBusy(holder) from None
        except OSError:
            os.close(fd)
            raise
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (deleting it would race a newcomer)
            self._fd = None


def _describe(text: bytes) -> str:
    """``pid 123 on host, since …`` from the holder's note, or a neutral phrase if it is unreadable."""
    try:
        note = json.loads(text)
        host, since = (_printable(str(note[k]))[:64] for k in ("host", "since"))
        return f"pid {int(note['pid'])} on {host}, since {since}"
    except (ValueError, KeyError, TypeError):
        return "another process"


def _printable(text: str) -> str:
    """The note is a file anyone could have edited: no control characters into the terminal."""
    return "".join(c for c in text if c.isprintable())
