"""Decoding of every scalar/histogram encoding users produce, checked against the writers'
inputs and against TensorBoard's own EventAccumulator.

Files come from the real writers (tensorboardX, torch.utils.tensorboard); TF2 tensor
summaries are built record by record with the protobuf classes because TensorFlow is not
installed here — their byte layouts follow the research notes (§1.3–1.4) and the real TF2
file in /work/shared/real-logs.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboardX import SummaryWriter as TbxWriter
from tensorboardX.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2

from tbmon.monitor.event_file import EventFileReader
from tests.monitor.test_records import frame, version_record

REAL_LOGS = Path("/work/shared/real-logs")


def by_tag(chunk) -> dict:
    return {s.tag: s for s in chunk.scalars}


def only_file(directory: Path) -> Path:
    (path,) = [p for p in directory.iterdir() if "tfevents" in p.name]
    return path


def tensor_value(tag: str, tensor: tensor_pb2.TensorProto, plugin: str | None) -> summary_pb2.Summary.Value:
    v = summary_pb2.Summary.Value(tag=tag, tensor=tensor)
    if plugin:
        v.metadata.plugin_data.plugin_name = plugin
    return v


def shape(*dims: int) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])


def write_events(path: Path, events: list[event_pb2.Event]) -> Path:
    path.write_bytes(version_record() + b"".join(frame(e.SerializeToString()) for e in events))
    return path


# -- real writers ----------------------------------------------------------------------


def test_tensorboardx_scalars_and_histograms(tmp_path: Path) -> None:
    w = TbxWriter(str(tmp_path))
    rng = np.random.default_rng(1)
    data = {s: rng.normal(size=200) for s in range(0, 30, 10)}
    for step in range(30):
        w.add_scalar("train/loss", 1.0 / (step + 1), step)
        w.add_scalars("multi", {"a": step, "b": -step}, step)  # writes into sub-runs
        if step in data:
            w.add_histogram("grad/w", data[step], step)
    w.close()
    chunk = EventFileReader(only_file(tmp_path)).read_new()
    assert chunk.problems == []
    loss = by_tag(chunk)["train/loss"]
    assert loss.step.tolist() == list(range(30))
    np.testing.assert_allclose(loss.value, [np.float32(1.0 / (s + 1)) for s in range(30)])
    assert loss.seq.dtype == np.int64 and np.all(np.diff(loss.seq) > 0)
    (h,) = chunk.histograms
    assert h.tag == "grad/w" and h.step.tolist() == [0, 10, 20]
    for i, s in enumerate([0, 10, 20]):
        assert h.num[i] == 200 and h.bucket_counts[i].sum() == 200
        assert math.isclose(h.sum[i], data[s].sum()) and math.isclose(h.min[i], data[s].min())
        assert len(h.bucket_limits[i]) == len(h.bucket_counts[i])
    # Oracle: TensorBoard reads the same points.
    ea = EventAccumulator(str(only_file(tmp_path)), size_guidance={"scalars": 0, "histograms": 0})
    ea.Reload()
    assert [e.value for e in ea.Scalars("train/loss")] == loss.value.tolist()
    assert [e.histogram_value.bucket for e in ea.Histograms("grad/w")][1] == h.bucket_counts[1].tolist()


def test_torch_writer_all_scalar_styles_hparams_and_purge_step(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path))
    w.add_scalar("loss", 0.5, 1)
    w.add_scalar("f32", 1.25, 2, new_style=True)
    w.add_scalar("f64", 1 / 3, 3, new_style=True, double_precision=True)
    w.add_scalar("nan", float("nan"), 4)
    w.add_scalar("inf", float("inf"), 4)
    w.add_histogram("weights", np.arange(100.0), 5)
    w.add_image("img", np.zeros((3, 4, 4)), 5)
    w.add_text("note", "hello", 5)
    w.add_hparams({"lr": 0.1}, {"hp/metric": 0.9})
    w.close()
    w2 = SummaryWriter(str(tmp_path / "resumed"), purge_step=7)
    w2.add_scalar("loss", 0.25, 7)
    w2.close()
    reader = EventFileReader(only_file(tmp_path))
    chunk = reader.read_new()
    assert chunk.problems == []
    s = by_tag(chunk)
    assert s["loss"].value.tolist() == [0.5]
    assert s["f32"].value.tolist() == [1.25]
    assert s["f64"].value.tolist() == [1 / 3]  # kept in float64
    assert math.isnan(s["nan"].value[0]) and s["inf"].value[0] == math.inf
    assert set(s) == {"loss", "f32", "f64", "nan", "inf"}  # image/text/hparams skipped
    (h,) = chunk.histograms
    assert h.tag == "weights" and h.num[0] == 100 and h.max[0] == 99
    assert reader.state_dict()["kinds"]["f64"] == "scalar"
    resumed = EventFileReader(only_file(tmp_path / "resumed")).read_new()
    assert resumed.session_starts == [7]
    # hparams' metadata-only values live in a sub-run written by add_hparams
    (hp_dir,) = [p for p in tmp_path.iterdir() if p.is_dir() and p.name != "resumed"]
    hp = EventFileReader(only_file(hp_dir)).read_new()
    assert hp.problems == [] and [x.tag for x in hp.scalars] == ["hp/metric"]


def test_writer_in_another_process_growing_file(tmp_path: Path) -> None:
    script = f"""
