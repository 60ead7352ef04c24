"""Follow logdirs live: file events (inotify via watchdog) or polling → ``reader.poll()``.

The loop blocks on one ``threading.Event`` that the watchdog thread sets, so an idle watcher
costs no CPU however many runs it follows. After a wake it waits ``debounce`` seconds so a
writer's burst of small writes (tensorboardX writes one record in four ``write()`` calls) is
read once, then hands the reader just the paths that changed: written, created, deleted or
renamed event files and directories. The reader discovers new runs and files from those paths
and reports deleted ones, so no directory walk is needed per event.

inotify can silently fail: it never fires for writes made on another host (NFS, SSHFS, many
container volumes) and drops events on queue overflow. So even with inotify a slow safety
rescan runs (every ``safety_rescan`` s), and when two rescans in a row find data that no file
event announced, the follower switches to polling and says so. If the observer cannot start
at all (inotify watch or instance limit), it polls from the start.

A logdir on object storage (``s3://…``, :mod:`tbmon.monitor.remote`) has no file events: with
one among the logdirs the follower polls, every ``REMOTE_POLL_INTERVAL`` s unless told otherwise.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileModifiedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from tbmon.monitor.discovery import is_event_file_name
from tbmon.monitor.storage import open_logdir

DEFAULT_POLL_INTERVAL = 0.5
"""Polling fallback period: median detection delay is half of it (0.25 s), inside the 0.5 s alert budget."""

DEBOUNCE = 0.03
"""Coalescing window after a file event. tensorboardX's four writes per record land within
microseconds of each other; 30 ms also bounds a hot file to ~30 reads/s during a 10k-event burst."""

SAFETY_RESCAN = 30.0
"""Full rescan period under inotify: catches events the kernel dropped, at 1/30 Hz of directory walks."""

REMOTE_POLL_INTERVAL = 5.0
"""Polling period when a logdir is on object storage: TensorBoard's reload interval. Each poll is
one listing request per 1,000 objects, and reads only objects that changed."""

MISSING_CHECK = 1.0
"""How often a logdir that does not exist (yet, or any more) is looked for again."""

UNANNOUNCED_LIMIT = 2
"""Rescans in a row finding data no event announced before concluding events are not delivered
(one alone can be a write racing the rescan)."""

# Reading a file generates IN_OPEN/IN_ACCESS/IN_CLOSE_NOWRITE; subscribing to those would make
# every read wake the loop again. Only writes, creations, deletions and renames matter.
WATCHED_EVENTS = [
    FileModifiedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]


class Reader(Protocol):
    """What the follower needs from ``tbmon.monitor.reader.LogdirReader``."""

    def poll(self, paths: list[str] | None = None) -> Any: ...


ResultHandler = Callable[[str, Any], None]
Notice = Callable[[str], None]


def _has_data(result: Any) -> bool:
    return any(not batch.is_empty() for batch in result.batches)


class _LogdirEvents(FileSystemEventHandler):
    """Runs on watchdog's thread: records what changed under one logdir and wakes the loop."""

    def __init__(self, follower: Follower, logdir: str) -> None:
        self._follower = follower
        self._logdir = logdir

    def on_any_event(self, event: FileSystemEvent) -> None:
        for raw in (event.src_path, event.dest_path):
            path = os.fsdecode(raw)
            if path and (event.is_directory or is_event_file_name(os.path.basename(path))):
                self._follower._note(self._logdir, path=path)


class _WatchdogWarnings(logging.Handler):
    """watchdog logs a dropped-events queue overflow as a warning: turn it into a rescan and a notice."""

    def __init__(self, follower: Follower) -> None:
        super().__init__(logging.WARNING)
        self._follower = follower

    def emit(self, record: logging.LogRecord) -> None:
        self._follower._notice(f"file watcher: {record.getMessage()}; rescanning")
        for logdir in self._follower.logdirs:
            self._follower._note(logdir, rescan=True)


