"""`EventFileReader`: one event file, read incrementally into columnar chunks.

Each :meth:`EventFileReader.read_new` opens the file, reads only the complete records added
since the previous call, closes it again (thousands of files never hold thousands of
handles), and returns a :class:`FileChunk` of per-tag numpy series. Nothing a file can
contain makes it raise: defects become :class:`ReadProblem` s, each reported once. Damage that
can repeat record after record (20,000 undecodable records) is listed once per file with a
count; every occurrence is counted in :attr:`EventFileReader.health`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from tbmon.analyzers.series import HistogramSeries, ScalarSeries
from tbmon.monitor.decode import DecodedBlock, EventDecoder, HistogramPoint
from tbmon.monitor.records import RecordBlock, RecordFramer
from tbmon.monitor.storage import LOCAL_FILES, Files, FileStat, OpenFile

_FINGERPRINT_BYTES = 64
REPEATABLE_KINDS = frozenset({"bad_data_crc", "bad_length_crc", "too_large", "torn_record", "bad_proto"})
"""Problem kinds a file can hold any number of: the first is listed, the rest counted."""


@dataclass(frozen=True)
class ReadProblem:
    """A defect found in a file; ``offset`` is where it starts, ``skipped_bytes`` what was lost.

    ``count`` > 1: this problem stands for that many of its kind in the file (the first one's
    offset and message; ``skipped_bytes`` summed), see :data:`REPEATABLE_KINDS`.
    """

    path: str
    offset: int
    kind: str
    message: str
    skipped_bytes: int = 0
    count: int = 1


@dataclass
class FileChunk:
    """Everything new in one file since the previous :meth:`EventFileReader.read_new`."""

    scalars: list[ScalarSeries]
    histograms: list[HistogramSeries]
    session_starts: list[int]
    problems: list[ReadProblem]
    rewound: bool
    records: int
    bytes: int


@dataclass
class FileHealth:
    """Cumulative counters of one file, for status lines and reports."""

    records: int = 0
    bytes_read: int = 0
    problems: dict[str, int] = field(default_factory=dict)
    last_problem: ReadProblem | None = None
    is_event_file: bool | None = None  # None until the first record has been read


class EventFileReader:
    """Incremental reader of one TFRecord event file (see module docstring).

    ``files`` is where the file lives: the local filesystem by default, or an object store
    (:mod:`tbmon.monitor.remote`), which serves the same stat and ranged reads.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        check_crc: bool = True,
        max_record_bytes: int = 1 << 30,
        block_bytes: int = 4 << 20,
        files: Files = LOCAL_FILES,
        histograms: str = "full",
    ) -> None:
        self.path = os.fspath(path)
        self._keep_buckets = histogram_buckets(histograms)
        self._files = files
        self._framer = RecordFramer(
            check_crc=check_crc, max_record_bytes=max_record_bytes, block_bytes=block_bytes
        )
        self._decoder = EventDecoder(keep_buckets=self._keep_buckets)
        self._seq = 0
        self._fingerprint = b""
        self._stat_key: tuple | None = None
        self._missing: str | None = None  # "deleted"/"unreadable" already reported
        self.health = FileHealth()
        self._listed: dict[str, ReadProblem] = {}  # repeatable kind -> its first occurrence
        self._skipped: dict[str, int] = {}  # repeatable kind -> bytes skipped, all occurrences

    @property
    def offset(self) -> int:
        return self._framer.offset

    # -- persistence -------------------------------------------------------------------
    def state_dict(self) -> dict:
        """JSON-serialisable state; a reader restored from it continues where this one is."""
        return {
            "version": 1,
            "framer": self._framer.state_dict(),
            "seq": self._seq,
            "fingerprint": self._fingerprint.hex(),
            "kinds": dict(self._decoder.kinds),
            "health": {
                "records": self.health.records,
                "bytes_read": self.health.bytes_read,
                "problems": dict(self.health.problems),
                "is_event_file": self.health.is_event_file,
            },
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output. A malformed state (hand-edited or truncated
        state file) raises ``ValueError`` and leaves this reader unchanged."""
        try:
            framer = RecordFramer(
                check_crc=self._framer.check_crc,
                max_record_bytes=self._framer.max_record_bytes,
                block_bytes=self._framer.block_bytes,
            )
            framer.load_state_dict(state["framer"])
            seq = int(state["seq"])
            fingerprint = bytes.fromhex(state.get("fingerprint", ""))
            kinds = {str(k): str(v) for k, v in state.get("kinds", {}).items()}
            h = state.get("health", {})
            health = FileHealth(
                int(h.get("records", 0)),
                int(h.get("bytes_read", 0)),
                {str(k): int(v) for k, v in h.get("problems", {}).items()},
                None,
                h.get("is_event_file"),
            )
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise ValueError(f"invalid EventFileReader state: {exc!r}") from exc
        self._framer, self._seq, self._fingerprint = framer, seq, fingerprint
        self._decoder = EventDecoder(kinds, keep_buckets=self._keep_buckets)
        self._stat_key = None
        self.health = health
        # Kinds listed before the restart are not listed again (their first one is not kept).
        self._listed = {kind: ReadProblem(str(self.path), -1, kind, "") for kind in health.problems}
        self._skipped = {}

    # -- reading -----------------------------------------------------------------------
    def read_new(self, max_bytes: int | None = None) -> FileChunk:
        """Decode the complete records appended since the last call (about ``max_bytes``)."""
        out = _ChunkBuilder(self.path)
        try:
            handle = self._files.open(self.path)
        except FileNotFoundError:
            out.problems += self._gone("deleted", "file no longer exists")
            return self._finish(out)
        except OSError as exc:
            out.problems += self._gone("unreadable", _os_reason(exc))
            return self._finish(out)
        with handle:
            try:
                self._read_open(handle, out, max_bytes)
            except FileNotFoundError:  # an object deleted between listing and reading
                out.problems += self._gone("deleted", "file no longer exists")
            except OSError as exc:  # e.g. EIO on a network filesystem: keep what was read
                out.problems += self._gone("unreadable", _os_reason(exc))
        return self._finish(out)

    def _read_open(self, handle: OpenFile, out: _ChunkBuilder, max_bytes: int | None) -> None:
        st = handle.stat()
        if not st.regular:
            out.problems += self._gone("unreadable", "not a regular file")
            return
        head = b""

        def pread(offset: int, size: int) -> bytes:
            nonlocal head
            data = handle.pread(offset, size)
            if offset == 0 and len(data) > len(head):
                head = data[:_FINGERPRINT_BYTES]  # the fingerprint below costs no second read
            return data

        out.rewound = self._check_replaced(pread, st, out.problems)
        for block in self._framer.read(pread, st.size, max_bytes):
            self._add_block(block, out)
        if not self._fingerprint and (self._framer.offset > 0 or self._framer.dead):
            # Verified bytes only (or, for a non-event file, its head), so a replaced
            # file is told apart from one that merely grew.
            known = min(_FINGERPRINT_BYTES, st.size if self._framer.dead else self._framer.offset)
            self._fingerprint = head[:known] if len(head) >= known else handle.pread(0, known)
        self._missing = None

    def upcoming_reads(self, st: FileStat) -> list[tuple[int, int]]:
        """The byte ranges ``[start, end)`` the next :meth:`read_new` will read first, given the
        file's stat: none if it did not change; else the fingerprint check and the new bytes.
        An object store fetches them ahead for many files at once."""
        if (st.version, st.size) == self._stat_key or self._framer.dead:
            return []
        ranges = []
        if self._fingerprint and st.size >= self._framer.offset:
            ranges.append((0, len(self._fingerprint)))
        if st.size > self._framer.offset:
            ranges.append((self._framer.offset, min(st.size, self._framer.offset + self._framer.block_bytes)))
        return ranges

    def size(self) -> int | None:
        """The file's current size, None once it is gone."""
        return self._files.size(self.path)

    def unread_tail(self) -> ReadProblem | None:
        """The bytes after the last complete record, as a problem, once no more will be written.

        While a writer is active such bytes are a record still landing and are waited for. A
        one-shot read has no later: they are a record its writer never finished (a killed job,
        a full disk) or a damaged last record, and the user is told they were skipped.
        """
        if self._framer.dead or self._missing:
            return None
        size = self.size()
        if size is None:
            return None
        left = size - self._framer.offset
        if left <= 0:
            return None
        problem = ReadProblem(
            self.path, self._framer.offset, "truncated",
            "the file ends with an incomplete or damaged record (still being written, or cut short by a "
            "killed job or a full disk)", left,
        )
        self._count(problem)
        return problem

    def _check_replaced(self, pread: Callable[[int, int], bytes], st: FileStat, problems: list[ReadProblem]) -> bool:
        """Detect a shrunk or replaced file; then start over from byte 0. A file rewritten
        whole with the same start and more bytes (an object re-uploaded) merely grew."""
        key = (st.version, st.size)
        if key == self._stat_key:
            return False
        self._stat_key = key
        reason = None
        if st.size < self._framer.offset:
            reason = f"file shrank from {self._framer.offset} to {st.size} bytes"
        elif self._fingerprint and pread(0, len(self._fingerprint)) != self._fingerprint:
            reason = "first record changed: file was replaced"
        if reason is None:
            return False
        problems.append(ReadProblem(self.path, 0, "rewritten", f"{reason}; reading again from the start"))
        self._framer.reset()
        self._fingerprint = b""
        self._listed, self._skipped = {}, {}  # a new file: its damage is news again
        self.health.is_event_file = None
        return True

    def _gone(self, kind: str, message: str) -> list[ReadProblem]:
        if self._missing == kind:
            return []
        self._missing = kind
        self._stat_key = None
        return [ReadProblem(self.path, self._framer.offset, kind, message)]

    def _add_block(self, block: RecordBlock, out: _ChunkBuilder) -> None:
        path = out.path
        for p in block.problems:
            out.problems.append(ReadProblem(path, p.offset, p.kind, p.message, p.skipped_bytes))
        out.bytes += block.consumed
        n = int(block.starts.shape[0])
        if n == 0:
            return
        out.records += n
        decoded = self._decoder.decode(block.buf, block.starts, block.lengths, self._seq)
        for r, reason in decoded.bad_proto:
            offset = int(block.offsets[r])
            if offset == 0:  # a TFRecord file, but not of Events: ignore all of it
                self._framer.dead = True
                out.problems.append(ReadProblem(path, 0, "not_event_file", f"first record is not an Event ({reason})"))
                return
            out.problems.append(ReadProblem(path, offset, "bad_proto", f"record is not a valid Event: {reason}"))
        self._seq += decoded.n_values
        out.add(decoded)

    def _count(self, problem: ReadProblem) -> None:
        h = self.health
        h.problems[problem.kind] = h.problems.get(problem.kind, 0) + 1
        h.last_problem = problem
        if problem.kind == "not_event_file":
            h.is_event_file = False

    def counted(self, kind: str, *, final: bool) -> ReadProblem | None:
        """The listed problem of a repeatable ``kind`` with every occurrence so far counted
        (``final``: no more reading follows, as in a one-shot report)."""
        first = self._listed.get(kind)
        count = self.health.problems.get(kind, 0)
        if first is None or first.offset < 0 or count == 0:
            return None
        message = first.message
        if count > 1:
            so_far = "" if final else " so far (later ones are counted, not listed)"
            message += f" [{count} such problems in this file{so_far}]"
        return replace(first, message=message, count=count, skipped_bytes=self._skipped.get(kind, 0))

    def _list_once(self, problems: list[ReadProblem]) -> list[ReadProblem]:
        """Repeatable problems: the first of each kind is listed, with this call's count."""
        out: list[ReadProblem] = []
        new: list[str] = []
        for p in problems:
            if p.kind not in REPEATABLE_KINDS:
                out.append(p)
                continue
            self._skipped[p.kind] = self._skipped.get(p.kind, 0) + p.skipped_bytes
            if p.kind not in self._listed:
                self._listed[p.kind] = p
                new.append(p.kind)
                out.append(p)
        listed = {kind: self.counted(kind, final=False) for kind in new}
        return [listed[p.kind] if p.kind in listed else p for p in out]

    def _finish(self, out: _ChunkBuilder) -> FileChunk:
        h = self.health
        h.records += out.records
        h.bytes_read += out.bytes
        for p in out.problems:
            self._count(p)
        out.problems = self._list_once(out.problems)
        if out.records and not self._framer.dead:  # also after a premature "not an event file"
            h.is_event_file = True
        return out.build(self._decoder.tags)


class _ChunkBuilder:
    """Collects decoded blocks as per-tag pieces right away, so a block's columns are freed
    as soon as they are split (peak memory ~ one copy of the chunk's points)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[ReadProblem] = []
        self.rewound = False
        self.records = 0
        self.bytes = 0
        self.session_starts: list[int] = []
        self._scalars: dict[int, list[tuple[np.ndarray, ...]]] = {}
        self._histograms: dict[int, list[HistogramPoint]] = {}

    def add(self, d: DecodedBlock) -> None:
        self.session_starts += d.session_starts
        for h in d.histograms:
            self._histograms.setdefault(h.tag_id, []).append(h)
        if d.scalar_tag.size == 0:
            return
        order = np.argsort(d.scalar_tag, kind="stable")  # seq order kept within a tag
        tag_sorted = d.scalar_tag[order]
        cut = np.flatnonzero(tag_sorted[1:] != tag_sorted[:-1]) + 1
        bounds = [0, *cut.tolist(), int(tag_sorted.size)]
        cols = (d.scalar_seq, d.scalar_step, d.scalar_wall_time, d.scalar_value)
        for a, b in zip(bounds[:-1], bounds[1:]):
            rows = order[a:b]  # independent per-tag arrays: each can be freed on its own
            self._scalars.setdefault(int(tag_sorted[a]), []).append(tuple(c[rows] for c in cols))

    def build(self, tags: list[str]) -> FileChunk:
        scalars = []
        for tid in list(self._scalars):
            parts = self._scalars.pop(tid)  # free the pieces tag by tag
            cols = [p[0] if len(parts) == 1 else np.concatenate(p) for p in zip(*parts)]
            del parts
            scalars.append(ScalarSeries(tags[tid], *cols))
        histograms = [_histogram_series(tags[tid], pts) for tid, pts in self._histograms.items()]
        scalars.sort(key=lambda s: int(s.seq[0]))
        histograms.sort(key=lambda s: int(s.seq[0]))
        return FileChunk(
            scalars=scalars,
            histograms=histograms,
            session_starts=self.session_starts,
            problems=self.problems,
            rewound=self.rewound,
            records=self.records,
            bytes=self.bytes,
        )


HISTOGRAM_MODES = ("summary", "full")


def histogram_buckets(mode: str) -> bool:
    """Does histogram mode ``mode`` keep every bucket ("full") or the per-step summary only?"""
    if mode not in HISTOGRAM_MODES:
        raise ValueError(f"histograms={mode!r}: expected one of {', '.join(map(repr, HISTOGRAM_MODES))}")
    return mode == "full"


def _histogram_series(tag: str, points: list[HistogramPoint]) -> HistogramSeries:
    """Points as columns; bucket tuples are empty when the buckets were not kept."""
    def col(name: str, dtype: type) -> np.ndarray:
        return np.array([getattr(p, name) for p in points], dtype=dtype)

    full = points[0].bucket_limits is not None

    return HistogramSeries(
        tag, col("seq", np.int64), col("step", np.int64), col("wall_time", np.float64),
        col("min", np.float64), col("max", np.float64), col("num", np.float64),
        col("sum", np.float64), col("sum_squares", np.float64),
        tuple(p.bucket_limits for p in points) if full else (),
        tuple(p.bucket_counts for p in points) if full else (),
    )


def _os_reason(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__
