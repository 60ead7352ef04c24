"""TFRecord framing over one growing file, incremental and corruption-tolerant.

A record is ``uint64 length`` (LE) · ``uint32 masked_crc32c(length bytes)`` · data ·
``uint32 masked_crc32c(data)``. :class:`RecordFramer` walks a file from a remembered offset
and hands out :class:`RecordBlock` s: one bounded buffer plus numpy arrays locating the
complete, verified records in it. Nothing here decodes a payload.

Why it is built this way:
- Speed: the only per-record Python work is one ``struct`` unpack in the framing walk.
  Length CRCs of a whole block, and data CRCs of its short records (every scalar event),
  are verified at once with numpy table lookups; long records get one hardware ``crc32c``
  call each.
- Memory: buffers are bounded by ``block_bytes`` or by one plausible record (its length CRC
  verified and the bytes present on disk); an absurd length never causes an allocation.
- Corruption: a bad data CRC drops exactly that record; a bad length CRC or absurd length
  is followed by a resync scan to the next record whose header *and* data CRC verify.
  A bad region that reaches the end of the file is treated like a partial record (a torn
  write may still be filled in), so nothing is declared lost until valid data follows it.
- Torn records: a record whose header verifies but which is cut short (a job killed while
  writing it, then resumed by appending) announces a length that swallows the records after
  it. A record that is incomplete, or complete with a bad data CRC, and not followed by a
  verified record is therefore scanned like a bad region: a verifiable record starting
  inside its announced extent proves the tear, and reading resumes there.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import crc32c
import numpy as np

HEADER_BYTES = 12
FOOTER_BYTES = 4
OVERHEAD_BYTES = HEADER_BYTES + FOOTER_BYTES
_MASK_DELTA = 0xA282EAD8
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


def masked_crc(data: bytes | memoryview) -> int:
    """TFRecord's masked CRC-32C: rotate right by 15 bits, add a constant (mod 2**32)."""
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _masked(crc: np.ndarray) -> np.ndarray:
    return ((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(_MASK_DELTA)


def _header_crc_ok(u8: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Vectorised: does the header at each position carry a valid masked length CRC?"""
    return _masked(_crc_same_length(u8, positions, 8)) == _gather_u32(u8, positions + 8)


def byte_rows(u8: np.ndarray, positions: np.ndarray, width: int) -> np.ndarray:
    """``width`` consecutive bytes at each position, as an (N, width) array: one row gather
    on an overlapping-windows view (cheaper to build than ``sliding_window_view``)."""
    windows = np.ndarray((max(u8.shape[0] - width + 1, 0), width), np.uint8, u8, 0, (1, 1))
    return windows[positions]


def _gather_u32(u8: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Little-endian uint32 at each (unaligned) position."""
    return byte_rows(u8, positions, 4).view("<u4").ravel()


def _gather_u64(u8: np.ndarray, positions: np.ndarray) -> np.ndarray:
    return byte_rows(u8, positions, 8).view("<u8").ravel()


@dataclass(frozen=True)
class FramingProblem:
    """A framing defect at an absolute file offset (reported once, when resolved)."""

    offset: int
    kind: str  # "bad_length_crc" | "bad_data_crc" | "too_large" | "torn_record" | "not_event_file"
    message: str
    skipped_bytes: int = 0


@dataclass
class RecordBlock:
    """Complete, verified records inside one buffer read from the file.

    ``starts``/``lengths`` locate each record's data (``buf[starts[i]:starts[i]+lengths[i]]``);
    ``offsets`` are the absolute file offsets of the record headers (used in problem reports).
    ``consumed`` is how many file bytes this block moved the framer forward.
    """

    buf: bytes
    starts: np.ndarray
    lengths: np.ndarray
    offsets: np.ndarray
    consumed: int
    problems: list[FramingProblem] = field(default_factory=list)


@dataclass
class _BadRegion:
    """An unresolved run of bytes that does not frame, starting at ``start``.

    ``kind`` "record": a header that verifies, whose record is incomplete or fails its data
    CRC, announcing a record ending at ``claimed_end``; what it was (a record still landing,
    a damaged record, a torn one) is decided by where the next valid record starts.
    ``crc_failed``: its data CRC was found wrong, so only a verified CRC proves it filled in
    since (with CRC checks off, a structurally complete record otherwise counts as valid).
    """

    kind: str
    start: int
    scan_from: int  # positions in [start+1, scan_from) start no valid record, except pending
    claimed_end: int = 0
    pending: list[int] = field(default_factory=list)  # plausible headers, record not complete yet
    crc_failed: bool = False


_EMPTY = np.empty(0, dtype=np.int64)
_SCAN_BYTES = 1 << 20  # resync scans garbage in 1 MiB windows: bounded temporaries
_SNIFF_BYTES = 64 << 10  # how far past a bad byte 0 we look for a record before giving up
_MAX_PENDING = 64  # incomplete candidates a bad region remembers (real ones: one, at its end)


class RecordFramer:
    """Incremental framing state of one file: the next offset and any open bad region.

    ``pread(offset, size)`` must return up to ``size`` bytes of the file at ``offset``.
    """

    def __init__(
        self,
        *,
        check_crc: bool = True,
        max_record_bytes: int = 1 << 30,
        block_bytes: int = 4 << 20,
    ) -> None:
        self.check_crc = check_crc
        self.max_record_bytes = max_record_bytes
        self.block_bytes = max(block_bytes, 64)
        self.offset = 0
        self.dead = False  # set when the file turns out not to be an event file
        # Size of a file declared dead on fewer bytes than a sniff looks at (a live file with
        # a damaged head): it is judged again, silently, once it has grown.
        self.sniffed_at: int | None = None
        self._bad: _BadRegion | None = None

    # -- persistence -------------------------------------------------------------------
    def state_dict(self) -> dict:
        b = self._bad
        bad = None if b is None else [b.kind, b.start, b.scan_from, b.claimed_end, list(b.pending), b.crc_failed]
        return {"offset": self.offset, "dead": self.dead, "bad": bad, "sniffed_at": self.sniffed_at}

    def load_state_dict(self, state: dict) -> None:
        self.offset = int(state["offset"])
        self.dead = bool(state.get("dead", False))
        sniffed = state.get("sniffed_at")
        self.sniffed_at = None if sniffed is None else int(sniffed)
        bad = state.get("bad")
        if bad is None:
            self._bad = None
        else:
            pending = [int(x) for x in bad[4]] if len(bad) > 4 else []
            crc_failed = bool(bad[5]) if len(bad) > 5 else False
            self._bad = _BadRegion(str(bad[0]), *(int(x) for x in bad[1:4]), pending[:_MAX_PENDING], crc_failed=crc_failed)

    def reset(self) -> None:
        """Forget everything: the file was rewritten and is read again from byte 0."""
        self.offset = 0
        self.dead = False
        self.sniffed_at = None
        self._bad = None

    # -- reading -----------------------------------------------------------------------
    def read(
        self, pread: Callable[[int, int], bytes], size: int, max_bytes: int | None = None
    ) -> Iterator[RecordBlock]:
        """Yield blocks of complete records between ``self.offset`` and ``size``.

        Stops at a partial record (it comes back complete on a later call), at the end of
        the file, or once about ``max_bytes`` bytes have been consumed (at least one record
        is always consumed when one is available, so progress is guaranteed).
        """
        budget = float("inf") if max_bytes is None else max(int(max_bytes), 1)
        consumed = 0
        if self.dead and self.sniffed_at is not None and size > self.sniffed_at:
            self.dead = False  # judged on too few bytes: judge again on what is there now
        while not self.dead and consumed < budget:
            if self._bad is not None:
                block = self._resync(pread, size, budget - consumed)
            else:
                block = self._frame_block(pread, size, budget - consumed)
            if block is None:
                return
            consumed += block.consumed
            yield block

    def _frame_block(
        self, pread: Callable[[int, int], bytes], size: int, budget: float
    ) -> RecordBlock | None:
        pos = self.offset
        if pos + HEADER_BYTES > size:
            return None
        want = int(min(self.block_bytes, size - pos, max(budget, HEADER_BYTES)))
        buf = pread(pos, want)
        if len(buf) < HEADER_BYTES:
            return None
        starts, end = _walk(buf)
        u8 = np.frombuffer(buf, dtype=np.uint8)
        lengths = _gather_u64(u8, starts)
        header_cut = False
        if starts.size:
            ok = _header_crc_ok(u8, starts) & (lengths <= np.uint64(self.max_record_bytes))
            if not ok.all():
                cut = int(np.argmin(ok))
                end = int(starts[cut])
                starts, lengths = starts[:cut], lengths[:cut]
                header_cut = True
        if starts.size == 0:
            return self._stuck(pread, buf, pos, size)
        lengths = lengths.astype(np.int64)
        problems: list[FramingProblem] = []
        keep = None
        bad = self._bad_records(pread, buf, u8, starts, lengths, None if header_cut else pos + end, size)
        if bad.any():
            # A bad record is plain damage, skipped exactly, unless it may be torn: its
            # announced length swallows what follows. That is possible when no verified
            # record follows it yet (or it is still landing), or when a plausible header
            # starts inside its extent (a torn record's announced end can fall exactly on
            # a later record's start). The region scan decides those.
            good = np.flatnonzero(~bad)
            cut = int(good[-1]) + 1 if good.size else 0
            suspect = _headers_inside(u8, starts[:cut][bad[:cut]], lengths[:cut][bad[:cut]], self.max_record_bytes)
            if suspect.any():
                cut = int(np.flatnonzero(bad[:cut])[np.argmax(suspect)])
            if cut < starts.size:
                at = pos + int(starts[cut])
                self._bad = _BadRegion("record", at, at + 1, at + OVERHEAD_BYTES + int(lengths[cut]), crc_failed=True)
                end = int(starts[cut])
                bad, starts, lengths = bad[:cut], starts[:cut], lengths[:cut]
            for i in np.flatnonzero(bad):
                problems.append(_bad_data_problem(pos + int(starts[i]), int(lengths[i])))
            keep = ~bad
        if end == 0:
            return RecordBlock(b"", _EMPTY, _EMPTY, _EMPTY, 0)  # a region scan follows
        self.offset = pos + end
        offsets = starts + pos
        data_starts = starts + HEADER_BYTES
        if keep is not None:
            data_starts, lengths, offsets = data_starts[keep], lengths[keep], offsets[keep]
        return RecordBlock(buf, data_starts, lengths, offsets, end, problems)

    def _stuck(
        self, pread: Callable[[int, int], bytes], buf: bytes, pos: int, size: int
    ) -> RecordBlock | None:
        """No complete record starts the buffer: partial, oversized-for-block, or bad."""
        length = _U64.unpack_from(buf, 0)[0]
        header_ok = _U32.unpack_from(buf, 8)[0] == masked_crc(memoryview(buf)[:8])
        if header_ok and length <= self.max_record_bytes:
            if pos + OVERHEAD_BYTES + length <= size:
                big = pread(pos, OVERHEAD_BYTES + length)  # one plausible record > block size
                if len(big) == OVERHEAD_BYTES + length:
                    return self._single(big, pos, length)
            # Incomplete (or bad, see _single): still landing, or torn. The scan decides.
            self._bad = _BadRegion("record", pos, pos + 1, pos + OVERHEAD_BYTES + length)
            return self._resync(pread, size, float("inf"))
        kind = "bad_length_crc" if not header_ok else "too_large"
        self._bad = _BadRegion(kind, pos, pos + 1)
        if pos > 0 or not any(buf[:HEADER_BYTES]):  # zeros at byte 0: maybe a torn write
            return self._resync(pread, size, float("inf"))
        # Garbage at byte 0: an event file with a damaged head still has verifiable records
        # right after it; anything else (text, another format) is not an event file.
        block = self._resync(pread, size, _SNIFF_BYTES)
        said = self.sniffed_at is not None
        if self._bad is None or self._bad.pending:  # a record found, or one still landing
            self.sniffed_at = None
            return block
        self._bad = None
        self.dead = True
        self.sniffed_at = size if size < _SNIFF_BYTES + HEADER_BYTES else None
        if said:  # judged again on more bytes, same verdict: already reported
            return RecordBlock(b"", _EMPTY, _EMPTY, _EMPTY, 0)
        what = "length CRC mismatch" if not header_ok else f"record length {length}"
        if self.sniffed_at is not None:
            what += f", in the {size} bytes written so far; judged again if it grows"
        return RecordBlock(
            b"", _EMPTY, _EMPTY, _EMPTY, 0,
            [FramingProblem(0, "not_event_file", f"first record does not frame ({what})")],
        )

    def _plausible_at(self, pread: Callable[[int, int], bytes], at: int) -> bool:
        """Does a header with a valid length CRC (record not complete yet) start at ``at``?"""
        head = pread(at, HEADER_BYTES)
        return (
            len(head) == HEADER_BYTES
            and _U64.unpack_from(head, 0)[0] <= self.max_record_bytes
            and _U32.unpack_from(head, 8)[0] == masked_crc(head[:8])
        )

    def _single(self, rec: bytes, pos: int, length: int) -> RecordBlock:
        """One record read on its own (larger than a block)."""
        end = OVERHEAD_BYTES + length
        if self.check_crc and _U32.unpack_from(rec, HEADER_BYTES + length)[0] != masked_crc(
            memoryview(rec)[HEADER_BYTES : HEADER_BYTES + length]
        ):
            self._bad = _BadRegion("record", pos, pos + 1, pos + end)  # damaged or torn: scan
            return RecordBlock(b"", _EMPTY, _EMPTY, _EMPTY, 0)
        self.offset = pos + end
        one = np.array([HEADER_BYTES], dtype=np.int64)
        return RecordBlock(rec, one, np.array([length], dtype=np.int64), np.array([pos]), end)

    def _resync(
        self, pread: Callable[[int, int], bytes], size: int, budget: float
    ) -> RecordBlock | None:
        """Find the next verifiable record after a bad region; wait if none exists yet."""
        bad = self._bad
        assert bad is not None
        if self._record_verifies(pread, bad.start, size, need_crc=bad.crc_failed):
            self._bad = None  # the bytes were filled in since (torn write): nothing lost
            return RecordBlock(b"", _EMPTY, _EMPTY, _EMPTY, 0)
        # Candidates whose record was not complete when scanned (a record landing in pieces,
        # or a false header claiming a length beyond EOF): the first to verify wins; one that
        # never completes hides nothing, because scanning goes on past it.
        for at in list(bad.pending):
            verdict = self._candidate(pread, at, size)
            if verdict:
                return self._resolve(at)
            if verdict is False:
                bad.pending.remove(at)
        scanned = 0
        while bad.scan_from + HEADER_BYTES <= size and scanned < budget:
            base = bad.scan_from
            want = min(_SCAN_BYTES, self.block_bytes, size - base)
            if base < bad.claimed_end:  # a damaged record's own extent first: O(its size)
                want = min(want, bad.claimed_end + HEADER_BYTES - base)
            buf = pread(base, int(want))
            if len(buf) < HEADER_BYTES:
                return None
            u8 = np.frombuffer(buf, dtype=np.uint8)
            cand = _plausible_headers(u8, self.max_record_bytes)
            for q in cand.tolist():
                verdict = self._candidate(pread, base + q, size)
                if verdict:
                    return self._resolve(base + q)
                if verdict is None and len(bad.pending) < _MAX_PENDING:
                    bad.pending.append(base + q)  # not complete on disk yet: look again later
            advanced = len(buf) - HEADER_BYTES + 1
            bad.scan_from = base + advanced
            scanned += advanced
        return None

    def _resolve(self, valid_at: int) -> RecordBlock:
        """Close the bad region: reading resumes at the verified record at ``valid_at``."""
        bad = self._bad
        assert bad is not None
        self._bad = None
        self.offset = valid_at
        return RecordBlock(b"", _EMPTY, _EMPTY, _EMPTY, valid_at - bad.start, _region_problems(bad, valid_at))

    def _candidate(self, pread: Callable[[int, int], bytes], at: int, size: int) -> bool | None:
        """True if a full record at ``at`` verifies, False if not, None if not on disk yet."""
        head = pread(at, HEADER_BYTES)
        length = _U64.unpack_from(head, 0)[0]
        if at + OVERHEAD_BYTES + length > size:
            return None
        rec = pread(at + HEADER_BYTES, length + FOOTER_BYTES)
        if len(rec) < length + FOOTER_BYTES:
            return None
        return _U32.unpack_from(rec, length)[0] == masked_crc(memoryview(rec)[:length])

    def _record_verifies(self, pread: Callable[[int, int], bytes], at: int, size: int, need_crc: bool = False) -> bool:
        """Is the record at ``at`` complete and valid (its data CRC only if ``check_crc`` or ``need_crc``)?"""
        if not self._plausible_at(pread, at):
            return False
        verdict = self._candidate(pread, at, size)
        return verdict is not None and (verdict or not (self.check_crc or need_crc))

    def _bad_records(
        self, pread: Callable[[int, int], bytes], buf: bytes, u8: np.ndarray, starts: np.ndarray,
        lengths: np.ndarray, next_at: int | None, size: int,
    ) -> np.ndarray:
        """Mask of the block's records whose data CRC fails. With CRC checks off, only the last
        record is checked, and only when what follows it (at ``next_at``; ``None``: a header
        that failed) does not frame: the mark of a torn
        record, whose announced length runs into the records appended after it. A structurally
        sound record is read unchecked, as RustBoard does."""
        if self.check_crc:
            return _bad_data_crc(buf, u8, starts, lengths)
        bad = np.zeros(starts.size, dtype=bool)
        framed_after = next_at is not None and (next_at + HEADER_BYTES > size or self._plausible_at(pread, next_at))
        if not framed_after:
            bad[-1:] = _bad_data_crc(buf, u8, starts[-1:], lengths[-1:])
        return bad


def _walk(buf: bytes) -> tuple[np.ndarray, int]:
    """Header offsets of the records that fit entirely in ``buf``, trusting lengths.

    This is the hot loop (one iteration per record); the lengths it trusts are verified
    afterwards in bulk by :func:`_header_crc_ok`, and the walk is cut at the first failure.
    """
    n = len(buf)
    unpack = _U64.unpack_from
    starts = []
    append = starts.append
    p = 0
    last = n - HEADER_BYTES
    while p <= last:
        e = p + OVERHEAD_BYTES + unpack(buf, p)[0]
        if e > n:
            break
        append(p)
        p = e
    return np.array(starts, dtype=np.int64), p


def _bad_data_crc(buf: bytes, u8: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Mask of records whose data CRC does not match their footer."""
    ds = starts + HEADER_BYTES
    raw = np.empty(ds.shape, dtype=np.uint32)
    by_call = lengths > _TABLE_CRC_MAX
    small = lengths[~by_call]
    sizes, counts = np.unique(small, return_counts=True)
    for size, count in zip(sizes.tolist(), counts.tolist()):
        if count < _TABLE_CRC_MIN_GROUP:
            by_call |= lengths == size
            continue
        rows = np.flatnonzero(lengths == size)
        raw[rows] = _crc_same_length(u8, ds[rows], size)
    rows = np.flatnonzero(by_call)
    if rows.size:
        a = ds[rows]
        slices = map(slice, a.tolist(), (a + lengths[rows]).tolist())
        # map() chains keep the per-record loop in C: one crc32c call per memoryview slice
        raw[rows] = np.fromiter(
            map(crc32c.crc32c, map(memoryview(buf).__getitem__, slices)), dtype=np.uint32, count=a.size
        )
    return _masked(raw) != _gather_u32(u8, ds + lengths)


def _distance_tables(depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Tables to compute CRC-32C of many equal-length short messages with numpy.

    CRC-32C of an L-byte message is affine: crc(m) = crc(0^L) ^ XOR_k T[L-1-k][m_k], where
    T[d][b] is the (zero-init) contribution of byte b followed by d bytes. T[0] comes from
    the crc32c package; each further row is the previous one shifted through one zero
    byte (the CRC register update), so no polynomial is hand-coded here.
    """
    zero = crc32c.crc32c(b"\0")
    tables = np.empty((depth, 256), dtype=np.uint32)
    tables[0] = [crc32c.crc32c(bytes([b])) ^ zero for b in range(256)]
    for d in range(1, depth):
        prev = tables[d - 1]
        tables[d] = (prev >> np.uint32(8)) ^ tables[0][prev & np.uint32(0xFF)]
    of_zeros = np.array([crc32c.crc32c(bytes(n)) for n in range(depth + 1)], dtype=np.uint32)
    return tables, of_zeros


# Short records (every scalar event) are CRC-checked ~2.4x faster by table lookups over
# all equal-length records of a block at once than by one crc32c call each (bench/read.py).
_TABLE_CRC_MAX = 256
_TABLE_CRC_MIN_GROUP = 16
_DIST_TABLES, _CRC_OF_ZEROS = _distance_tables(_TABLE_CRC_MAX)


def _crc_same_length(u8: np.ndarray, data_starts: np.ndarray, size: int) -> np.ndarray:
    """Plain CRC-32C of ``size`` bytes at each start, vectorised over the records."""
    mat = byte_rows(u8, data_starts, size)
    crc = np.full(data_starts.shape, _CRC_OF_ZEROS[size], dtype=np.uint32)
    for k in range(size):
        crc ^= _DIST_TABLES[size - 1 - k][mat[:, k]]
    return crc


def _plausible_headers(u8: np.ndarray, max_length: int) -> np.ndarray:
    """Buffer positions whose 12 bytes form a valid length/CRC pair with a sane length.

    A cheap prefilter first (the high bytes of a sane length are zero; an all-zero window,
    the usual torn-write fill, holds no valid header at all), then the exact length/CRC
    test on the few survivors. Memory stays O(window).
    """
    m = u8.shape[0] - HEADER_BYTES + 1
    if m <= 0 or not u8.any():
        return _EMPTY
    max_length = max(max_length, 0)
    keep = np.ones(m, dtype=bool)
    for k in range((max_length.bit_length() + 7) // 8, 8):
        keep &= u8[k : k + m] == 0
    if int(np.count_nonzero(keep)) > m // 4:  # zero-heavy data: slices beat gathers
        length = np.zeros(m, dtype=np.uint64)
        crc = np.full(m, _CRC_OF_ZEROS[8], dtype=np.uint32)
        stored = np.zeros(m, dtype=np.uint32)
        for k in range(8):
            byte = u8[k : k + m]
            length |= byte.astype(np.uint64) << np.uint64(8 * k)
            crc ^= _DIST_TABLES[7 - k][byte]
        for k in range(4):
            stored |= u8[8 + k : 8 + k + m].astype(np.uint32) << np.uint32(8 * k)
        return np.flatnonzero((_masked(crc) == stored) & (length <= np.uint64(max_length)))
    cand = np.flatnonzero(keep)
    ok = (_gather_u64(u8, cand) <= np.uint64(max_length)) & _header_crc_ok(u8, cand)
    return cand[ok]


def _resync_message(kind: str, skipped: int) -> str:
    what = "length CRC mismatch" if kind == "bad_length_crc" else "absurd record length"
    return f"{what}; skipped {skipped} bytes to the next valid record"


def _headers_inside(u8: np.ndarray, starts: np.ndarray, lengths: np.ndarray, max_length: int) -> np.ndarray:
    """Per record: does a plausible record header start strictly inside it? One vectorised
    scan of the buffer, however many records are asked about."""
    if starts.size == 0:
        return np.zeros(0, dtype=bool)
    heads = _plausible_headers(u8, max_length)
    return np.searchsorted(heads, starts + 1) < np.searchsorted(heads, starts + OVERHEAD_BYTES + lengths)


def _bad_data_problem(offset: int, length: int) -> FramingProblem:
    return FramingProblem(offset, "bad_data_crc", f"data CRC mismatch in a {length}-byte record; record skipped")


def _region_problems(bad: _BadRegion, valid_at: int) -> list[FramingProblem]:
    """What a bad region turned out to be, now that the next valid record starts at ``valid_at``."""
    skipped = valid_at - bad.start
    if bad.kind != "record":
        return [FramingProblem(bad.start, bad.kind, _resync_message(bad.kind, skipped), skipped)]
    length = bad.claimed_end - bad.start - OVERHEAD_BYTES
    if valid_at < bad.claimed_end:  # a valid record inside the announced extent: torn
        message = (
            f"a record announcing {length} bytes is cut short by the next valid record after {skipped} "
            f"bytes (a writer killed mid-record, then resumed?); skipped {skipped} bytes"
        )
        return [FramingProblem(bad.start, "torn_record", message, skipped)]
    problems = [_bad_data_problem(bad.start, length)]
    gap = valid_at - bad.claimed_end
    if gap:
        problems.append(FramingProblem(bad.claimed_end, "bad_length_crc", _resync_message("bad_length_crc", gap), gap))
    return problems