class Follower:
    """Feeds ``on_result(logdir, PollResult)`` with every new record under ``logdirs``.

    ``make_reader(logdir)`` is called once per logdir, when it first exists, so a reader never
    sees a missing directory. ``poll_interval=None`` means inotify (with fallback), or polling
    every ``REMOTE_POLL_INTERVAL`` s when a logdir is remote; a number means polling every that
    many seconds.
    """

    def __init__(
        self,
        logdirs: list[str],
        make_reader: Callable[[str], Reader],
        on_result: ResultHandler,
        on_notice: Notice,
        *,
        poll_interval: float | None = None,
        debounce: float = DEBOUNCE,
        safety_rescan: float = SAFETY_RESCAN,
        observer_factory: Callable[[], BaseObserver] = Observer,
        on_tick: Callable[[], None] | None = None,
        tick_every: float = SAFETY_RESCAN,
    ) -> None:
        self._stores = {store.root: store for store in map(open_logdir, logdirs)}
        self.logdirs = list(self._stores)
        self.readers: dict[str, Reader] = {}
        if poll_interval is None and any(store.remote for store in self._stores.values()):
            poll_interval = REMOTE_POLL_INTERVAL
        self.backend = "polling" if poll_interval is not None else "inotify"
        self._make_reader = make_reader
        self._on_result = on_result
        self._notice = on_notice
        self._poll_interval = poll_interval if poll_interval is not None else DEFAULT_POLL_INTERVAL
        self._debounce = debounce
        self._safety_rescan = safety_rescan
        self._observer_factory = observer_factory
        self._on_tick = on_tick  # called on the following thread every `tick_every` s, data or not
        self._tick_every = tick_every
        self._observer: BaseObserver | None = None
        self._watches: dict[str, ObservedWatch] = {}
        self._waiting: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending_paths: dict[str, set[str]] = {}
        self._pending_rescans: set[str] = set()
        self._announced: set[str] = set()  # logdirs with a file event since the last safety rescan
        self._unannounced: dict[str, int] = {}
        self._log_handler = _WatchdogWarnings(self)

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start watching (file events first, so nothing written during the first scan is missed), then scan."""
        if self.backend == "inotify":
            try:
                self._observer = self._observer_factory()
                self._observer.start()
            except OSError as exc:
                self._fall_back(f"file events unavailable ({exc.strerror or exc})")
            else:
                logging.getLogger("watchdog").addHandler(self._log_handler)
        for logdir in self.logdirs:
            self._attach(logdir)
        self.scan()

    def scan(self) -> None:
        """Read everything new in every existing logdir (the catch-up, and ``--once``)."""
        for logdir in self.logdirs:
            if self._attached(logdir):
                self._poll(logdir, None)

    def run(self, stop: threading.Event) -> None:
        """Follow until ``stop`` is set (call ``wake()`` after setting it to return at once)."""
        next_rescan = time.monotonic() + self._period()
        next_tick = time.monotonic() + self._tick_every if self._on_tick else math.inf
        while not stop.is_set():
            timeout = min(next_rescan, next_tick) - time.monotonic()
            if self._waiting:
                timeout = min(timeout, MISSING_CHECK)
            if self._wake.wait(max(timeout, 0.0)) and self.backend == "inotify":
                stop.wait(self._debounce)
            if stop.is_set():
                return
            paths, rescans = self._take_pending()
            self._check_presence()
            if time.monotonic() >= next_rescan:
                self._periodic_scan()
                next_rescan = time.monotonic() + self._period()
                rescans.difference_update(self.logdirs)
            for logdir in rescans:
                self._poll(logdir, None)
            for logdir, changed in paths.items():
                if logdir not in rescans:
                    self._poll(logdir, sorted(changed))
            if self._on_tick and time.monotonic() >= next_tick:
                self._on_tick()
                next_tick = time.monotonic() + self._tick_every

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        logging.getLogger("watchdog").removeHandler(self._log_handler)
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    # -- internals --------------------------------------------------------------------------
    def _period(self) -> float:
        return self._safety_rescan if self.backend == "inotify" else self._poll_interval

    def _note(self, logdir: str, *, path: str | None = None, rescan: bool = False) -> None:
        with self._lock:
            self._announced.add(logdir)
            if rescan:
                self._pending_rescans.add(logdir)
            elif path is not None:
                self._pending_paths.setdefault(logdir, set()).add(path)
        self._wake.set()

    def _take_pending(self) -> tuple[dict[str, set[str]], set[str]]:
        with self._lock:
            self._wake.clear()
            paths, self._pending_paths = self._pending_paths, {}
            rescans, self._pending_rescans = self._pending_rescans, set()
        return paths, rescans

    def _attach(self, logdir: str) -> None:
        """Create the reader and the watch once ``logdir`` exists; otherwise wait for it."""
        if not self._stores[logdir].present():
            if logdir not in self._waiting:
                self._waiting.add(logdir)
                self._notice(f"waiting for {logdir} to appear")
            return
        self._waiting.discard(logdir)
        if logdir not in self.readers:
            self.readers[logdir] = self._make_reader(logdir)
        if self._observer is not None and logdir not in self._watches:
            try:
                self._watches[logdir] = self._observer.schedule(
                    _LogdirEvents(self, logdir), logdir, recursive=True, event_filter=WATCHED_EVENTS
                )
            except OSError as exc:
                self._fall_back(f"cannot watch {logdir} ({exc.strerror or exc})")

    def _check_presence(self) -> None:
        """Attach logdirs that appeared; detach (and rescan, to report removed runs) ones that vanished."""
        for logdir in self.logdirs:
            present = self._stores[logdir].present()
            if logdir in self._waiting and present:
                self._notice(f"{logdir} appeared; following it")
                self._attach(logdir)
                self._poll(logdir, None)
            elif logdir not in self._waiting and not present:
                watch = self._watches.pop(logdir, None)
                if watch is not None and self._observer is not None:
                    self._observer.unschedule(watch)
                self._waiting.add(logdir)
                self._notice(f"{logdir} disappeared; waiting for it to reappear")
                self._poll(logdir, None)

    def _periodic_scan(self) -> None:
        """Rescan everything; under inotify, also check that file events are really delivered."""
        with self._lock:
            announced, self._announced = self._announced, set()
        for logdir in self.logdirs:
            if not self._attached(logdir):
                continue
            found = self._poll(logdir, None)
            if self.backend != "inotify":
                continue
            if found and logdir not in announced:
                self._unannounced[logdir] = self._unannounced.get(logdir, 0) + 1
                if self._unannounced[logdir] >= UNANNOUNCED_LIMIT:
                    self._fall_back(f"new data in {logdir} arrived without file events (network filesystem?)")
                    return
            else:
                self._unannounced.pop(logdir, None)

    def _attached(self, logdir: str) -> bool:
        """Has a reader and was present at the last check (each check of a remote one is a request)."""
        return logdir in self.readers and logdir not in self._waiting

    def _fall_back(self, reason: str) -> None:
        self._notice(f"{reason}; polling every {self._poll_interval:g} s instead")
        self.backend = "polling"
        if self._observer is not None:
            observer, self._observer = self._observer, None
            self._watches.clear()
            try:
                observer.stop()
            except Exception:  # noqa: BLE001 - a half-started observer may fail to stop; it is abandoned anyway
                pass

    def _poll(self, logdir: str, paths: list[str] | None) -> bool:
        """One read of ``logdir`` (just ``paths`` if given); True when it brought new data."""
        reader = self.readers.get(logdir)
        if reader is None:
            return False
        result = reader.poll(paths) if paths is not None else reader.poll()
        self._on_result(logdir, result)
        return _has_data(result)
