"""Record payloads (serialized ``Event`` protos) → columnar numpy arrays.

Two paths, one result:
- Fast path (vectorised): the overwhelmingly common record, one ``simple_value`` scalar per
  event as written by tensorboardX / torch.utils.tensorboard / TF1, has a fixed byte layout
  (``09 <wall_time f64> [10 <step varint>] 2a L 0a L 0a L <tag> 15 <value f32>``). All
  records of a block are matched against it at once with numpy gathers, so such a record
  costs no Python object at all.
- Template path (vectorised): one-value events whose summary bytes repeat for every event of
  a tag except the value (TF2 ``tf.summary``/Keras/torch ``new_style`` tensor scalars) are
  matched against layouts the slow path learned and proved (see ``scalar_templates``).
- Slow path: every record that does not match *exactly* goes through the compiled upb
  ``Event`` class from tensorboardX and is normalised here (TF2 tensor scalars of every dtype
  and encoding, ``HistogramProto``, TF2 ``[k,3]`` histogram tensors, ``SessionLog.START``).

Tag kinds are remembered per tag (``kinds``) because TF1 writers put the plugin metadata only
on the first value of a tag; the cache is part of the reader's saved state.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
import struct
import sys
from dataclasses import dataclass, field

import numpy as np
from google.protobuf.message import DecodeError

from tbmon.monitor.records import byte_rows
from tbmon.monitor.event_heads import EventHeads, event_heads
from tbmon.monitor.histogram_layout import MOMENTS, match_histograms
from tbmon.monitor.scalar_templates import MAX_SUMMARY_BYTES, ScalarTemplates, TemplateMatch

SCALAR = "scalar"
HISTOGRAM = "histogram"
OTHER = "other"
_PLUGIN_KIND = {"scalars": SCALAR, "histograms": HISTOGRAM}
_SESSION_START = 1  # SessionLog.START

# TensorProto dtype enum → numpy dtype of tensor_content (little-endian on disk).
_CONTENT_DTYPE = {
    1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?",
    17: "<u2", 19: "<f2", 22: "<u4", 23: "<u8",
}
# Scalars have 1 element and TF2 histograms k*3 (30 buckets by default); anything far larger
# is not a summary we use, and must not be materialised from a tiny broadcast field.
_MAX_TENSOR_ELEMENTS = 1 << 20
_DT_BFLOAT16 = 14
_DT_HALF = 19
_INT_VAL_DTYPES = {3, 4, 5, 6, 17}
MAX_TAG_CHARS = 512
"""Longer tags are cut (see :func:`bounded_tag`); real tags are far shorter (< 200)."""


def bounded_tag(tag: str) -> str:
    """``tag``, or its first :data:`MAX_TAG_CHARS` characters plus a marker with the full
    length and a digest of the whole tag (distinct long tags stay distinct). A 20 MB tag
    would otherwise be copied into every state save, alert, report line and plot name."""
    if len(tag) <= MAX_TAG_CHARS:
        return tag
    digest = hashlib.blake2b(tag.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()
    return f"{tag[:MAX_TAG_CHARS]}…[{len(tag)} chars, #{digest}]"


def _load_event_class() -> type:
    """tensorboardX's compiled ``Event`` class, WITHOUT running ``tensorboardX/__init__``.

    That ``__init__`` imports the writer and with it torch (1.1 s here, and the monitor must
    not import torch). We import only the generated ``proto`` subpackage under an unexecuted
    package object, and let that object finish the real import the first time anyone asks
    it for an attribute (e.g. ``from tensorboardX import SummaryWriter`` later in the same
    process), so tensorboardX keeps working normally for everyone else.
    """
    if "tensorboardX" in sys.modules:
        return importlib.import_module("tensorboardX.proto.event_pb2").Event
    spec = importlib.util.find_spec("tensorboardX")
    if spec is None or spec.loader is None:
        raise ImportError("tbmon needs tensorboardX (for its compiled Event protobuf class)")
    package = importlib.util.module_from_spec(spec)

    def finish_import(name: str) -> object:
        del package.__dict__["__getattr__"]
        spec.loader.exec_module(package)
        return getattr(package, name)

    sys.modules["tensorboardX"] = package
    try:
        event_class = importlib.import_module("tensorboardX.proto.event_pb2").Event
    except BaseException:
        del sys.modules["tensorboardX"]
        raise
    package.__getattr__ = finish_import
    return event_class


_Event = _load_event_class()


@dataclass
class HistogramPoint:
    """One histogram value in HistogramProto form (right edges + counts)."""

    tag_id: int
    seq: int
    step: int
    wall_time: float
    min: float
    max: float
    num: float
    sum: float
    sum_squares: float
    bucket_limits: np.ndarray | None  # None: decoded with keep_buckets=False
    bucket_counts: np.ndarray | None


def _by_seq(point: HistogramPoint) -> int:
    return point.seq


@dataclass
class _SlowValues:
    """Values found by the protobuf path in one block, as plain lists until the end."""

    rec: list[int] = field(default_factory=list)  # record index of each scalar
    k: list[int] = field(default_factory=list)  # its position among the record's values
    tag: list[int] = field(default_factory=list)
    step: list[int] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    histograms: list[HistogramPoint] = field(default_factory=list)
    hist_pos: list[tuple[int, int]] = field(default_factory=list)
    fast_histograms: int = 0  # how many of ``histograms`` (the first ones) the block matcher found
    session_starts: list[int] = field(default_factory=list)
    bad_proto: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class DecodedBlock:
    """Values decoded from one block of records, scalars as columns ordered by ``seq``."""

    scalar_tag: np.ndarray  # int32 ids into EventDecoder.tags
    scalar_seq: np.ndarray
    scalar_step: np.ndarray
    scalar_wall_time: np.ndarray
    scalar_value: np.ndarray
    histograms: list[HistogramPoint] = field(default_factory=list)
    session_starts: list[int] = field(default_factory=list)
    bad_proto: list[tuple[int, str]] = field(default_factory=list)  # (record index, reason)
    n_values: int = 0  # seq numbers used by this block


class EventDecoder:
    """Decodes blocks of Event records; owns the tag table and the per-tag kind cache."""

    def __init__(self, kinds: dict[str, str] | None = None, *, keep_buckets: bool = True) -> None:
        self.kinds: dict[str, str] = dict(kinds or {})
        # False: histogram points keep min/max/num/sum/sum_squares only (bucket fields None),
        # what every rule and plot reads; the buckets are most of a histogram log's bytes.
        self.keep_buckets = keep_buckets
        self.tags: list[str] = []
        self._tag_ids: dict[str, int] = {}
        self._known = _KnownTags()  # simple_value scalar tags
        self._known_histograms = _KnownTags()  # apart: every lookup searches each run of a cache
        self._templates = ScalarTemplates()
        self._learning = False  # inside a bulk decode: slow tensor scalars teach templates

    def tag_id(self, tag: str) -> int:
        tid = self._tag_ids.get(tag)
        if tid is None:
            tid = self._tag_ids[tag] = len(self.tags)
            self.tags.append(tag)
        return tid

    def decode(
        self, buf: bytes, starts: np.ndarray, lengths: np.ndarray, first_seq: int
    ) -> DecodedBlock:
        """Decode records ``buf[starts[i]:starts[i]+lengths[i]]``; seq numbers start at ``first_seq``."""
        with np.errstate(invalid="ignore"):  # a signalling NaN in a file is data, not a warning
            return self._decode(buf, starts, lengths, first_seq)

    def _decode(self, buf: bytes, starts: np.ndarray, lengths: np.ndarray, first_seq: int) -> DecodedBlock:
        n = int(starts.shape[0])
        u8 = np.frombuffer(buf, dtype=np.uint8)
        counts = np.zeros(n, dtype=np.int64)  # values returned per record → seq numbers
        slow = np.ones(n, dtype=bool)
        acc = _SlowValues()
        matched: list[TemplateMatch] = []
        if n >= _FAST_PATH_MIN_RECORDS:
            heads = event_heads(u8, starts, lengths, _MIN_SIMPLE)
            fast, fast_tag = self._fast_tags(u8, _match_simple_scalars(u8, starts, lengths, heads))
            slow[fast.idx] = False
            matched.append(TemplateMatch(fast.idx, fast_tag, fast.step, fast.wall_time, fast.value))
            self._fast_histograms(buf, u8, _subset_heads(heads, slow), slow, counts, acc)
            self._decode_rest(buf, starts, lengths, u8, heads, slow, counts, acc, matched)
        else:  # a live tail's few new records: upb is cheaper than ~50 numpy calls
            mv = memoryview(buf)
            for r in range(n):
                a = int(starts[r])
                counts[r] = self._decode_one(mv[a : a + int(lengths[r])], r, acc)
        matched = [m for m in matched if m.idx.size]
        for m in matched:
            counts[m.idx] = 1
        base = first_seq + np.cumsum(counts) - counts
        for point, (r, k) in zip(acc.histograms, acc.hist_pos):
            point.seq = int(base[r]) + k
        if acc.fast_histograms and len(acc.histograms) > acc.fast_histograms:
            acc.histograms.sort(key=_by_seq)  # fast ones first, slow ones after: seq order per tag
        rec = np.array(acc.rec, dtype=np.int64)
        seq = np.concatenate([base[m.idx] for m in matched] + [base[rec] + np.array(acc.k, dtype=np.int64)])
        order = np.argsort(seq, kind="stable") if len(matched) > 1 or (matched and acc.rec) else slice(None)

        def column(name: str, slow_values: list, dtype: type) -> np.ndarray:
            return np.concatenate([getattr(m, name) for m in matched] + [np.array(slow_values, dtype=dtype)])[order]

        return DecodedBlock(
            scalar_tag=column("tag_id", acc.tag, np.int32),
            scalar_seq=seq[order],
            scalar_step=column("step", acc.step, np.int64),
            scalar_wall_time=column("wall_time", acc.wall, np.float64),
            scalar_value=column("value", acc.value, np.float64),
            histograms=acc.histograms,
            session_starts=acc.session_starts,
            bad_proto=acc.bad_proto,
            n_values=int(counts.sum()),
        )

    def _decode_rest(
        self,
        buf: bytes,
        starts: np.ndarray,
        lengths: np.ndarray,
        u8: np.ndarray,
        heads: EventHeads,
        slow: np.ndarray,
        counts: np.ndarray,
        acc: _SlowValues,
        matched: list[TemplateMatch],
    ) -> None:
        """Records the simple_value matcher left: templates first, upb for the rest.

        Templates learned from this block's first records of a tag are applied to the rest
        of the block after ``rematch_after`` slow records (doubling whenever a rematch finds
        little, so a block of unlearnable records costs O(n log n), not O(n^2))."""
        mv = memoryview(buf)
        pending = np.flatnonzero(slow)
        rematch_after = _REMATCH_RECORDS
        self._learning = True
        try:
            while pending.size:
                known = self._templates.count
                hit = self._templates.match(u8, _subset_heads(heads, slow)) if known else _NO_TEMPLATE_MATCH
                if hit.idx.size:
                    matched.append(hit)
                    slow[hit.idx] = False
                    pending = pending[slow[pending]]
                if hit.idx.size < pending.size // 2:
                    rematch_after *= 2
                done = 0
                while done < pending.size and (done < rematch_after or self._templates.count == known):
                    r = int(pending[done])
                    a = int(starts[r])
                    counts[r] = self._decode_one(mv[a : a + int(lengths[r])], r, acc)
                    slow[r] = False
                    done += 1
                pending = pending[done:]
        finally:
            self._learning = False

    def _decode_one(self, record: memoryview, r: int, acc: _SlowValues) -> int:
        """Decode one record with upb into ``acc``; returns how many values it yielded."""
        if len(record) >= BIG_RECORD_BYTES and (big := _big_histogram(record)) is not None:
            tag, point = big
            if not self.keep_buckets:
                point.bucket_limits = point.bucket_counts = None
            tag = bounded_tag(tag)
            self.kinds.setdefault(tag, HISTOGRAM)
            point.tag_id = self.tag_id(tag)
            acc.histograms.append(point)
            acc.hist_pos.append((r, 0))
            return 1
        try:
            ev = _Event.FromString(record)
        except DecodeError as exc:  # valid CRC, but not an Event
            acc.bad_proto.append((r, str(exc) or "protobuf decode error"))
            return 0
        what = ev.WhichOneof("what")
        if what == "session_log" and ev.session_log.status == _SESSION_START:
            acc.session_starts.append(int(ev.step))
        if what != "summary":
            return 0
        k = 0
        for v in ev.summary.value:
            tag = bounded_tag(v.tag)
            kind, payload = self._classify(v, tag)
            if kind == SCALAR:
                if self._learning and len(ev.summary.value) == 1 and v.WhichOneof("value") == "tensor":
                    self._learn(record, ev, payload, self.tag_id(tag))
                acc.rec.append(r)
                acc.k.append(k)
                acc.tag.append(self.tag_id(tag))
                acc.step.append(ev.step)
                acc.wall.append(ev.wall_time)
                acc.value.append(payload)
            elif kind == HISTOGRAM:
                payload.tag_id = self.tag_id(tag)
                payload.step, payload.wall_time = ev.step, ev.wall_time
                acc.histograms.append(payload)
                acc.hist_pos.append((r, k))
            else:
                continue
            k += 1
        return k

    def _learn(self, record: memoryview, ev, value: float, tag_id: int) -> None:
        """Offer this one-value tensor scalar's summary bytes (the record's tail) as a template."""
        summary = ev.summary.SerializeToString()
        if len(summary) > MAX_SUMMARY_BYTES or bytes(record[len(record) - len(summary) :]) != summary:
            return  # upb would write it differently from the file: no template for it
        tag = ev.summary.value[0].tag

        def decode(trial: bytes) -> float | None:
            try:
                values = _Event.FromString(b"\x2a" + _varint_bytes(len(trial)) + trial).summary.value
            except DecodeError:
                return None
            if len(values) != 1 or values[0].tag != tag or values[0].WhichOneof("value") != "tensor":
                return None
            kind, payload = self._classify(values[0], bounded_tag(tag))
            return payload if kind == SCALAR else None

        self._templates.learn(summary, value, tag_id, decode)

    # -- fast path ---------------------------------------------------------------------
    def _fast_tags(self, u8: np.ndarray, fast: _FastMatch) -> tuple[_FastMatch, np.ndarray]:
        """Tag ids of the matched records; records whose tag cannot be confirmed go slow."""
        if fast.idx.size == 0:
            return fast, np.empty(0, dtype=np.int32)
        tag_ids = self._tag_ids_at(u8, fast.tag_at, fast.tag_len, SCALAR, self._known)
        good = tag_ids >= 0
        if not good.all():
            return fast.subset(good), tag_ids[good]
        return fast, tag_ids

    def _tag_ids_at(
        self, u8: np.ndarray, tag_at: np.ndarray, tag_len: np.ndarray, kind: str, known: _KnownTags
    ) -> np.ndarray:
        """Tag id of the tag bytes at each position, via the ``known`` cache (new tags get ``kind``);
        -1 = go slow."""
        width = 8 * -(-max(int(tag_len.max()), 1) // 8)  # whole uint64 words
        # Tags sit inside their records, so rows never run past the buffer except for
        # the last record's short tag: pad one block-tail copy instead of clipping all.
        if int(tag_at.max()) + width > u8.shape[0]:
            u8 = np.concatenate([u8, np.zeros(width, dtype=np.uint8)])
        mat = byte_rows(u8, tag_at, width)
        mat[np.arange(width)[None, :] >= tag_len[:, None]] = 0
        words = mat.view("<u8")
        h = tag_len.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        for c in range(words.shape[1]):
            h = (h ^ words[:, c]) * np.uint64(0x100000001B3)
        tag_ids = known.lookup(h, words, tag_len)
        miss = np.flatnonzero(tag_ids < 0)
        if miss.size:
            tag_ids[miss] = self._new_fast_tags(mat[miss], h[miss], tag_len[miss], kind, known)
        return tag_ids

    def _fast_histograms(
        self, buf: bytes, u8: np.ndarray, heads: EventHeads, slow: np.ndarray, counts: np.ndarray, acc: _SlowValues
    ) -> None:
        """One-histogram records of the block, decoded by the vectorised layout walk."""
        hist = match_histograms(u8, heads)
        if hist.idx.size == 0:
            return
        tag_ids = self._tag_ids_at(u8, hist.tag_at, hist.tag_len, HISTOGRAM, self._known_histograms)
        hist = hist.subset(np.flatnonzero(tag_ids >= 0))
        tag_ids = tag_ids[tag_ids >= 0]
        slow[hist.idx] = False
        counts[hist.idx] = 1
        n = hist.idx.size
        if self.keep_buckets:
            limits = [np.frombuffer(buf, "<f8", k, a).copy() for a, k in zip(hist.limits_at.tolist(), hist.n_buckets.tolist())]
            bucket_counts = [np.frombuffer(buf, "<f8", k, a).copy() for a, k in zip(hist.counts_at.tolist(), hist.n_buckets.tolist())]
        else:
            limits = bucket_counts = [None] * n
        moments = [hist.moments[name].tolist() for name in MOMENTS]
        acc.histograms += map(
            HistogramPoint, tag_ids.tolist(), [-1] * n, hist.step.tolist(), hist.wall_time.tolist(), *moments, limits, bucket_counts
        )
        acc.hist_pos += zip(hist.idx.tolist(), [0] * n)
        acc.fast_histograms = n

    def _new_fast_tags(
        self, mat: np.ndarray, h: np.ndarray, tag_len: np.ndarray, kind: str, known: _KnownTags
    ) -> np.ndarray:
        """Group tags not in the cache by hash, confirm each group byte-for-byte against its
        representative (a collision can never merge tags), register them; -1 = go slow."""
        _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
        rep = first[inverse]
        same = (mat == mat[rep]).all(axis=1) & (tag_len == tag_len[rep])
        lut = np.full(first.size, -1, dtype=np.int32)
        for g, row in enumerate(first.tolist()):
            length = int(tag_len[row])
            try:
                tag = bytes(mat[row, :length]).decode("utf-8")
            except UnicodeDecodeError:  # let upb judge (it reports bad_proto)
                continue
            self.kinds.setdefault(tag, kind)
            lut[g] = self.tag_id(tag)
        ok = lut >= 0
        known.add(h[first[ok]], lut[ok], tag_len[first[ok]], mat[first[ok]])
        return np.where(same, lut[inverse], -1)

    # -- slow path ---------------------------------------------------------------------
    def _classify(self, v, tag: str) -> tuple[str, object]:
        """Kind of one Summary.Value (named ``tag``, bounded) and its payload (None for kinds we drop)."""
        kind = self.kinds.get(tag)
        which = v.WhichOneof("value")
        if kind is None and v.HasField("metadata"):
            plugin = v.metadata.plugin_data.plugin_name
            if plugin:
                kind = self.kinds[tag] = _PLUGIN_KIND.get(plugin, OTHER)
        if which == "simple_value":
            if kind is None:
                self.kinds[tag] = SCALAR
            return SCALAR, float(v.simple_value)
        if which == "histo":
            if kind is None:
                self.kinds[tag] = HISTOGRAM
            if len(v.histo.bucket_limit) != len(v.histo.bucket):
                return OTHER, None  # malformed: edges and counts must pair up
            return HISTOGRAM, _from_histogram_proto(v.histo, self.keep_buckets)
        if which == "tensor" and kind == SCALAR:
            values = tensor_to_numpy(v.tensor)
            if values is not None and values.size == 1:
                return SCALAR, float(values.reshape(-1)[0])
        elif which == "tensor" and kind == HISTOGRAM:
            values = tensor_to_numpy(v.tensor)
            if values is not None and values.ndim == 2 and values.shape[1] == 3:
                return HISTOGRAM, histogram_from_tensor(values, self.keep_buckets)
        return OTHER, None


def _from_histogram_proto(h, keep_buckets: bool) -> HistogramPoint:
    point = HistogramPoint(-1, -1, 0, 0.0, h.min, h.max, h.num, h.sum, h.sum_squares, None, None)
    if keep_buckets:
        point.bucket_limits = np.array(h.bucket_limit, dtype=np.float64)
        point.bucket_counts = np.array(h.bucket, dtype=np.float64)
    return point


def histogram_from_tensor(rows: np.ndarray, keep_buckets: bool = True) -> HistogramPoint:
    """TF2 ``[k,3]`` (left, right, count) rows → HistogramProto form.

    ``sum`` and ``sum_squares`` are ESTIMATES: TF2 histograms keep no moments, so each
    bucket's count is placed at its centre. ``min``/``max`` are the outer edges (TF2 sets
    them to the data's min and max). An empty ``[0,3]`` tensor gives NaN min/max, num 0.
    """
    left, right, counts = rows[:, 0], rows[:, 1], rows[:, 2].copy()
    centres = (left + right) / 2.0
    empty = rows.shape[0] == 0
    return HistogramPoint(
        -1, -1, 0, 0.0,
        float("nan") if empty else float(left[0]),
        float("nan") if empty else float(right[-1]),
        float(counts.sum()),
        float(np.dot(counts, centres)),
        float(np.dot(counts, centres * centres)),
        right.copy() if keep_buckets else None,
        counts if keep_buckets else None,
    )


def tensor_to_numpy(t) -> np.ndarray | None:
    """Numeric TensorProto → float64 array of its shape, or None if not numeric/decodable.

    Handles both encodings writers use: packed ``tensor_content`` and the typed repeated
    fields (``float_val``, ``double_val``, ``half_val`` — which holds the raw 16-bit
    patterns of DT_HALF and DT_BFLOAT16 — ``int_val``, ``int64_val``, ``bool_val``). A typed
    field shorter than the shape is broadcast with its last value, as TensorFlow does.
    """
    shape = tuple(d.size for d in t.tensor_shape.dim)
    count = math.prod(shape)  # exact (no int64 overflow on absurd shapes)
    if any(s < 0 for s in shape) or count > _MAX_TENSOR_ELEMENTS:
        return None
    dtype = t.dtype
    if t.tensor_content:
        raw = t.tensor_content
        if dtype == _DT_BFLOAT16:
            if len(raw) % 2:
                return None
            arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        elif dtype in _CONTENT_DTYPE:
            np_dtype = np.dtype(_CONTENT_DTYPE[dtype])
            if len(raw) % np_dtype.itemsize:
                return None
            arr = np.frombuffer(raw, np_dtype)
        else:
            return None
    else:
        arr = _typed_values(t, dtype)
        if arr is None:
            return None
        if 0 < arr.size < count:
            arr = np.concatenate([arr, np.full(count - arr.size, arr[-1], dtype=arr.dtype)])
    if arr.size != count:
        return None
    return arr.astype(np.float64).reshape(shape)


def _typed_values(t, dtype: int) -> np.ndarray | None:
    if dtype == 1:
        return np.array(t.float_val, dtype=np.float32)
    if dtype == 2:
        return np.array(t.double_val, dtype=np.float64)
    if dtype == _DT_HALF:
        return np.array(t.half_val, dtype=np.uint16).view(np.float16)
    if dtype == _DT_BFLOAT16:
        return (np.array(t.half_val, dtype=np.uint32) << 16).view(np.float32)
    if dtype in _INT_VAL_DTYPES:
        return np.array(t.int_val, dtype=np.int64)
    if dtype == 9:
        return np.array(t.int64_val, dtype=np.int64)
    if dtype == 10:
        return np.array(t.bool_val, dtype=np.float64)
    return None


# -- big histogram records without copies ------------------------------------------------

BIG_RECORD_BYTES = 1 << 20
"""Records this large that hold one plain ``HistogramProto`` are decoded by
:func:`_big_histogram`: upb would hold the parsed message and numpy a copy of its buckets
beside the record's own bytes, 3x the record (a 500 MB record: 1.5 GB)."""

