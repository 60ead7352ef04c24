"""A logdir on object storage (``s3://``, ``gs://``, ``az://``, … anything fsspec knows).

Object stores deliver no file events, so a remote logdir is polled; each poll costs one
recursive listing (one request per 1,000 objects on S3), which also gives every object's size
and ETag. An object whose size and ETag did not change is not read at all; one that grew (or
was replaced whole by a copy with more bytes, which is how sync tools update S3) is read from
the reader's offset with ranged GETs of only the new bytes. The ranges a poll will read are
fetched ahead concurrently (:meth:`RemoteLogdir.expect`), in windows of bounded size, so
thousands of runs do not cost thousands of round trips one after the other.

A listing that fails (network, throttling, credentials) is retried after a delay that doubles
up to :data:`MAX_BACKOFF` while the store keeps failing; in between, the store is not asked.
Credentials come from the backend's usual environment (for S3: ``AWS_*`` variables, profiles,
instance roles; ``AWS_ENDPOINT_URL_S3`` for S3-compatible servers).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from tbmon.monitor.discovery import Discovery, RunDir, is_event_file_name, named_run_dir
from tbmon.monitor.exit_codes import UsageError
from tbmon.monitor.storage import FileStat, event_file_hint

if TYPE_CHECKING:
    from tbmon.monitor.event_file import EventFileReader

FIRST_BACKOFF = 2.0
"""Seconds before the first retry of a failed listing; doubled per failure in a row."""

MAX_BACKOFF = 300.0
"""Longest wait between listing attempts of a store that keeps failing."""

READ_AHEAD_BYTES = 64 << 20
"""Bytes fetched ahead concurrently per window: bounds the memory read-ahead holds."""

READ_AHEAD_RANGES = 128
"""Ranges per window (one GET each), fetched concurrently by async backends (s3fs, gcsfs, adlfs)."""

# scheme -> (extra, package) for the message when the backend is not installed
EXTRAS = {
    "s3": ("s3", "s3fs"),
    "s3a": ("s3", "s3fs"),
    "gs": ("gcs", "gcsfs"),
    "gcs": ("gcs", "gcsfs"),
    "az": ("azure", "adlfs"),
    "abfs": ("azure", "adlfs"),
    "abfss": ("azure", "adlfs"),
}

# Listing fields that change when an object is rewritten, by backend (S3, GCS, Azure, others).
_VERSION_FIELDS = ("ETag", "etag", "generation", "version_id", "LastModified", "last_modified", "mtime", "updated", "created")

T = TypeVar("T")


class StorageError(OSError):
    """A store request failed for another reason than a missing object (network, throttling, credentials)."""

    def __init__(self, message: str) -> None:
        super().__init__(None, message)


class RemoteLogdir:
    """A logdir at a URL, read through fsspec (see module docstring)."""

    remote = True

    def __init__(self, root: str) -> None:
        self.root = root
        scheme = root.partition("://")[0].lower()
        extra = EXTRAS.get(scheme)
        try:
            import fsspec.core
        except ImportError:
            raise UsageError(_install_hint(scheme, extra, "fsspec is not installed")) from None
        try:
            self._fs, self._fs_root = fsspec.core.url_to_fs(root)
        except ImportError as exc:
            raise UsageError(_install_hint(scheme, extra, str(exc))) from None
        except ValueError as exc:
            raise UsageError(f"cannot open logdir {root!r}: {exc} (not a storage scheme fsspec knows)") from None
        self._listed: dict[str, FileStat] = {}
        self._failures = 0
        self._retry_at = 0.0
        self._last_error = ""
        self._plan: list[tuple[str, int, int]] = []
        self._plan_start: dict[str, int] = {}
        self._fetched_to = 0
        self._ahead: dict[tuple[str, int, int], bytes] = {}
        self.requests = 0
        """Store requests made (listings, stats, ranged GETs): for tests and benchmarks."""
        self.bytes_fetched = 0
        """Object bytes downloaded."""

    # -- the logdir ---------------------------------------------------------------------
    def discover(self, start: str | None = None) -> Discovery:
        """One recursive listing of the prefix, grouped into runs by directory (= key prefix).

        ``start`` (a URL under the logdir) lists only that sub-prefix, e.g. one part of a logdir
        read by a ``report --jobs`` worker; the runs keep their names relative to the logdir.
        """
        if time.monotonic() < self._retry_at:
            return self._unlisted()
        sub = "" if start is None else os.fspath(start)[len(self.root):].strip("/")
        try:
            listing = self._call(lambda: self._listing(sub), count=True)
        except FileNotFoundError:
            listing = {}  # no bucket or no objects yet: like a local logdir not created yet
        except OSError as exc:
            self._failed(exc)
            return self._unlisted()
        self._failures, self._retry_at = 0, 0.0
        files: dict[str, list[str]] = {}
        stats: dict[str, FileStat] = {}
        prefix = self._fs_root.rstrip("/") + "/"
        within = prefix + sub + "/" if sub else prefix
        for name, info in listing.items():
            if info.get("type") == "directory" or not name.startswith(within):
                continue
            relative = name[len(prefix):]
            directory, _, base = relative.rpartition("/")
            if not is_event_file_name(base):
                continue
            url = f"{self.root}/{relative}"
            stats[url] = FileStat(int(info.get("size") or 0), _version(info))
            files.setdefault(directory, []).append(url)
        self._listed = stats
        runs = [self._run_dir(directory, urls) for directory, urls in files.items()]
        return Discovery(runs=tuple(sorted(runs, key=lambda r: r.run)), unreadable_dirs=())

    def present(self) -> bool:
        """Whether anything is stored under the prefix. A store that fails answers True (and is
        backed off): the reader's listing then says why it cannot be read, instead of a silent wait."""
        if time.monotonic() < self._retry_at:
            return True
        try:
            self._fs.invalidate_cache(self._fs_root)
            return bool(self._call(lambda: self._fs.isdir(self._fs_root), count=True))
        except FileNotFoundError:
            return False
        except OSError as exc:
            self._failed(exc)
            return True

    def check(self) -> None:
        """Raise :class:`UsageError` unless the prefix holds objects and can be read."""
        try:
            self._fs.invalidate_cache(self._fs_root)
            info = self._call(lambda: self._fs.info(self._fs_root), count=True)
        except FileNotFoundError:
            raise UsageError(f"logdir {self.root!r} does not exist (no bucket, or no objects under that prefix)") from None
        except OSError as exc:
            raise UsageError(f"cannot read logdir {self.root!r}: {_reason(exc)}") from None
        if info.get("type") != "directory":
            parent = self.root.rpartition("/")[0]
            raise UsageError(f"logdir {self.root!r} is not a directory{event_file_hint(self.root, parent)}")

    def relpath(self, path: str) -> str:
        return path[len(self.root) + 1 :]

    def join(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    # -- files --------------------------------------------------------------------------
    def open(self, path: str) -> _RemoteFile:
        if time.monotonic() < self._retry_at:
            raise StorageError(self._last_error)
        return _RemoteFile(self, path)

    def size(self, path: str) -> int | None:
        """The size from the latest listing (no request); None when the listing no longer has it."""
        stat = self._listed.get(path)
        return None if stat is None else stat.size

    def stat(self, path: str) -> FileStat:
        """From the latest listing; a file not listed (yet) costs one request."""
        listed = self._listed.get(path)
        if listed is not None:
            return listed
        fs_path = self._fs_path(path)
        self._fs.invalidate_cache(fs_path)
        info = self._call(lambda: self._fs.info(fs_path), count=True)
        return FileStat(int(info.get("size") or 0), _version(info), info.get("type") == "file")

    def pread(self, path: str, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` (fewer at the end of the object), fetched ahead when planned."""
        end = offset + size
        data = self._ahead.pop((path, offset, end), None)
        if data is None and self._plan_start.get(path, -1) >= self._fetched_to:
            self._fetch_window(self._plan_start[path])
            data = self._ahead.pop((path, offset, end), None)
        if data is not None:
            return data
        data = self._call(lambda: self._fs.cat_file(self._fs_path(path), start=offset, end=end), count=True)
        self.bytes_fetched += len(data)
        return data

    def expect(self, reads: list[tuple[str, EventFileReader]]) -> None:
        """The files the coming poll reads, in order: their next ranges are fetched ahead, a
        window at a time, when the first of the window is read."""
        self._plan, self._plan_start, self._fetched_to, self._ahead = [], {}, 0, {}
        for path, reader in reads:
            stat = self._listed.get(path)
            if stat is None:
                continue
            for start, end in reader.upcoming_reads(stat):
                self._plan_start.setdefault(path, len(self._plan))
                self._plan.append((path, start, end))

    # -- internals ----------------------------------------------------------------------
    def _listing(self, sub: str = "") -> dict[str, dict[str, Any]]:
        """Every object under the prefix (or its ``sub`` prefix); the backend's listing cache is
        dropped before (a stale listing would hide new objects) and after (it would hold a second
        copy of the listing)."""
        top = f"{self._fs_root.rstrip('/')}/{sub}" if sub else self._fs_root
        self._fs.invalidate_cache(self._fs_root)
        try:
            return self._fs.find(top, withdirs=False, detail=True)
        finally:
            self._fs.invalidate_cache(self._fs_root)

    def _run_dir(self, directory: str, urls: list[str]) -> RunDir:
        return named_run_dir(directory or ".", f"{self.root}/{directory}" if directory else self.root, urls)

    def _fetch_window(self, first: int) -> None:
        """Fetch planned ranges from ``first`` on, concurrently, up to the window's limits."""
        window: list[tuple[str, int, int]] = []
        total = 0
        for path, start, end in self._plan[first:]:
            if window and (len(window) >= READ_AHEAD_RANGES or total + end - start > READ_AHEAD_BYTES):
                break
            window.append((path, start, end))
            total += end - start
        self._fetched_to = first + len(window)
        self._ahead = {}  # the previous window has been read (reads follow the plan's order)
        try:
            results = self._call(
                lambda: self._fs.cat_ranges(
                    [self._fs_path(p) for p, _, _ in window], [s for _, s, _ in window], [e for _, _, e in window],
                    on_error="return",
                ),
                count=False,
            )
        except OSError:
            return  # each file then reads its own ranges, and reports its own error
        self.requests += len(window)
        for key, data in zip(window, results):
            if isinstance(data, bytes):
                self._ahead[key] = data
                self.bytes_fetched += len(data)

    def _fs_path(self, path: str) -> str:
        return self._fs_root + path[len(self.root) :]

    def _call(self, request: Callable[[], T], *, count: bool) -> T:
        """Run a backend request; every failure but a missing object becomes a :class:`StorageError`."""
        if count:
            self.requests += 1
        try:
            return request()
        except (FileNotFoundError, StorageError):
            raise
        except Exception as exc:  # noqa: BLE001 - backends raise their own types (botocore, aiohttp, …)
            raise StorageError(_reason(exc)) from exc

    def _failed(self, exc: OSError) -> None:
        delay = min(FIRST_BACKOFF * 2**self._failures, MAX_BACKOFF)
        self._failures += 1
        self._retry_at = time.monotonic() + delay
        self._last_error = f"{_reason(exc)}; retrying in {delay:g} s"

    def _unlisted(self) -> Discovery:
        return Discovery(runs=(), unreadable_dirs=(self.root,), reasons={self.root: f"cannot list: {self._last_error}"})


class _RemoteFile:
    """An object opened for one read: no connection is held, each range is a request."""

    def __init__(self, store: RemoteLogdir, path: str) -> None:
        self._store = store
        self._path = path

    def __enter__(self) -> _RemoteFile:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def stat(self) -> FileStat:
        return self._store.stat(self._path)

    def pread(self, offset: int, size: int) -> bytes:
        return self._store.pread(self._path, offset, size)


def _version(info: dict[str, Any]) -> tuple:
    return tuple(str(info[k]) for k in _VERSION_FIELDS if info.get(k) is not None)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _install_hint(scheme: str, extra: tuple[str, str] | None, detail: str) -> str:
    if extra is not None:
        name, package = extra
        return f"reading {scheme}:// logdirs needs {package}: pip install 'tbmon[{name}]'"
    return f"reading {scheme}:// logdirs needs an fsspec backend for it ({detail})"


__all__ = ["RemoteLogdir", "StorageError"]
