"""`tbmon report` (placeholder until its issue lands)."""

from __future__ import annotations

import argparse

from tbmon.monitor.exit_codes import UsageError

HELP = "report (not implemented yet)"
DESCRIPTION = HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise UsageError("`tbmon report` is not implemented yet")