import sys, time, torch
torch.set_num_threads(1)
from torch.utils.tensorboard import SummaryWriter
w = SummaryWriter({str(tmp_path)!r})
for step in range(60):
    w.add_scalar('loss', float(step), step)
    w.flush()
    time.sleep(0.005)
w.close()
"""
    proc = subprocess.Popen([sys.executable, "-c", script])
    steps: list[int] = []
    reader = None
    deadline = time.time() + 120
    while time.time() < deadline:
        files = [p for p in tmp_path.iterdir() if "tfevents" in p.name]
        if files and reader is None:
            reader = EventFileReader(files[0])
        if reader is not None:
            chunk = reader.read_new()
            assert chunk.problems == []
            for s in chunk.scalars:
                steps.extend(s.step.tolist())
        if proc.poll() is not None and reader is not None and not chunk.records:
            break
        time.sleep(0.01)
    assert proc.wait(timeout=60) == 0
    assert steps == list(range(60))


# -- TF2 tensor encodings --------------------------------------------------------------


@pytest.mark.parametrize(
    "tensor, expected",
    [
        (tensor_pb2.TensorProto(dtype=1, tensor_shape=shape(), tensor_content=np.float32(2.5).tobytes()), 2.5),
        (tensor_pb2.TensorProto(dtype=1, tensor_shape=shape(), float_val=[0.125]), 0.125),
        (tensor_pb2.TensorProto(dtype=2, tensor_shape=shape(), double_val=[1 / 3]), 1 / 3),
        (tensor_pb2.TensorProto(dtype=2, tensor_shape=shape(), tensor_content=np.float64(1 / 7).tobytes()), 1 / 7),
        (tensor_pb2.TensorProto(dtype=19, tensor_shape=shape(), half_val=[int(np.float16(1.5).view(np.uint16))]), 1.5),
        (tensor_pb2.TensorProto(dtype=19, tensor_shape=shape(), tensor_content=np.float16(-3.0).tobytes()), -3.0),
        (tensor_pb2.TensorProto(dtype=14, tensor_shape=shape(), half_val=[0x3FC0]), 1.5),  # bf16 1.5
        (tensor_pb2.TensorProto(dtype=14, tensor_shape=shape(), tensor_content=bytes([0x20, 0x41])), 10.0),
        (tensor_pb2.TensorProto(dtype=3, tensor_shape=shape(), int_val=[-7]), -7.0),
        (tensor_pb2.TensorProto(dtype=9, tensor_shape=shape(), int64_val=[2**40]), float(2**40)),
        (tensor_pb2.TensorProto(dtype=9, tensor_shape=shape(), tensor_content=np.int64(-5).tobytes()), -5.0),
        (tensor_pb2.TensorProto(dtype=1, tensor_shape=shape(), float_val=[float("nan")]), float("nan")),
    ],
)
def test_tf2_scalar_tensor_encodings(tmp_path: Path, tensor, expected: float) -> None:
    ev = event_pb2.Event(step=3, wall_time=5.0, summary=summary_pb2.Summary(value=[tensor_value("m", tensor, "scalars")]))
    chunk = EventFileReader(write_events(tmp_path / "events.out.tfevents.1.v2", [ev])).read_new()
    (s,) = chunk.scalars
    assert s.step.tolist() == [3] and s.wall_time.tolist() == [5.0]
    np.testing.assert_equal(s.value, [expected])


def test_tf1_metadata_only_on_first_value_and_kind_survives_state(tmp_path: Path) -> None:
    def ev(step: int, with_meta: bool) -> event_pb2.Event:
        t = tensor_pb2.TensorProto(dtype=1, tensor_shape=shape(), float_val=[float(step)])
        return event_pb2.Event(step=step, summary=summary_pb2.Summary(value=[tensor_value("acc", t, "scalars" if with_meta else None)]))

    path = write_events(tmp_path / "events.out.tfevents.1.tf1", [ev(0, True), ev(1, False)])
    reader = EventFileReader(path)
    assert by_tag(reader.read_new())["acc"].value.tolist() == [0.0, 1.0]
    restored = EventFileReader(path)
    restored.load_state_dict(json.loads(json.dumps(reader.state_dict())))
    with open(path, "ab") as f:
        f.write(frame(ev(2, False).SerializeToString()))
    chunk = restored.read_new()
    assert by_tag(chunk)["acc"].value.tolist() == [2.0]
    assert chunk.scalars[0].seq.tolist() == [2]
    for broken in ({}, {"framer": {"offset": "x"}, "seq": 0}, {"framer": {"offset": 0, "bad": [1]}, "seq": 0}, {"framer": {"offset": 0}, "seq": 1, "fingerprint": "zz"}):
        with pytest.raises(ValueError):
            restored.load_state_dict(broken)
    assert restored.state_dict()["seq"] == 3  # unchanged by the failed loads
    # Without the first value's metadata nothing says the tensor is a scalar: skipped.
    alone = write_events(tmp_path / "events.out.tfevents.2.tf1", [ev(1, False)])
    assert EventFileReader(alone).read_new().scalars == []


def test_tf2_histogram_tensors(tmp_path: Path) -> None:
    rows = np.array([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0], [2.0, 4.0, 5.0]])
    t = tensor_pb2.TensorProto(dtype=2, tensor_shape=shape(3, 3), tensor_content=rows.tobytes())
    empty = tensor_pb2.TensorProto(dtype=2, tensor_shape=shape(0, 3))
    f32 = tensor_pb2.TensorProto(dtype=1, tensor_shape=shape(1, 3), float_val=[1.0, 1.0, 4.0])
    events = [
        event_pb2.Event(step=1, summary=summary_pb2.Summary(value=[tensor_value("w", t, "histograms")])),
        event_pb2.Event(step=2, summary=summary_pb2.Summary(value=[tensor_value("w", empty, "histograms")])),
        event_pb2.Event(step=3, summary=summary_pb2.Summary(value=[tensor_value("w", f32, None)])),
    ]
    (h,) = EventFileReader(write_events(tmp_path / "events.out.tfevents.1.h", events)).read_new().histograms
    assert h.step.tolist() == [1, 2, 3]
    assert h.bucket_limits[0].tolist() == [1.0, 2.0, 4.0] and h.bucket_counts[0].tolist() == [2.0, 3.0, 5.0]
    assert (h.min[0], h.max[0], h.num[0]) == (0.0, 4.0, 10.0)
    assert h.sum[0] == 2 * 0.5 + 3 * 1.5 + 5 * 3.0  # centre estimate
    assert h.sum_squares[0] == 2 * 0.25 + 3 * 2.25 + 5 * 9.0
    assert h.num[1] == 0 and math.isnan(h.min[1]) and h.bucket_limits[1].size == 0
    assert (h.min[2], h.max[2], h.num[2]) == (1.0, 1.0, 4.0)  # degenerate equal edges


def test_many_values_per_event_nan_wall_time_and_seq_order(tmp_path: Path) -> None:
    values = [summary_pb2.Summary.Value(tag=f"t{i}", simple_value=float(i)) for i in range(7)]
    values.append(summary_pb2.Summary.Value(tag="t0", simple_value=-1.0))  # same tag twice
    values.insert(3, summary_pb2.Summary.Value(tag="meta-only"))
    values[3].metadata.plugin_data.plugin_name = "hparams"
    events = [
        event_pb2.Event(step=10, wall_time=float("nan"), summary=summary_pb2.Summary(value=values)),
        event_pb2.Event(step=-4, wall_time=2.0, summary=summary_pb2.Summary(value=[values[0]])),
        event_pb2.Event(step=2**62, wall_time=3.0, summary=summary_pb2.Summary(value=[values[1]])),
    ]
    chunk = EventFileReader(write_events(tmp_path / "events.out.tfevents.1.m", events)).read_new()
    s = by_tag(chunk)
    assert s["t0"].value.tolist() == [0.0, -1.0, 0.0]
    assert s["t0"].seq.tolist() == [0, 7, 8]
    assert s["t0"].step.tolist() == [10, 10, -4]
    assert s["t1"].step.tolist() == [10, 2**62]
    assert math.isnan(s["t5"].wall_time[0])
    assert "meta-only" not in s


def test_fast_path_and_protobuf_path_agree(tmp_path: Path) -> None:
    """Byte-level fast decoding must equal upb decoding on every simple_value edge case."""
    tags = ["a", "x" * 118, "x" * 119, "ünï/cødé:1", "sp ace", "nul\0inside"]
    events = []
    for step in (0, 1, 127, 128, 2**35, -1):
        for wt in (0.0, 1.5, float("nan")):
            for i, tag in enumerate(tags):  # interleaved: every block sees every tag
                events.append(event_pb2.Event(step=step, wall_time=wt, summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=i + 0.5)])))
    path = write_events(tmp_path / "events.out.tfevents.1.fast", events)
    want = sorted((q, e.summary.value[0].tag, e.step, e.wall_time, e.summary.value[0].simple_value) for q, e in enumerate(events))
    # Whole file in one block, and small blocks (tags then come from the cross-block cache).
    for block in (4 << 20, 4096):
        chunk = EventFileReader(path, block_bytes=block).read_new()
        got = sorted((int(q), s.tag, int(st), float(w), float(v)) for s in chunk.scalars for q, st, w, v in zip(s.seq, s.step, s.wall_time, s.value))
        assert [g[:3] for g in got] == [w[:3] for w in want]
        np.testing.assert_equal([g[3:] for g in got], [w[3:] for w in want])


def test_known_tag_cache_never_confuses_colliding_tags() -> None:
    from tbmon.monitor.decode import _KnownTags

    known = _KnownTags()
    row = np.frombuffer(b"loss\0\0\0\0", np.uint8)
    known.add(np.array([42]), np.array([0]), np.array([4]), row[None, :])
    known.add(np.array([42]), np.array([1]), np.array([4]), np.frombuffer(b"lost\0\0\0\0", np.uint8)[None, :])  # same hash: not cached
    words = np.stack([row, np.frombuffer(b"lost\0\0\0\0", np.uint8), row]).view("<u8")
    ids = known.lookup(np.array([42, 42, 7], np.uint64), words, np.array([4, 4, 4]))
    assert ids.tolist() == [0, -1, -1]  # only a byte-for-byte match with the right hash hits



def test_known_tag_cache_finds_every_tag_added_one_block_at_a_time() -> None:
    """Tags added one per block (a live tail's worst case) are all found, in O(log n) runs."""
    from tbmon.monitor.decode import _KnownTags

    known = _KnownTags()
    names = [f"tag/{i:05d}".encode() for i in range(3000)]
    rows = np.zeros((len(names), 16), np.uint8)
    for i, name in enumerate(names):
        rows[i, : len(name)] = np.frombuffer(name, np.uint8)
    hashes = np.array([hash(n) & (2**64 - 1) for n in names], dtype=np.uint64)
    lengths = np.array([len(n) for n in names])
    for i in range(len(names)):
        known.add(hashes[i : i + 1], np.array([i]), lengths[i : i + 1], rows[i : i + 1])
    assert len(known._runs) <= 12
    ids = known.lookup(hashes, rows.view("<u8"), lengths)
    assert ids.tolist() == list(range(len(names)))
    other = rows.copy()
    other[:, 4] = ord("X")  # same hashes and lengths, other bytes: never a hit
    assert (known.lookup(hashes, other.view("<u8"), lengths) == -1).all()

# -- real corpus -----------------------------------------------------------------------


def _real_files() -> list[Path]:
    return sorted(p for p in REAL_LOGS.rglob("*tfevents*") if p.is_file())


@pytest.mark.skipif(not REAL_LOGS.exists(), reason="real-logs corpus not present")
def test_real_logs_read_with_zero_problems_and_match_tensorboard() -> None:
    files = _real_files()
    assert len(files) == 16
    for path in files:
        reader = EventFileReader(path)
        chunk = reader.read_new()
        assert chunk.problems == [], path
        assert chunk.bytes == os.path.getsize(path) and reader.health.is_event_file
        ea = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
        ea.Reload()
        want = {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}
        for t in ea.Tags()["tensors"]:  # TF2 scalars: rank-0 numeric tensors
            evs = ea.Tensors(t)
            if evs and evs[0].tensor_proto.dtype in (1, 2):
                want[t] = [(e.step, float(np.frombuffer(e.tensor_proto.tensor_content, "<f4" if e.tensor_proto.dtype == 1 else "<f8")[0])) for e in evs]
        got = {s.tag: list(zip(s.step.tolist(), s.value.tolist())) for s in chunk.scalars}
        assert got.keys() == want.keys(), path
        for t in got:
            np.testing.assert_allclose([v for _, v in got[t]], [v for _, v in want[t]], rtol=1e-7)
            assert [s for s, _ in got[t]] == [s for s, _ in want[t]]


def test_reader_does_not_import_torch_and_tensorboardx_still_works(tmp_path: Path) -> None:
    """The monitor must run without torch; loading tensorboardX's protos must not pull it in."""
    script = f"""
import sys
from tbmon.monitor.event_file import EventFileReader
assert 'torch' not in sys.modules, 'reader imported torch'
from tensorboardX import SummaryWriter   # the real package still loads afterwards
import tensorboardX
w = SummaryWriter({str(tmp_path)!r}); w.add_scalar('x', 3.0, 1); w.close()
assert tensorboardX.proto.event_pb2.Event is not None
import glob
chunk = EventFileReader(glob.glob({str(tmp_path)!r} + '/events*')[0]).read_new()
print(chunk.scalars[0].value.tolist())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[3.0]"


def test_absurd_tensor_shapes_and_malformed_histograms_are_skipped(tmp_path: Path) -> None:
    huge = tensor_pb2.TensorProto(dtype=1, tensor_shape=shape(1 << 40, 3), float_val=[1.0])
    overflow = tensor_pb2.TensorProto(dtype=1, tensor_shape=shape(1 << 62, 1 << 62), float_val=[1.0])
    odd = summary_pb2.HistogramProto(num=1, bucket_limit=[1.0, 2.0], bucket=[1.0])
    ok = tensor_pb2.TensorProto(dtype=1, tensor_shape=shape(), float_val=[9.0])
    ev = event_pb2.Event(step=1, summary=summary_pb2.Summary(value=[
        tensor_value("h", huge, "histograms"), tensor_value("s", overflow, "scalars"),
        summary_pb2.Summary.Value(tag="odd", histo=odd), tensor_value("fine", ok, "scalars"),
    ]))
    chunk = EventFileReader(write_events(tmp_path / "events.out.tfevents.1.abs", [ev])).read_new()
    assert chunk.problems == [] and chunk.histograms == []
    assert [(s.tag, s.value.tolist()) for s in chunk.scalars] == [("fine", [9.0])]
