"""Issue 15, item 6 for the dashboard: ``--format rich -o FILE`` whose FILE cannot be written.

The line formats keep watching on ENOSPC (tests/faults/test_delivery_faults.py); the dashboard
wrote through a plain Python file, so its final frame on ``/dev/full`` (the kernel's always-full
device: ENOSPC without root) ended the watch with "internal error: OSError", and a terminal
given as ``-o`` that went away killed the painter thread with a traceback. Here the watcher
runs on a real pty (what the user sees), alerts also go to an ``--on-alert`` command, and late
runs diverge after the output failed: each must still reach the command.
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios
from pathlib import Path

from tests.faults.test_delivery_faults import NAN, alert_runs, diverged_runs, wait_until
from tests.monitor.pty_terminal import Terminal
from tests.monitor.test_watch_e2e import Writer


def _late_divergences(logdir: Path, names: list[str]) -> None:
    writer = Writer(logdir)
    try:
        for name in names:
            writer.losses(name, [1.0, 0.9, NAN])
    finally:
        writer.close()


def test_dashboard_to_a_full_disk_keeps_watching_and_says_so_once(tmp_path: Path) -> None:
    logdir, got = tmp_path / "logs", tmp_path / "got.jsonl"
    diverged_runs(logdir, ["early0", "early1"])
    term = Terminal("watch", "--format", "rich", "-o", "/dev/full", "--no-state",
                    "--on-alert", f"cat >> {got}; echo >> {got}", logdir)
    try:
        wait_until(lambda: sorted(alert_runs(got)) == ["early0", "early1"], what="the early alerts at the command")
        _late_divergences(logdir, ["late0", "late1"])
        wait_until(lambda: len(alert_runs(got)) == 4, what="the late alerts at the command")
        assert term.proc.poll() is None
        code = term.interrupt()
    finally:
        term.close()
    shown = term.raw.decode("utf-8", "replace")
    assert code == 1, shown
    assert shown.count("cannot write the dashboard to /dev/full: No space left on device") == 1, shown
    assert "tbmon: 4 runs, 4 alerts" in shown  # the summary the full file could not take: on the terminal
    assert "Traceback" not in shown and "internal error" not in shown


def test_dashboard_to_a_terminal_that_goes_away_keeps_watching(tmp_path: Path) -> None:
    """``-o`` a second real pty, so Rich paints live into it; closing its master side makes every
    later write fail (EIO), in the painter thread. The watcher goes on and alerts reach the command."""
    logdir, got = tmp_path / "logs", tmp_path / "got.jsonl"
    diverged_runs(logdir, ["early0"])
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    board = os.ttyname(slave)
    term = Terminal("watch", "--format", "rich", "-o", board, "--no-state",
                    "--on-alert", f"cat >> {got}; echo >> {got}", logdir)
    os.close(slave)
    try:
        wait_until(lambda: alert_runs(got) == ["early0"], what="the early alert at the command")
        painted = bytearray()
        wait_until(lambda: painted.extend(os.read(master, 65536)) or b"early0" in painted, what="a painted frame")
        os.close(master)  # the terminal the dashboard was drawn on is gone
        master = -1
        _late_divergences(logdir, ["late0", "late1"])
        wait_until(lambda: len(alert_runs(got)) == 3, what="the late alerts at the command")
        assert term.proc.poll() is None
        code = term.interrupt()
    finally:
        term.close()
        if master >= 0:
            os.close(master)
    shown = term.raw.decode("utf-8", "replace")
    assert code == 1, shown
    assert shown.count(f"cannot write the dashboard to {board}") == 1, shown
    assert "Traceback" not in shown and "internal error" not in shown
