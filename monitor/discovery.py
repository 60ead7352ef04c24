"""Find the runs under a logdir: every directory that directly holds event files.

Follows TensorBoard's rules (a run is a directory holding a file whose name contains
``tfevents``; the run name is that directory relative to the logdir, ``.`` for the logdir
itself) so tbmon and TensorBoard name runs the same way. Symlinked directories are followed,
as RustBoard does, with a guard against loops. Files that only look like event files are
skipped: rsync's hidden temp copies (``.events.out.tfevents…XXXX``, renamed when complete) and
the profiler's ``*.profile-empty`` markers, which hold no summaries.

Keras' TensorBoard callback writes one experiment as sibling run directories named ``train``
and ``validation``; such a run gets ``role`` "train"/"validation" and ``experiment_dir`` =
its parent, so rules that compare the two losses can pair them. The role comes from the
directory name alone, so it does not change when the sibling appears later in a live run.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

EVENT_FILE_MARKER = "tfevents"
IGNORED_SUFFIXES = (".profile-empty",)
_DIGITS = re.compile(r"(\d+)")

# Keras writes `train` and `validation`; other trainers use the short forms.
ROLE_OF_DIR_NAME = {
    "train": "train",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
    "eval": "validation",
}


@dataclass(frozen=True)
class RunDir:
    """One run found on disk. ``files`` are absolute paths in name (= creation time) order."""

    run: str
    path: str
    files: tuple[str, ...]
    experiment_dir: str | None
    role: str | None


@dataclass(frozen=True)
class Discovery:
    """The result of one walk: the runs, and directories that could not be listed."""

    runs: tuple[RunDir, ...]
    unreadable_dirs: tuple[str, ...]
    reasons: dict[str, str] = field(default_factory=dict)  # why a directory could not be listed, when known


def is_event_file_name(name: str) -> bool:
    """True for names TensorBoard would read as event files, minus temp copies and profiler markers."""
    return EVENT_FILE_MARKER in name and not name.startswith(".") and not name.endswith(IGNORED_SUFFIXES)


def file_order_key(path: str) -> tuple:
    """Sort key of an event file within its run: its name, with digit runs compared as numbers.

    The 10-digit time leads every writer's name, so this is creation order; comparing the
    rest numerically also orders torch's per-process counter (``….<pid>.9`` before
    ``….<pid>.10``) for files created in the same second, which plain string order gets wrong.
    """
    parts = _DIGITS.split(os.path.basename(path))
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p)


def run_name(logdir: str, directory: str) -> str:
    """The contract's run name: ``directory`` relative to ``logdir``, ``/``-separated, ``.`` for the root."""
    rel = os.path.relpath(directory, logdir)
    return "." if rel == os.curdir else rel.replace(os.sep, "/")


def keras_pairing(run: str) -> tuple[str | None, str | None]:
    """``(experiment_dir, role)`` for a run named like a Keras train/validation directory."""
    if run == ".":
        return None, None
    parent, _, base = run.rpartition("/")
    role = ROLE_OF_DIR_NAME.get(base.lower())
    if role is None:
        return None, None
    return (parent or "."), role


def make_run_dir(logdir: str, directory: str, files: list[str]) -> RunDir:
    """A RunDir for ``directory`` with its event files (absolute paths) in creation order."""
    return named_run_dir(run_name(logdir, directory), directory, files)


def named_run_dir(run: str, directory: str, files: list[str]) -> RunDir:
    """A RunDir whose run name is already known (an object store names it from the key)."""
    experiment_dir, role = keras_pairing(run)
    return RunDir(
        run=run,
        path=directory,
        files=tuple(sorted(files, key=file_order_key)),
        experiment_dir=experiment_dir,
        role=role,
    )


def discover(logdir: str | os.PathLike[str], start: str | os.PathLike[str] | None = None) -> Discovery:
    """Walk ``start`` (default: the whole logdir) once and return the runs found.

    A logdir or subdirectory that does not exist (yet, or any more) simply yields nothing: the
    watcher may start before training creates its folder. Directories that exist but cannot be
    listed are returned in ``unreadable_dirs`` so the caller can report them.
    """
    root = os.path.abspath(os.fspath(logdir))
    top = root if start is None else os.path.abspath(os.fspath(start))
    runs: list[RunDir] = []
    unreadable: list[str] = []
    seen: set[tuple[int, int]] = set()
    stack = [top]
    while stack:
        directory = stack.pop()
        try:
            identity = os.stat(directory)
        except OSError:
            continue  # vanished between listing and visiting, or a dangling link
        key = (identity.st_dev, identity.st_ino)
        if key in seen:
            continue  # symlink loop, or a second link to a directory already walked
        seen.add(key)
        try:
            with os.scandir(directory) as entries:
                listing = list(entries)
        except FileNotFoundError:
            continue
        except OSError:
            unreadable.append(directory)
            continue
        files: list[str] = []
        subdirs: list[str] = []
        for entry in listing:
            try:
                if entry.is_dir():  # follows symlinks
                    subdirs.append(entry.path)
                elif is_event_file_name(entry.name) and entry.is_file():
                    files.append(entry.path)
            except OSError:
                continue
        if files:
            runs.append(make_run_dir(root, directory, files))
        # Reverse so the stack pops subdirectories in name order.
        stack.extend(sorted(subdirs, reverse=True))
    runs.sort(key=lambda r: r.run)
    return Discovery(runs=tuple(runs), unreadable_dirs=tuple(unreadable))
