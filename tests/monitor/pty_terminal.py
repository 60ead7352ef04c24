"""A real pty of a given size with ``tbmon`` on it, and the screen a terminal would show.

The process writes to a pseudo-terminal (so Rich sees a terminal of ``columns`` x ``lines``);
what it writes goes through pyte, a VT100 emulator, so tests read the screen as a user sees it
(the last frame, cursor moves applied), not the byte stream of every redraw.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pyte

CLI = [sys.executable, "-m", "tbmon.monitor.cli"]


def drain(controller: int) -> bytes:
    """Everything a finished process wrote to a pty whose terminal side is closed; closes ``controller``."""
    drawn = bytearray()
    while select.select([controller], [], [], 1.0)[0]:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the terminal side is closed and drained
            break
        if not chunk:
            break
        drawn.extend(chunk)
    os.close(controller)
    return bytes(drawn)


class Terminal:
    """``tbmon *args`` on a ``columns`` x ``lines`` pty; ``screen()`` is the text shown now."""

    def __init__(self, *args: str | Path, columns: int = 120, lines: int = 40) -> None:
        self._screen = pyte.Screen(columns, lines)
        self._stream = pyte.ByteStream(self._screen)
        self.raw = bytearray()
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(lines)}
        self.proc = subprocess.Popen(
            [*CLI, *map(str, args)], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
        )
        os.close(slave)
        self._master = master

    def _read(self, timeout: float) -> bool:
        """Feed what arrived within ``timeout`` to the emulator; False once the child closed the terminal."""
        if not select.select([self._master], [], [], timeout)[0]:
            return True
        try:
            chunk = os.read(self._master, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.raw.extend(chunk)
        self._stream.feed(chunk)
        return bool(chunk)

    def screen(self) -> str:
        return "\n".join(line.rstrip() for line in self._screen.display).rstrip("\n")

    def wait_for(self, shown: Callable[[str], bool], timeout: float = 60.0) -> str:
        """The screen once ``shown(screen)`` holds; fails with the screen on timeout or exit."""
        deadline = time.monotonic() + timeout
        while not shown(self.screen()):
            assert time.monotonic() < deadline, f"timed out; the screen:\n{self.screen()}"
            assert self._read(0.2), f"tbmon closed the terminal; the screen:\n{self.screen()}"
        return self.screen()

    def settle(self, quiet: float = 1.5, timeout: float = 30.0) -> str:
        """The screen after ``quiet`` seconds without output (the dashboard is done redrawing)."""
        deadline = time.monotonic() + timeout
        last = len(self.raw)
        since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < quiet:
            if not self._read(0.1):
                break
            if len(self.raw) != last:
                last, since = len(self.raw), time.monotonic()
        return self.screen()

    def interrupt(self, timeout: float = 60.0) -> int:
        """Ctrl-C, then everything the process prints until it exits; its exit code."""
        self.proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(0.2):
            if self.proc.poll() is not None and not select.select([self._master], [], [], 0)[0]:
                break
        return self.proc.wait(max(1.0, deadline - time.monotonic()))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        os.close(self._master)
