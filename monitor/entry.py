"""The ``tbmon`` console script, importing nothing before it can handle Ctrl-C.

The CLI's imports (numpy, protobuf, rich) take a second or more on a busy machine; a Ctrl-C
then used to print a KeyboardInterrupt traceback from inside some import. This module imports
only ``sys`` until the CLI is loaded, so an interrupt at any point exits like one during a
command: one line and status 130 (128 + SIGINT, what shells report for Ctrl-C).
"""

from __future__ import annotations

import sys

INTERRUPTED = 130


def interrupted() -> int:
    """Say so in one line (if stderr is still there) and return the exit status for Ctrl-C."""
    try:
        print("tbmon: interrupted (Ctrl-C)", file=sys.stderr)
    except (OSError, ValueError):
        pass
    return INTERRUPTED


def main() -> int:
    try:
        from tbmon.monitor.cli import main as run_cli
    except KeyboardInterrupt:
        return interrupted()
    return run_cli()
