"""Histogram records: the vectorised layout walk returns exactly what the upb path returns, in
both storage modes, and ``histograms="summary"`` holds far less than the file."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from tensorboardX.proto import event_pb2, summary_pb2

from tbmon.monitor.event_file import EventFileReader
from tests.monitor.decode_paths import assert_paths_agree, frame


def _histo_event(tag: str, step: int, histo: summary_pb2.HistogramProto, wall: float = 1.5e9) -> bytes:
    value = summary_pb2.Summary.Value(tag=tag, histo=histo)
    return event_pb2.Event(wall_time=wall, step=step, summary=summary_pb2.Summary(value=[value])).SerializeToString()


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def _unpacked_histo_event(step: int) -> bytes:
    """Buckets as unpacked repeated doubles (legal protobuf, not what writers emit)."""
    histo = b"\x19" + struct.pack("<d", 2.0)
    for v in (1.0, 2.0):
        histo += b"\x31" + struct.pack("<d", v)
    for v in (1.0, 1.0):
        histo += b"\x39" + struct.pack("<d", v)
    value = b"\x0a\x08unpacked" + b"\x2a" + _varint(len(histo)) + histo
    summary = b"\x0a" + _varint(len(value)) + value
    return b"\x09" + struct.pack("<d", 7.0) + b"\x10" + _varint(step) + b"\x2a" + _varint(len(summary)) + summary


@pytest.mark.parametrize("keep_buckets", [True, False])
def test_histogram_layouts_match_the_upb_path(tmp_path: Path, tb, keep_buckets: bool) -> None:
    rng = np.random.default_rng(3)
    tb.histograms(tmp_path / "tbx", {f"grad/l{i}": [rng.normal(scale=10.0 ** -i, size=300) for _ in range(40)] for i in range(3)})
    tb.histograms(tmp_path / "torch", {"grad/w": [rng.normal(size=100) for _ in range(40)], "zeros": [np.zeros(9)] * 40}, backend="torch")
    for run in ("tbx", "torch"):
        decoder = assert_paths_agree(next((tmp_path / run).iterdir()), keep_buckets)
        assert decoder.kinds and set(decoder.kinds.values()) == {"histogram"}

    records = []
    for step in range(0, 4000, 7):  # steps 0 (no step field) up to 3-byte varints
        records.append(_histo_event("h/full", step, summary_pb2.HistogramProto(
            min=-1.0, max=float(step), num=3, sum=float("nan"), sum_squares=float("inf"), bucket_limit=[0.0, 1e300], bucket=[1, 2])))
        records.append(_histo_event("h/zero_moments", step, summary_pb2.HistogramProto(num=2, bucket_limit=[1.0], bucket=[2])))
        records.append(_histo_event("h/empty", step, summary_pb2.HistogramProto()))
        records.append(_histo_event("h/unpaired", step, summary_pb2.HistogramProto(num=1, bucket_limit=[1.0, 2.0], bucket=[1])))
        records.append(_histo_event("x" * 140, step, summary_pb2.HistogramProto(num=1, bucket_limit=[1.0], bucket=[1])))
        with_meta = summary_pb2.Summary.Value(tag="h/meta", histo=summary_pb2.HistogramProto(num=1, bucket_limit=[1.0], bucket=[1]))
        with_meta.metadata.plugin_data.plugin_name = "histograms"
        records.append(event_pb2.Event(step=step, summary=summary_pb2.Summary(value=[with_meta])).SerializeToString())
        records.append(_unpacked_histo_event(step))
        records.append(event_pb2.Event(step=step, summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="loss", simple_value=step / 3)])).SerializeToString())
    path = tmp_path / "events.out.tfevents.1.layouts"
    path.write_bytes(b"".join(map(frame, records)))
    decoder = assert_paths_agree(path, keep_buckets)
    assert "h/unpaired" not in decoder.tags  # dropped as malformed by both paths


def test_summary_mode_keeps_the_moments_and_far_less_memory(tmp_path: Path, tb) -> None:
    rng = np.random.default_rng(5)
    path = tb.histograms(tmp_path, {f"grad/l{i}": [rng.normal(size=2000) for _ in range(400)] for i in range(4)})
    size = path.stat().st_size
    full = EventFileReader(path).read_new().histograms
    tracemalloc.start()
    try:
        summary = EventFileReader(path, histograms="summary", block_bytes=1 << 20).read_new().histograms
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [h.tag for h in summary] == [h.tag for h in full]
    for s, f in zip(summary, full):
        for name in ("seq", "step", "wall_time", "min", "max", "num", "sum", "sum_squares"):
            np.testing.assert_array_equal(getattr(s, name), getattr(f, name))
        assert s.bucket_limits == s.bucket_counts == () and len(f.bucket_limits) == len(f) == 400
    assert size > 8e6 and peak < 0.3 * size, (peak, size)


def test_alerts_are_the_same_from_summaries_and_full_buckets(tmp_path: Path, tb) -> None:
    """The rules read moments only: a vanishing-gradient run alerts identically in both modes."""
    from tbmon.analyzers import analyze
    from tbmon.monitor import read

    rng = np.random.default_rng(11)
    steps = list(range(0, 300, 10))
    layers = [f"net.{2 * k}.weight" for k in range(6)]

    def scale(step: int, k: int) -> float:
        healthy = 1e-2 * (0.5 + k / 5) * (1 + 0.3 * np.sin(step / 7 + k))
        return healthy * (1e-5 ** ((5 - k) / 5) if step >= 100 else 1.0)

    tb.scalars(tmp_path / "run", {"train/loss": [1.0] * len(steps)}, steps=steps)
    tb.histograms(tmp_path / "run", {f"grad/{name}": [scale(s, k) * rng.standard_normal(200) for s in steps] for k, name in enumerate(layers)}, steps=steps)
    summary, full = read(tmp_path, histograms="summary"), read(tmp_path)
    assert full.histograms.bucket_counts.map(len).min() > 0 and summary.histograms.bucket_counts.isna().all()
    alerts = [(a.kind, a.step, a.message) for a in analyze(summary)]
    assert alerts == [(a.kind, a.step, a.message) for a in analyze(full)]
    assert ("vanishing_gradients", 100) in [a[:2] for a in alerts]
