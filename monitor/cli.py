"""`tbmon` command line: argument parsing and the error policy (exit 2 with one line, no traceback)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from tbmon.monitor.entry import interrupted
from tbmon.monitor.exit_codes import BAD_INPUT, FAIL_ON_CHOICES, UsageError
from tbmon.monitor.sanitize import visible
from tbmon.monitor.version import tbmon_version


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config (tag patterns, rule thresholds). A [tool.tbmon] table in ./pyproject.toml is read too.",
    )
    parser.add_argument(
        "--fail-on",
        choices=FAIL_ON_CHOICES,
        default="critical",
        help="exit 1 if any alert is at or above this severity (default: critical; 'info': any alert at all; "
        "'never' always exits 0)",
    )
    parser.add_argument("--output", "-o", metavar="PATH", help="write the output to PATH instead of stdout")


COMMANDS = ("watch", "report", "export", "demo")
"""Each is a module of tbmon.monitor with HELP, DESCRIPTION, add_arguments and run."""


def _command_module(name: str) -> ModuleType:
    return importlib.import_module(f"tbmon.monitor.{name}")


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names, found without parsing: then only its module is imported (``watch``
    pulls in the dashboard and pandas, ~0.3 s a ``tbmon report`` need not pay). None when it names none
    (``tbmon --help``, a typo): the full parser, every subcommand, gives the help or the error."""
    for arg in argv:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (``only``) the top level with just that subcommand's arguments."""
    parser = argparse.ArgumentParser(
        prog="tbmon",
        description=(
            "Watch TensorBoard event files and alert when training diverges, overfits, "
            "or its gradients vanish or explode. Reads files from any writer "
            "(tensorboardX, torch.utils.tensorboard, TF2/Keras, Lightning, HF Transformers)."
        ),
        epilog="Exit codes: 0 no alert at/above --fail-on, 1 alerts at/above it, 2 bad usage or unreadable input.",
    )
    parser.add_argument("--version", action="version", version=f"tbmon {tbmon_version()}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS if only is None else (only,):
        module = _command_module(name)
        sub_parser = sub.add_parser(
            name,
            help=module.HELP,
            description=module.DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name in ("watch", "report"):
            _add_common(sub_parser)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_chosen_command(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return BAD_INPUT
    try:
        return int(args.run(args))
    except UsageError as exc:
        print(f"tbmon: {visible(exc)}", file=sys.stderr)
        return BAD_INPUT
    except KeyboardInterrupt:
        return interrupted()
    except BrokenPipeError:
        # `tbmon report ... | head`: the reader went away; that is not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - the contract forbids tracebacks for users
        if args.debug:
            raise
        reason = f"{type(exc).__name__}: {visible(exc)}"
        print(f"tbmon: internal error: {reason} (rerun with --debug for details)", file=sys.stderr)
        return BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
