"""LOGDIR arguments of `watch` and `report`: ``--logdir``, TensorBoard's ``name:path`` specs, and
the checks that turn a wrong path into one clear exit-2 line instead of a wait that never ends.

TensorBoard users type ``--logdir DIR`` or ``--logdir_spec name1:DIR1,name2:DIR2``; both work
here, as do plain positional LOGDIRs, each of which may also be ``name:DIR``.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tbmon.monitor.exit_codes import UsageError
from tbmon.monitor.storage import event_file_hint, open_logdir
from tbmon.monitor.wording import plural

if TYPE_CHECKING:
    from tbmon.monitor.reader import RunInfo

_URL = re.compile(r"[a-zA-Z][0-9a-zA-Z.+-]*://")
_WINDOWS_DRIVE = re.compile(r"[a-zA-Z]:[\\/]")


@dataclass(frozen=True, slots=True)
class LogdirSpec:
    """One logdir to read: its path, and the name to show for it (the path when unnamed)."""

    path: str
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name if self.name is not None else self.path


def add_logdir_arguments(parser: argparse.ArgumentParser, help_text: str) -> None:
    """Positional LOGDIRs plus TensorBoard's ``--logdir`` and ``--logdir_spec`` spellings."""
    parser.add_argument(
        "logdirs", nargs="*", metavar="LOGDIR", help=f"{help_text}; 'name:DIR' shows DIR under that name"
    )
    parser.add_argument(
        "--logdir", dest="logdir_options", action="append", default=[], metavar="DIR",
        help="a LOGDIR, as TensorBoard spells it (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--logdir_spec", "--logdir-spec", dest="logdir_specs", action="append", default=[], metavar="SPEC",
        help="TensorBoard's comma-separated 'name1:DIR1,name2:DIR2' (repeatable)",
    )  # fmt: skip


def logdir_specs(args: argparse.Namespace) -> list[LogdirSpec]:
    """Every LOGDIR given, in order; at least one."""
    raw = [*args.logdirs, *args.logdir_options]
    for spec in args.logdir_specs:
        raw += [part for part in spec.split(",") if part.strip()]
    if not raw:
        raise UsageError("give at least one LOGDIR (e.g. `tbmon report runs/`, or --logdir runs/)")
    return [parse_spec(text) for text in raw]


def parse_spec(text: str) -> LogdirSpec:
    """``DIR`` or ``name:DIR``, read as TensorBoard reads ``--logdir_spec``.

    URLs (``s3://...``) and Windows drive letters are paths, not names; so is anything that
    exists on disk as written (a folder really called ``a:b``).
    """
    text = text.strip()
    if _URL.match(text) or _WINDOWS_DRIVE.match(text) or ":" not in text or os.path.lexists(text):
        return LogdirSpec(text)
    name, path = text.split(":", 1)
    if not name or not path:
        raise UsageError(f"logdir spec {text!r}: expected name:DIR with both parts non-empty")
    return LogdirSpec(path, name)


def check_watchable(path: str) -> None:
    """For a live watch: it may wait for a LOGDIR to appear, but a local file never becomes one."""
    store = open_logdir(path)  # a remote scheme without its backend fails here, in one line
    if not store.remote and os.path.exists(store.root) and not os.path.isdir(store.root):
        raise UsageError(f"logdir {path!r} is not a directory{event_file_hint(store.root, os.path.dirname(store.root))}")


def nothing_to_judge(logdir: str, runs: Sequence[RunInfo]) -> str | None:
    """The reason to fail when ``logdir`` has no event files, or not one valid record in them:
    a CI gate must not pass on a training that wrote nothing, or nothing readable."""
    if not runs:
        return f"no event files found under {logdir}"
    files = [f for run in runs for f in run.files]
    damaged = [f for f in files if f.problems]
    if not damaged or any(f.records for f in files):
        return None
    first = damaged[0]
    return (f"nothing readable under {logdir}: {plural(len(files), 'event file')}, not one valid record "
            f"({', '.join(first.problems)} in {first.path})")
