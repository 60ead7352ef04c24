"""Background event-file writer: tensorboardX protos and framing, off the training thread.

Why not ``tensorboardX.SummaryWriter`` itself: its ``flush()`` returns before its queue is
written (an event lands one step late, the last one only at ``close()``), it flushes every
120 s, pickles every event through a ``multiprocessing.Queue`` (~58 µs per scalar on the
training thread), names files ``<time>.<host>`` so two writers started in the same second
truncate each other, and raises into the loop on a full disk. Here the training thread only
enqueues a closure; this thread builds the ``Summary`` (tensorboardX's compiled protos),
frames it as a TFRecord with tensorboardX's masked CRC, writes it, and makes it reach the
file within ``flush_secs`` (with ``fsync`` when a value is non-finite).

The queue is bounded and never blocks training. Gradient statistics (the bulky records) and
everything else (scalars, alert notes) have a bound each, so a writer that falls behind on
histograms drops histograms, never the loss or a validation point; scalars are small and quick
to write, so theirs is ``SCALAR_BOUND_FACTOR`` times larger (a stalled writer still bounds
memory). The writer wakes early once ``max_queue / 2`` records wait, so a fast loop does not
fill the queue while the writer sleeps out ``flush_secs``.

Any failure (disk full, logdir deleted, file closed, a bug in a build closure) is stored
once in ``error``; from then on the writer discards work and the shim disables itself.
"""

from __future__ import annotations

import collections
import itertools
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import Summary
from tensorboardX.record_writer import masked_crc32c

# What a build closure returns: the summary values and whether they must reach disk at once.
Built = tuple[list[Summary.Value], bool]
_file_counter = itertools.count()  # per process: unique names for writers in the same second
# Measured (4-tensor MLP, CPU): a scalar record holds ~0.6 kB and takes 5 us to write; a gradient record
# ~4.7 kB and ~33 us per parameter tensor. Ten times as many scalars hold less than the gradient bound of any
# net with two or more parameter tensors.
SCALAR_BOUND_FACTOR = 10


@dataclass(frozen=True, slots=True)
class Record:
    step: int
    wall_time: float
    build: Callable[[], Built]
    bulky: bool = False  # gradient statistics: dropped before anything else when the writer falls behind


class _Stop:
    pass


@dataclass(frozen=True, slots=True)
class _Flush:
    done: threading.Event


def event_file_name(rank: int) -> str:
    """``events.out.tfevents.<time>.<host>.<pid>.r<rank>.<counter>``: unique per process and rank."""
    return (
        f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}"
        f".{os.getpid()}.r{rank}.{next(_file_counter)}"
    )


def _frame(data: bytes) -> bytes:
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


