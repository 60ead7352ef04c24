"""Open, stat and list paths longer than PATH_MAX (4096 bytes on Linux).

Deeply nested experiment trees (long sweep names, one directory per hyperparameter) can put a
run below PATH_MAX: the kernel then refuses its whole path with ENAMETOOLONG, although every
component is fine. These helpers try the plain call first and, only on ENAMETOOLONG, walk the
path in pieces with directory file descriptors (``openat``), so such a run is read like any
other instead of being skipped without a word.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

_PIECE_BYTES = 2048  # well under PATH_MAX; a component is at most NAME_MAX (255) bytes
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def open_path(path: str | os.PathLike[str], flags: int) -> int:
    """``os.open(path, flags)``, also for a path longer than PATH_MAX."""
    return _in_pieces(path, lambda where, **at: os.open(where, flags, **at))


def stat_path(path: str | os.PathLike[str]) -> os.stat_result:
    """``os.stat(path)`` (following symlinks), also for a path longer than PATH_MAX."""
    return _in_pieces(path, os.stat)


def _in_pieces(path: str | os.PathLike[str], call: Callable[..., T]) -> T:
    """``call(path)``; on ENAMETOOLONG, ``call(name, dir_fd=...)`` relative to its parent opened in pieces."""
    try:
        return call(path)
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
    parent, name = _split(os.fspath(path))
    dir_fd = _open_dir(parent)
    try:
        return call(name, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


@contextmanager
def scandir(path: str) -> Iterator[Iterator[os.DirEntry[str]]]:
    """``os.scandir(path)``, also for a path longer than PATH_MAX. Use the entries inside the
    ``with`` block, and build their paths from ``path`` and ``entry.name`` (for a long path
    ``entry.path`` is only the name)."""
    try:
        entries = os.scandir(path)
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
    else:
        with entries:
            yield entries
        return
    dir_fd = _open_dir(path)
    try:
        with os.scandir(dir_fd) as entries:
            yield entries
    finally:
        os.close(dir_fd)


def _split(path: str) -> tuple[str, str]:
    parent, name = os.path.split(os.path.abspath(path))
    return parent, name


def _open_dir(path: str) -> int:
    """A descriptor of directory ``path``, opened piece by piece (each under PATH_MAX)."""
    path = os.path.abspath(path)
    parts = [p for p in path.split(os.sep) if p]
    fd = os.open(os.sep, _DIR_FLAGS)
    try:
        while parts:
            piece: list[str] = []
            size = 0
            while parts and (not piece or size + len(os.fsencode(parts[0])) + 1 <= _PIECE_BYTES):
                size += len(os.fsencode(parts[0])) + 1
                piece.append(parts.pop(0))
            child = os.open(os.sep.join(piece), _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise
