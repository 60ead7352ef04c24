"""Vectorised decoding of fixed-layout one-value events: TF2 tensor scalars and their kin.

TF2 ``tf.summary.scalar``, Keras, ``tensorboard.summary.Writer`` and torch ``new_style=True``
write each scalar as ``09 <wall f64> [10 <step varint>] 2a L <summary>`` where ``<summary>``
(tag, ``TensorProto``, usually plugin metadata) is byte-for-byte the same for every event of a
tag except the 4 or 8 value bytes. So the upb path decodes a tag's first such event once, learns
its summary bytes as a *template* (where the value sits, its dtype) and proves the template by
decoding two probe values through upb; every later event whose summary equals a template outside
the value bytes is then decoded for a whole block at once with numpy: no Python object per
record. Anything else (other layouts, other dtypes, several values) stays on the upb path.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tbmon.monitor.event_heads import EventHeads, varints
from tbmon.monitor.records import byte_rows

MAX_SUMMARY_BYTES = 255
"""Longest summary a template covers (TF2 scalar summaries are 30-90 bytes)."""
MAX_TEMPLATES = 4096
"""Templates a decoder keeps (about one per scalar tag); further tags stay on the upb path."""
_VALUE_DTYPES = {4: "<f4", 8: "<f8"}
_PROBES = (1.5, -2.25)
_MAX_TRIES_PER_TAG = 8  # layouts tried per tag (a tag logged with metadata then without: 2)  # two values whose bytes differ from each other in every position


@dataclass
class TemplateMatch:
    """Records of a block decoded from templates: one scalar each."""

    idx: np.ndarray
    tag_id: np.ndarray
    step: np.ndarray
    wall_time: np.ndarray
    value: np.ndarray


class _Group:
    """Templates of one (summary length, value offset, value width): rows to compare against."""

    def __init__(self) -> None:
        self.rows: list[bytes] = []  # template summary bytes, value bytes zeroed
        self.tag_ids: list[int] = []
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None  # hashes, template index

    def add(self, row: bytes, tag_id: int) -> None:
        self.rows.append(row)
        self.tag_ids.append(tag_id)
        self._sorted = None

    def index(self) -> tuple[np.ndarray, np.ndarray]:
        if self._sorted is None:
            mat = np.frombuffer(b"".join(self.rows), np.uint8).reshape(len(self.rows), -1)
            h = _row_hash(mat)
            order = np.argsort(h, kind="stable")
            self._sorted = (h[order], order)
        return self._sorted


def _row_hash(mat: np.ndarray) -> np.ndarray:
    """64-bit FNV-style hash of each row (rows are compared byte-for-byte after a hit)."""
    width = 8 * -(-mat.shape[1] // 8)
    if width != mat.shape[1]:
        mat = np.concatenate([mat, np.zeros((mat.shape[0], width - mat.shape[1]), np.uint8)], axis=1)
    words = np.ascontiguousarray(mat).view("<u8")
    h = np.full(mat.shape[0], 0xCBF29CE484222325, dtype=np.uint64)
    for c in range(words.shape[1]):
        h = (h ^ words[:, c]) * np.uint64(0x100000001B3)
    return h


class ScalarTemplates:
    """Learned one-value summary layouts of a decoder, and the block matcher that uses them."""

    def __init__(self) -> None:
        self._groups: dict[tuple[int, int, int], _Group] = {}
        self._tries: dict[int, int] = {}  # tag id -> summaries that proved nothing (bounded)
        self.count = 0

    def learn(
        self, summary: bytes, value: float, tag_id: int, decode: Callable[[bytes], float | None]
    ) -> None:
        """Remember ``summary`` (one scalar value ``value`` of tag ``tag_id``) as a template.

        ``decode(summary_bytes)`` must return what the upb path makes of a summary (None if
        not one scalar of the same tag and kind). The value's position is where its f32 or
        f64 bytes occur; the template is kept only if two probe values written there come
        back from ``decode`` exactly, which proves those bytes are the value's payload.
        """
        tries = self._tries.get(tag_id, 0)
        if self.count >= MAX_TEMPLATES or len(summary) > MAX_SUMMARY_BYTES or tries >= _MAX_TRIES_PER_TAG:
            return
        for width, fmt in ((4, "<f"), (8, "<d")):
            try:
                raw = struct.pack(fmt, value)
            except OverflowError:  # a double beyond float32's range
                continue
            if fmt == "<f" and struct.unpack(fmt, raw)[0] != value and value == value:
                continue  # not a float32 value
            at = summary.rfind(raw)
            if at >= 0 and self._proves(summary, at, width, fmt, decode):
                row = summary[:at] + bytes(width) + summary[at + width :]
                group = self._groups.setdefault((len(summary), at, width), _Group())
                if row not in group.rows:
                    group.add(row, tag_id)
                    self.count += 1
                return
        self._tries[tag_id] = tries + 1  # a tag whose layout never proves stops costing

    @staticmethod
    def _proves(summary: bytes, at: int, width: int, fmt: str, decode: Callable[[bytes], float | None]) -> bool:
        for probe in _PROBES:
            trial = summary[:at] + struct.pack(fmt, probe) + summary[at + width :]
            if decode(trial) != probe:
                return False
        return True

    def match(self, u8: np.ndarray, heads: EventHeads) -> TemplateMatch:
        """Records (among ``heads``) whose summary equals a template outside its value bytes."""
        if not self._groups or heads.idx.size == 0:
            return _EMPTY_MATCH
        length, used, fine = varints(u8, heads.summary_at + 1, 2)  # summaries up to 16 KiB
        length = length.astype(np.int64)
        at = heads.summary_at + 1 + used
        fits = fine & (at + length == heads.end)
        parts = []
        for (size, offset, width), group in self._groups.items():
            rows_idx = np.flatnonzero(fits & (length == size))
            if rows_idx.size == 0:
                continue
            mat = byte_rows(u8, at[rows_idx], size).copy()
            values = mat[:, offset : offset + width].copy().view(_VALUE_DTYPES[width]).ravel()
            mat[:, offset : offset + width] = 0
            hashes, order = group.index()
            h = _row_hash(mat)
            pos = np.minimum(np.searchsorted(hashes, h), hashes.size - 1)
            hit = hashes[pos] == h
            template = order[pos]
            rows = np.frombuffer(b"".join(group.rows), np.uint8).reshape(len(group.rows), size)
            hit &= (mat == rows[template]).all(axis=1)
            keep = np.flatnonzero(hit)
            if keep.size:
                sel = rows_idx[keep]
                tag_ids = np.asarray(group.tag_ids, dtype=np.int32)[template[keep]]
                parts.append((sel, tag_ids, values[keep].astype(np.float64)))
                fits[sel] = False  # one template per record
        if not parts:
            return _EMPTY_MATCH
        sel = np.concatenate([p[0] for p in parts])
        order = np.argsort(sel, kind="stable")
        sel = sel[order]
        return TemplateMatch(
            heads.idx[sel],
            np.concatenate([p[1] for p in parts])[order],
            heads.step[sel],
            heads.wall_time[sel],
            np.concatenate([p[2] for p in parts])[order],
        )


_EMPTY_MATCH = TemplateMatch(
    np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0), np.empty(0)
)