class EventWriter:
    """Owns one event file and the daemon thread that writes it.

    The training thread appends to a deque (atomic, no lock); the writer thread wakes every
    ``flush_secs``, writes everything pending and flushes. Waking the writer per record cost
    more CPU than the record itself. ``flush()``/``close()``, urgent records (a non-finite
    Python float) and ``max_queue / 2`` records waiting wake it at once. ``max_queue`` bounds
    the bulky records; the others have their own bound, ``SCALAR_BOUND_FACTOR`` times larger.
    ``after_sync(urgent)`` (the guard) runs on
    this thread each time written data has reached the file, before a ``flush()`` returns;
    ``urgent`` is True for a non-finite value, ``flush()`` and ``close()``. It must not raise.
    """

    def __init__(
        self,
        logdir: str,
        rank: int,
        flush_secs: float,
        max_queue: int,
        after_sync: Callable[[bool], None] | None = None,
    ) -> None:
        self.error: BaseException | None = None
        self._after_sync = after_sync
        self.dropped = 0
        # Bulky records are counted in (training thread) and out (writer thread) by one thread each: no lock.
        self._bulky_in = 0
        self._bulky_out = 0
        self.path: str | None = None
        self._flush_secs = flush_secs
        self._max_queue = max_queue
        self._scalar_bound = max_queue * SCALAR_BOUND_FACTOR
        self._pending: collections.deque[Record | _Flush | _Stop] = collections.deque()
        self._wake = threading.Event()
        self._file: IO[bytes] | None = None
        try:
            os.makedirs(logdir, exist_ok=True)
            self._file = self._create(logdir, rank)
            self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))
            self._file.flush()
        except Exception as exc:  # noqa: BLE001 - never raise into training
            self.error = exc
            self._finish()
            return
        self._thread = threading.Thread(target=self._run, name="tbmon-shim-writer", daemon=True)
        self._thread.start()

    def _create(self, logdir: str, rank: int) -> IO[bytes]:
        while True:  # 'xb' never truncates someone else's file; a clash just takes the next counter
            path = os.path.join(logdir, event_file_name(rank))
            try:
                handle = open(path, "xb")  # noqa: SIM115 - closed by the writer thread
            except FileExistsError:
                continue
            self.path = path
            return handle

    @property
    def alive(self) -> bool:
        return self.error is None and self._file is not None

    def submit(self, record: Record, *, urgent: bool = False) -> None:
        """Queue a record; never blocks the training loop (a full bound drops and counts).

        Bulky records come from the training thread only (their count in is not locked).
        """
        if not self.alive:
            return
        bulky = self._bulky_in - self._bulky_out
        full = bulky >= self._max_queue if record.bulky else len(self._pending) - bulky >= self._scalar_bound
        if full:
            self.dropped += 1
            return
        if record.bulky:
            self._bulky_in += 1
        self._pending.append(record)
        if urgent or (len(self._pending) >= self._max_queue // 2 and not self._wake.is_set()):
            self._wake.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until everything queued so far is in the file (True) or ``timeout`` passes."""
        if not self.alive:
            return False
        done = threading.Event()
        self._pending.append(_Flush(done))
        self._wake.set()
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, fsync and close; gives up after ``timeout`` (hung disk)."""
        thread = getattr(self, "_thread", None)
        if thread is None or not thread.is_alive():
            return
        self._pending.append(_Stop())
        self._wake.set()
        thread.join(timeout)

    def _write(self, event: Event) -> None:
        assert self._file is not None
        self._file.write(_frame(event.SerializeToString()))

    def _run(self) -> None:
        while True:
            self._wake.wait(self._flush_secs)
            self._wake.clear()
            urgent = False
            wrote = False
            while self._pending:
                item = self._pending.popleft()
                if isinstance(item, Record) and item.bulky:
                    self._bulky_out += 1
                try:
                    if isinstance(item, _Stop):
                        self._last_pass()
                        self._finish()
                        return
                    if isinstance(item, Record) and self.error is None:
                        values, item_urgent = item.build()
                        self._write(Event(step=item.step, wall_time=item.wall_time, summary=Summary(value=values)))
                        urgent, wrote = urgent or item_urgent, True
                    if isinstance(item, _Flush) and self.error is None:
                        self._sync(fsync=False)
                        self._synced(urgent=True)
                except Exception as exc:  # noqa: BLE001 - contained, reported once by the shim
                    if self.error is None:
                        self.error = exc
                if isinstance(item, _Flush):
                    item.done.set()
            try:
                if wrote and self.error is None:
                    self._sync(fsync=urgent)
                    self._synced(urgent)
            except Exception as exc:  # noqa: BLE001
                if self.error is None:
                    self.error = exc

    def _sync(self, fsync: bool) -> None:
        assert self._file is not None
        self._file.flush()
        if fsync:
            os.fsync(self._file.fileno())

    def _synced(self, urgent: bool) -> None:
        if self._after_sync is not None:
            self._after_sync(urgent)

    def _last_pass(self) -> None:
        """Before closing: the guard's final look, and the records it adds (alert notes), reach the file."""
        if self._after_sync is None or self.error is not None:
            return
        try:
            self._sync(fsync=False)
            self._after_sync(True)
            while self._pending:
                item = self._pending.popleft()
                if isinstance(item, Record):
                    values, _ = item.build()
                    self._write(Event(step=item.step, wall_time=item.wall_time, summary=Summary(value=values)))
                elif isinstance(item, _Flush):
                    item.done.set()
        except Exception as exc:  # noqa: BLE001 - contained, reported once by the shim
            self.error = exc

    def _finish(self) -> None:
        if self._file is None:
            return
        try:
            if self.error is None:
                self._sync(fsync=True)
        except Exception as exc:  # noqa: BLE001
            self.error = exc
        finally:
            try:
                self._file.close()
            except Exception:  # noqa: BLE001 - the first error is already recorded
                pass
            self._file = None  # closed: submit() drops, alive is False
