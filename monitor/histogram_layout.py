"""Vectorised decoding of one-histogram events (tensorboardX / torch ``add_histogram``, TF1).

Such an event is ``09 <wall> [10 <step>] 2a L 0a L 0a <tag len> <tag> 2a L <HistogramProto>``
with the ``HistogramProto`` fields in field order, each at most once: optional doubles ``min``
``max`` ``num`` ``sum`` ``sum_squares`` (proto3 omits zeros), then packed doubles
``bucket_limit`` and ``bucket``. All records of a block are walked through that layout at once
with numpy column reads, so a histogram costs no protobuf message and no Python float per
bucket. A record matches only if the walk ends exactly at its end and limits and counts pair
up; anything else (metadata, several values, unpacked buckets, other field orders, TF2 ``[k,3]``
tensors) is left to the upb path, which gives the same result for the layouts matched here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tbmon.monitor.event_heads import EventHeads, at_clipped, varints
from tbmon.monitor.records import byte_rows

MOMENTS = ("min", "max", "num", "sum", "sum_squares")
_MOMENT_KEYS = (0x09, 0x11, 0x19, 0x21, 0x29)  # fields 1-5, wire type fixed64
_LIMITS_KEY, _COUNTS_KEY = 0x32, 0x3A  # fields 6 and 7, length-delimited (packed)
_LENGTH_BYTES = 3  # length varints up to 2**21 - 1: records of 1 MiB+ take the big-record path


def _f64(u8: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return byte_rows(u8, np.clip(pos, 0, max(u8.shape[0] - 8, 0)), 8).view("<f8").ravel()


@dataclass
class HistogramMatch:
    """One-histogram records of a block, as columns; buckets located, not copied."""

    idx: np.ndarray  # record indices into the block
    step: np.ndarray
    wall_time: np.ndarray
    moments: dict[str, np.ndarray]
    tag_at: np.ndarray
    tag_len: np.ndarray
    limits_at: np.ndarray  # buffer offset of the packed bucket_limit doubles
    counts_at: np.ndarray
    n_buckets: np.ndarray

    def subset(self, keep: np.ndarray) -> HistogramMatch:
        cols = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "moments"}
        return HistogramMatch(
            moments={k: v[keep] for k, v in self.moments.items()}, **{k: v[keep] for k, v in cols.items()}
        )


def match_histograms(u8: np.ndarray, heads: EventHeads) -> HistogramMatch:
    """Records among ``heads`` that are exactly one ``HistogramProto`` value (module doc)."""
    end = heads.end
    p = heads.summary_at + 1  # past the summary field's key, checked by event_heads
    ok = np.ones(p.shape, dtype=bool)
    # Summary, its one Value: each length must run exactly to the record's end.
    for key in (None, 0x0A):
        if key is not None:
            ok &= at_clipped(u8, p) == key
            p = p + 1
        length, size, fine = varints(u8, p, _LENGTH_BYTES)
        p = p + size
        ok &= fine & (p + length.astype(np.int64) == end)
    ok &= at_clipped(u8, p) == 0x0A  # Value.tag, < 128 bytes (one-byte length)
    tag_len = at_clipped(u8, p + 1).astype(np.int64)
    ok &= tag_len < 0x80
    tag_at = p + 2
    p = tag_at + tag_len
    ok &= at_clipped(u8, p) == 0x2A  # Value.histo
    length, size, fine = varints(u8, p + 1, _LENGTH_BYTES)
    p = p + 1 + size
    ok &= fine & (p + length.astype(np.int64) == end)
    moments = {}
    for name, key in zip(MOMENTS, _MOMENT_KEYS):
        present = at_clipped(u8, p) == key
        moments[name] = np.where(present, _f64(u8, p + 1), 0.0)
        p = p + 9 * present
    located = []
    for key in (_LIMITS_KEY, _COUNTS_KEY):
        present = at_clipped(u8, p) == key
        length, size, fine = varints(u8, p + 1, _LENGTH_BYTES)
        length = np.where(present, length.astype(np.int64), 0)
        at = p + 1 + size
        ok &= fine | ~present
        located.append((at, length))
        p = np.where(present, at + length, p)
    (limits_at, limits_len), (counts_at, counts_len) = located
    ok &= (p == end) & (limits_len == counts_len) & (limits_len % 8 == 0)
    match = HistogramMatch(
        heads.idx, heads.step, heads.wall_time, moments, tag_at, tag_len, limits_at, counts_at, limits_len // 8
    )
    return match.subset(np.flatnonzero(ok))