_VARINT, _FIXED64, _LEN = 0, 1, 2
_F64 = struct.Struct("<d")


def _big_histogram(record: memoryview) -> tuple[str, HistogramPoint] | None:
    """``(tag, point)`` of an Event holding exactly one ``histo`` value and nothing else,
    with the buckets as zero-copy read-only views of ``record``; None for any other layout
    (upb decides those, so results never differ: the fuzz target compares both)."""
    event = _fields(record, {1: _FIXED64, 2: _VARINT, 5: _LEN})
    if event is None or 5 not in event:
        return None
    summary = _fields(record[event[5][0] : event[5][1]], {1: _LEN})
    if summary is None or 1 not in summary:
        return None
    base = event[5][0]
    value = _fields(record[base + summary[1][0] : base + summary[1][1]], {1: _LEN, 5: _LEN})
    if value is None or 5 not in value:
        return None
    vbase = base + summary[1][0]
    try:
        tag = str(record[vbase + value[1][0] : vbase + value[1][1]], "utf-8") if 1 in value else ""
    except UnicodeDecodeError:
        return None
    hbase = vbase + value[5][0]
    histo = _fields(record[hbase : vbase + value[5][1]], {1: _FIXED64, 2: _FIXED64, 3: _FIXED64, 4: _FIXED64, 5: _FIXED64, 6: _LEN, 7: _LEN})
    if histo is None:
        return None
    arrays = []
    for field_number in (6, 7):
        a, b = histo.get(field_number, (0, 0))
        if (b - a) % 8:
            return None
        arrays.append(np.frombuffer(record, "<f8", (b - a) // 8, hbase + a))
    if arrays[0].shape != arrays[1].shape:
        return None  # upb's path drops it as malformed, and reports nothing
    moments = [_F64.unpack_from(record, hbase + histo[f][0])[0] if f in histo else 0.0 for f in (1, 2, 3, 4, 5)]
    wall = _F64.unpack_from(record, event[1][0])[0] if 1 in event else 0.0
    step = event[2][0] if 2 in event else 0
    return tag, HistogramPoint(-1, -1, step, wall, *moments, *arrays)


def _fields(buf: memoryview, allowed: dict[int, int]) -> dict[int, tuple[int, int]] | None:
    """Each field of a message once: number → (start, end) of its payload (a varint field:
    (value, 0)). None if the message has any other field, wire type, repeat or overrun."""
    out: dict[int, tuple[int, int]] = {}
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        if key is None:
            return None
        number, wire = key >> 3, key & 7
        if allowed.get(number) != wire or number in out:
            return None
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
            if value is None:
                return None
            out[number] = (value - (1 << 64) if value >= 1 << 63 else value, 0)
            continue
        size = 8
        if wire == _LEN:
            size, pos = _varint(buf, pos)
            if size is None:
                return None
        if pos + size > end:
            return None
        out[number] = (pos, pos + size)
        pos += size
    return out


def _varint(buf: memoryview, pos: int) -> tuple[int | None, int]:
    """A protobuf varint at ``pos`` (at most 10 bytes, 64 bits) and the position after it."""
    value = shift = 0
    for i in range(pos, min(pos + 10, len(buf))):
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (value if value < 1 << 64 else None), i + 1
        shift += 7
    return None, pos


# -- vectorised matcher for the common simple_value record -----------------------------


class _KnownTags:
    """Hash → tag id of tags the fast path has confirmed, so later blocks map their tags
    with a binary search instead of a sort. Every hit is re-verified byte-for-byte.

    Kept as a few sorted runs of geometrically decreasing size (a log-structured merge): a
    block's new tags become one run, and runs of similar size are merged, so each tag is
    copied O(log n) times in all. (One ``np.insert`` per new tag was O(n) per tag: 100,000
    tags cost minutes.) Lookups search every run; ordinary logs have one.
    """

    _WORDS = 16  # fast-path tags are < 128 bytes (one-byte length varints)

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # hashes, ids, lengths, words

    def lookup(self, h: np.ndarray, words: np.ndarray, tag_len: np.ndarray) -> np.ndarray:
        """Tag id per row, or -1 when the row's tag is not (provably) a known one."""
        ids = np.full(h.shape, -1, dtype=np.int32)
        for hashes, run_ids, lengths, run_words in self._runs:
            pos = np.minimum(np.searchsorted(hashes, h), hashes.size - 1)
            hit = (hashes[pos] == h) & (lengths[pos] == tag_len)
            # Equal lengths and zero padding on both sides: comparing the row's words suffices.
            hit &= (run_words[pos, : words.shape[1]] == words).all(axis=1)
            ids = np.where(hit, run_ids[pos], ids)
        return ids

    def add(self, h: np.ndarray, tag_ids: np.ndarray, lengths: np.ndarray, rows: np.ndarray) -> None:
        """Cache confirmed tags (``rows``: their bytes, zero-padded). A hash already cached
        (a collision) is not added: such a tag keeps taking the verified unique() route."""
        h = np.asarray(h, dtype=np.uint64)
        h, first = np.unique(h, return_index=True)
        fresh = np.ones(h.shape, dtype=bool)
        for hashes, *_ in self._runs:
            pos = np.minimum(np.searchsorted(hashes, h), hashes.size - 1)
            fresh &= hashes[pos] != h
        if not fresh.any():
            return
        keep = first[fresh]
        words = np.zeros((keep.size, self._WORDS * 8), dtype=np.uint8)
        words[:, : rows.shape[1]] = rows[keep]
        run = (h[fresh], np.asarray(tag_ids, np.int32)[keep], np.asarray(lengths, np.int64)[keep], words.view("<u8"))
        self._runs.append(run)
        while len(self._runs) > 1 and self._runs[-2][0].size <= 2 * self._runs[-1][0].size:
            newer = self._runs.pop()
            older = self._runs.pop()
            merged = [np.concatenate([a, b]) for a, b in zip(older, newer)]
            order = np.argsort(merged[0], kind="stable")
            self._runs.append(tuple(col[order] for col in merged))


@dataclass
class _FastMatch:
    idx: np.ndarray  # record indices (into the block) that match the layout
    step: np.ndarray
    wall_time: np.ndarray
    value: np.ndarray
    tag_at: np.ndarray  # buffer offset of the tag bytes
    tag_len: np.ndarray

    def subset(self, keep: np.ndarray) -> _FastMatch:
        return _FastMatch(*(getattr(self, f)[keep] for f in self.__dataclass_fields__))


_MIN_SIMPLE = 9 + 6 + 5  # wall_time field + three one-byte headers/lengths + float field
# Below this many records per block the vectorised path's fixed numpy cost (~200 µs)
# exceeds upb's ~3 µs per record.
_FAST_PATH_MIN_RECORDS = 32
_NO_TEMPLATE_MATCH = TemplateMatch(*(np.empty(0, dtype=np.int64) for _ in range(5)))
_REMATCH_RECORDS = 64  # slow records decoded between template rematches (doubles if futile)


def _match_simple_scalars(u8: np.ndarray, starts: np.ndarray, lengths: np.ndarray, heads: EventHeads) -> _FastMatch:
    """Records whose bytes are exactly one simple_value scalar event (see module doc).

    Byte reads are clipped to the buffer; a record only matches if its computed end equals
    its real end, which guarantees that no clipped byte took part in a match.
    """
    def at(pos: np.ndarray) -> np.ndarray:
        return u8.take(pos, mode="clip")

    q = heads.summary_at
    slen, vlen2, tlen = at(q + 1).astype(np.int64), at(q + 3).astype(np.int64), at(q + 5).astype(np.int64)
    ok = (at(q + 2) == 0x0A) & (at(q + 4) == 0x0A)
    ok &= (slen < 0x80) & (vlen2 < 0x80) & (tlen < 0x80)
    ok &= (slen == vlen2 + 2) & (vlen2 == tlen + 7)
    ok &= (q + 11 + tlen == heads.end) & (at(q + 6 + tlen) == 0x15)
    keep = np.flatnonzero(ok)
    q, tlen = q[keep], tlen[keep]
    return _FastMatch(
        heads.idx[keep],
        heads.step[keep],
        heads.wall_time[keep],
        byte_rows(u8, q + 7 + tlen, 4).view("<f4").ravel().astype(np.float64),
        q + 6,
        tlen,
    )


def _subset_heads(heads: EventHeads, slow: np.ndarray) -> EventHeads:
    """The heads of the records still marked ``slow``."""
    keep = slow[heads.idx]
    return EventHeads(*(getattr(heads, f)[keep] for f in heads.__dataclass_fields__))


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
