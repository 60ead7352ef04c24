"""Where a logdir lives: the local filesystem, or an object store reached through fsspec.

The reader, ``watch`` and ``report`` never touch ``os`` or fsspec for a logdir's files
directly; they go through a :class:`Logdir` (list the runs, say whether the logdir is there,
name files relative to it) and its file access (open a file, stat it, read a byte range).
:func:`open_logdir` picks the implementation from the logdir string: a URL with a scheme
(``s3://``, ``gs://``, ``az://``, … anything fsspec knows) is remote (:mod:`tbmon.monitor.remote`),
anything else (and ``file://``) is a local path.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from tbmon.monitor.discovery import Discovery, discover, is_event_file_name
from tbmon.monitor.exit_codes import UsageError

if TYPE_CHECKING:
    from tbmon.monitor.event_file import EventFileReader

_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


@dataclass(frozen=True)
class FileStat:
    """What the reader needs to know about a file before reading it.

    ``version`` changes whenever the content may have been replaced rather than appended to:
    inode and mtime locally, the ETag (or generation, or mtime) of an object. Together with the
    size it tells the reader whether to look at the file at all.
    """

    size: int
    version: Hashable
    regular: bool = True


class OpenFile(Protocol):
    """One open file (a context manager): its stat and ranged reads."""

    def __enter__(self) -> OpenFile: ...

    def __exit__(self, *exc: object) -> None: ...

    def stat(self) -> FileStat: ...

    def pread(self, offset: int, size: int) -> bytes: ...


class Files(Protocol):
    """File access: raises ``FileNotFoundError`` for a missing file, another ``OSError`` for the rest."""

    def open(self, path: str) -> OpenFile: ...

    def size(self, path: str) -> int | None: ...


class Logdir(Files, Protocol):
    """A logdir and the access to its files (local: :class:`LocalLogdir`; remote: ``RemoteLogdir``)."""

    root: str
    remote: bool

    def discover(self, start: str | None = None) -> Discovery: ...

    def present(self) -> bool: ...

    def check(self) -> None: ...

    def relpath(self, path: str) -> str: ...

    def join(self, relative: str) -> str: ...

    def expect(self, reads: list[tuple[str, EventFileReader]]) -> None: ...


def is_remote(logdir: str | os.PathLike[str]) -> bool:
    """True for a URL with a scheme other than ``file://`` (``s3://bucket/prefix``, ``gs://…``)."""
    match = _URL_SCHEME.match(os.fspath(logdir))
    return match is not None and match.group(1).lower() != "file"


def normalize_logdir(logdir: str | os.PathLike[str]) -> str:
    """The canonical spelling of a logdir: an absolute path, or the URL without a trailing ``/``."""
    text = os.fspath(logdir)
    if is_remote(text):
        scheme, _, rest = text.partition("://")
        return f"{scheme}://{rest.rstrip('/')}"
    if _URL_SCHEME.match(text):  # file://
        text = text.partition("://")[2]
    return os.path.abspath(text)


def open_logdir(logdir: str | os.PathLike[str]) -> Logdir:
    """The :class:`Logdir` for ``logdir``. Raises :class:`UsageError` when its storage backend
    is not installed (naming the extra to install) or its scheme is unknown."""
    root = normalize_logdir(logdir)
    if is_remote(root):
        from tbmon.monitor.remote import RemoteLogdir

        return RemoteLogdir(root)
    return LocalLogdir(root)


class _LocalFile:
    """A local file opened for one read: one descriptor, ``os.pread`` for ranges."""

    def __init__(self, path: str) -> None:
        # O_NONBLOCK: a FIFO under an event-file name must not hang the reader.
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))

    def __enter__(self) -> _LocalFile:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)

    def stat(self) -> FileStat:
        st = os.fstat(self._fd)
        return FileStat(st.st_size, (st.st_ino, st.st_mtime_ns), stat.S_ISREG(st.st_mode))

    def pread(self, offset: int, size: int) -> bytes:
        return os.pread(self._fd, size, offset)


class LocalFiles:
    """Access to local files (the default of :class:`~tbmon.monitor.event_file.EventFileReader`)."""

    def open(self, path: str) -> _LocalFile:
        return _LocalFile(path)

    def size(self, path: str) -> int | None:
        try:
            return os.stat(path).st_size
        except OSError:
            return None


LOCAL_FILES = LocalFiles()


class LocalLogdir(LocalFiles):
    """A logdir on a local (or network-mounted) filesystem."""

    remote = False

    def __init__(self, root: str) -> None:
        self.root = normalize_logdir(root)

    def discover(self, start: str | None = None) -> Discovery:
        return discover(self.root, start=start)

    def present(self) -> bool:
        return os.path.isdir(self.root)

    def check(self) -> None:
        """Raise :class:`UsageError` unless the logdir is a directory that can be listed."""
        path = self.root
        if not os.path.exists(path):
            raise UsageError(f"logdir {path!r} does not exist")
        if not os.path.isdir(path):
            raise UsageError(f"logdir {path!r} is not a directory{event_file_hint(path, os.path.dirname(path))}")
        try:
            with os.scandir(path):
                pass
        except OSError as exc:
            raise UsageError(f"cannot read logdir {path!r}: {exc.strerror or exc.__class__.__name__}") from None

    def relpath(self, path: str) -> str:
        return os.path.relpath(path, self.root)

    def join(self, relative: str) -> str:
        return os.path.join(self.root, relative)

    def expect(self, reads: list[tuple[str, EventFileReader]]) -> None:
        """Local reads are cheap one by one: nothing to fetch ahead."""


def event_file_hint(path: str, parent: str) -> str:
    """For a logdir that is an event file: the folder to pass instead."""
    name = path.rstrip("/").rpartition("/")[2]
    return f" (pass the folder that holds it: {parent or '.'!r})" if is_event_file_name(name) else ""


__all__ = [
    "FileStat",
    "Files",
    "LOCAL_FILES",
    "LocalFiles",
    "LocalLogdir",
    "Logdir",
    "OpenFile",
    "is_remote",
    "normalize_logdir",
    "open_logdir",
]
