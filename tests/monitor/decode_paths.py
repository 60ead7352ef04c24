"""Decode a file two ways, block-wise (the vectorised matchers + upb for the rest) and record by
record (a one-record block always takes the upb path), so tests can require identical columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tbmon.monitor.decode import EventDecoder, HistogramPoint
from tbmon.monitor.records import RecordFramer, masked_crc


def frame(data: bytes) -> bytes:
    """TFRecord framing of one serialised event."""
    head = len(data).to_bytes(8, "little")
    return head + masked_crc(head).to_bytes(4, "little") + data + masked_crc(data).to_bytes(4, "little")


def _decode_both(path: Path, keep_buckets: bool) -> tuple[dict, dict, EventDecoder]:
    data = path.read_bytes()
    framer = RecordFramer(block_bytes=64 << 10)  # several blocks: templates carry across them
    bulk, single = EventDecoder(keep_buckets=keep_buckets), EventDecoder(keep_buckets=keep_buckets)
    cols_bulk, cols_single = [], []
    seq_bulk = seq_single = 0
    for block in framer.read(lambda off, size: data[off : off + size], len(data)):
        d = bulk.decode(block.buf, block.starts, block.lengths, seq_bulk)
        seq_bulk += d.n_values
        cols_bulk.append(d)
        for i in range(block.starts.size):
            one = single.decode(block.buf, block.starts[i : i + 1], block.lengths[i : i + 1], seq_single)
            seq_single += one.n_values
            cols_single.append(one)
    assert seq_bulk == seq_single
    return _columns(cols_bulk, bulk), _columns(cols_single, single), bulk


def _columns(blocks, decoder: EventDecoder) -> dict:
    cat = {f: np.concatenate([getattr(b, f) for b in blocks]) for f in ("scalar_tag", "scalar_seq", "scalar_step", "scalar_wall_time", "scalar_value")}
    cat["tag"] = [decoder.tags[i] for i in cat.pop("scalar_tag").tolist()]
    cat["hist"] = [_histogram_key(decoder, h) for b in blocks for h in b.histograms]
    return cat


def assert_paths_agree(path: Path, keep_buckets: bool = True) -> EventDecoder:
    """Decode ``path`` both ways; every column must be identical (NaN equal to NaN)."""
    bulk, single, decoder = _decode_both(path, keep_buckets)
    assert bulk["tag"] == single["tag"]
    for f in ("scalar_seq", "scalar_step", "scalar_wall_time", "scalar_value"):
        np.testing.assert_array_equal(bulk[f], single[f], err_msg=f)
    assert bulk["hist"] == single["hist"]
    return decoder


def _histogram_key(decoder: EventDecoder, h: HistogramPoint) -> tuple:
    """Everything a histogram point holds, as bytes (NaN-safe equality)."""
    moments = np.array([h.wall_time, h.min, h.max, h.num, h.sum, h.sum_squares], dtype=np.float64).tobytes()
    buckets = None if h.bucket_limits is None else (h.bucket_limits.tobytes(), h.bucket_counts.tobytes())
    return decoder.tags[h.tag_id], h.seq, h.step, moments, buckets
