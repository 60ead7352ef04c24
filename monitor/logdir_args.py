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

from tbmon.monitor.discovery import is_event_file_name
from tbmon.monitor.exit_codes import UsageError
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
    """Every LOGDIR given, in order, each checked by :func:`check_local`; at least one."""
    raw = [*args.logdirs, *args.logdir_options]
    for spec in args.logdir_specs:
        raw += [part for part in spec.split(",") if part.strip()]
    if not raw:
        raise UsageError("give at least one LOGDIR (e.g. `tbmon report runs/`, or --logdir runs/)")
    specs = [parse_spec(text) for text in raw]
    for spec in specs:
        check_local(spec.path)
    return specs


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


def check_local(path: str) -> None:
    """Refuse a remote URL in one clear line (remote logdirs are not supported yet).

    The one place that decides which logdir locations tbmon can read; remote support replaces it.
    """
    if _URL.match(path):
        scheme = path.split("://", 1)[0]
        raise UsageError(f"logdir {path!r}: remote logdirs ({scheme}://) are not supported yet; "
                         "copy or mount the logs locally (e.g. `aws s3 sync`, gcsfuse) and pass that folder")


def check_watchable(path: str) -> None:
    """For a live watch: it may wait for a LOGDIR to appear, but a file never becomes one."""
    check_local(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise _not_a_directory(path)


def check_readable(path: str) -> None:
    """For a one-shot read: the LOGDIR must be a local folder that can be listed now."""
    check_local(path)
    if not os.path.exists(path):
        raise UsageError(f"logdir {path!r} does not exist")
    if not os.path.isdir(path):
        raise _not_a_directory(path)
    try:
        with os.scandir(path):
            pass
    except OSError as exc:
        raise UsageError(f"cannot read logdir {path!r}: {exc.strerror or exc.__class__.__name__}") from None


def _not_a_directory(path: str) -> UsageError:
    hint = ""
    if is_event_file_name(os.path.basename(path)):
        hint = f" (pass the folder that holds it: {os.path.dirname(path) or '.'!r})"
    return UsageError(f"logdir {path!r} is not a directory{hint}")


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
