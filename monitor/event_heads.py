"""Vectorised reads of protobuf wire data over many records at once: varints, event heads.

Every ``Event`` written by TensorBoard-compatible writers starts ``09 <wall_time f64>
[10 <step varint>]`` followed by its payload field; the block matchers (``simple_value``
scalars in ``decode``, tensor-scalar templates, histograms) all start from these heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tbmon.monitor.records import byte_rows


def at_clipped(u8: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return u8.take(pos, mode="clip")


def varints(u8: np.ndarray, pos: np.ndarray, max_bytes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Protobuf varints at each position: (value as uint64, bytes used, ok). ``ok`` is False
    where the varint runs past ``max_bytes``; reads are clipped to the buffer."""
    byte = at_clipped(u8, pos)
    value = (byte & 0x7F).astype(np.uint64)
    going = byte >= 0x80
    size = np.ones(pos.shape, dtype=np.int64)
    for k in range(1, max_bytes):
        if not going.any():
            break
        byte = at_clipped(u8, pos + k)
        value |= np.where(going, (byte & 0x7F).astype(np.uint64) << np.uint64(7 * k), np.uint64(0))
        size += going
        going &= byte >= 0x80
    return value, size, ~going


@dataclass
class EventHeads:
    """Where the summary of each ``09 wall [10 step] 2a L`` event starts, vectorised.

    Byte reads are clipped to the buffer: callers accept a record only if the layout they
    match ends exactly at the record's end, so no clipped byte ever takes part in a match.
    """

    idx: np.ndarray  # record indices (into the block) with this head
    wall_time: np.ndarray
    step: np.ndarray  # int64 (the varint's two's-complement bits)
    summary_at: np.ndarray  # buffer offset of the 0x2a tag byte of the summary field
    end: np.ndarray  # buffer offset just past the record


def event_heads(u8: np.ndarray, starts: np.ndarray, lengths: np.ndarray, min_length: int) -> EventHeads:
    """Decode wall time and step of every record that starts ``09 <f64> [10 <varint>] 2a``."""
    cand = np.flatnonzero((lengths >= min_length) & (at_clipped(u8, starts) == 0x09))
    s = starts[cand]
    p = s + 9
    has_step = at_clipped(u8, p) == 0x10
    step, vlen, fine = varints(u8, p + 1, 10)  # a 10th byte that still continues is malformed
    q = np.where(has_step, p + 1 + vlen, p)
    keep = np.flatnonzero((fine | ~has_step) & (at_clipped(u8, q) == 0x2A))
    s = s[keep]
    return EventHeads(
        cand[keep],
        byte_rows(u8, s + 1, 8).view("<f8").ravel(),
        np.where(has_step[keep], step[keep].view(np.int64), 0),
        q[keep],
        s + lengths[cand[keep]],
    )
