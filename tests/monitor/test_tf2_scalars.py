"""TF2 tensor scalars: the vectorised template path returns exactly what the upb path returns.

Every file here is decoded twice: as whole blocks (simple_value matcher + templates + upb for
the rest) and record by record (a block of one record always takes the upb path), and the
columns must be identical: tags, seq, steps, wall times and values (NaN compared as NaN).
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2 as tb_event_pb2
from tensorboard.compat.proto import summary_pb2 as tb_summary_pb2
from tensorboard.compat.proto import tensor_pb2 as tb_tensor_pb2
from tensorboardX.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2

from tbmon.monitor.decode import _varint_bytes
from tbmon.monitor.event_file import EventFileReader
from tests.conftest import tf2_scalar
from tests.monitor.decode_paths import assert_paths_agree, frame


def _tb_scalar(tag: str, step: int, value: float, dtype: int, content: bool, wall: float) -> tb_event_pb2.Event:
    """tensorboard's own protos (with ``SummaryMetadata.data_class``, as TF2 writes it)."""
    if content:
        raw = np.asarray(value, "<f4" if dtype == 1 else "<f8").tobytes()
        tensor = tb_tensor_pb2.TensorProto(dtype=dtype, tensor_content=raw)
    elif dtype == 1:
        tensor = tb_tensor_pb2.TensorProto(dtype=dtype, float_val=[value])
    else:
        tensor = tb_tensor_pb2.TensorProto(dtype=dtype, double_val=[value])
    tensor.tensor_shape.SetInParent()
    v = tb_summary_pb2.Summary.Value(tag=tag, tensor=tensor)
    v.metadata.plugin_data.plugin_name = "scalars"
    v.metadata.data_class = tb_summary_pb2.DATA_CLASS_SCALAR
    return tb_event_pb2.Event(wall_time=wall, step=step, summary=tb_summary_pb2.Summary(value=[v]))


def _values(n: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    vals = rng.normal(size=n).astype(np.float32).tolist()
    for i, special in zip(range(7, n, 97), (float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-45, 3.0e38)):
        vals[i] = special
    return vals


@pytest.mark.parametrize("dtype,content", [(1, True), (1, False), (2, True), (2, False)])
def test_tf2_dtypes_and_encodings_match_the_upb_path(tmp_path, tb, dtype, content) -> None:
    tags = ["epoch_loss", "epoch_accuracy", "val/loss", "lr", "a" * 130]  # 130: two-byte lengths
    values = _values(3000, dtype)
    events = []
    for i, v in enumerate(values):
        step = (i // len(tags)) * 997  # 0 (no step field) up to multi-byte varints
        wall = float("nan") if i == 11 else 1.7e9 + i * 0.5
        events.append(_tb_scalar(tags[i % len(tags)], step, v, dtype, content, wall))
    path = tmp_path / "events.out.tfevents.1.tf2"
    path.write_bytes(b"".join(frame(e.SerializeToString()) for e in events))
    decoder = assert_paths_agree(path)
    assert decoder._templates.count == len(tags)  # the template path did the work


def test_mixed_writers_and_odd_layouts_match_the_upb_path(tmp_path, tb) -> None:
    """simple_value runs, TF1-style metadata on the first value only, float_val, [1] shapes,
    int and half dtypes (upb only), several values per event, metadata before the tensor."""
    events = []
    for step in range(600):
        v = float(np.float32(np.sin(step)))
        events.append(tf2_scalar("keras/loss", step, v, encoding="tensor_content"))
        events.append(tf2_scalar("torch/new_style", step, v, encoding="float_val"))
        first_only = tf2_scalar("tf1/metric", step, v)
        if step:
            first_only.summary.value[0].ClearField("metadata")
        events.append(first_only)
        events.append(event_pb2.Event(step=step, summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="tbx/loss", simple_value=v)])))
        shaped = tf2_scalar("shape1", step, v)
        shaped.summary.value[0].tensor.tensor_shape.dim.add(size=1)
        events.append(shaped)
        as_int = tf2_scalar("int_metric", step, 0.0)
        as_int.summary.value[0].tensor.CopyFrom(tensor_pb2.TensorProto(dtype=3, int_val=[step], tensor_shape=tensor_shape_pb2.TensorShapeProto()))
        events.append(as_int)
        pair = tf2_scalar("pair/a", step, v)
        pair.summary.value.append(tf2_scalar("pair/b", step, -v).summary.value[0])
        events.append(pair)
        if step % 50 == 0:
            events.append(event_pb2.Event(step=step, summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="h", histo=summary_pb2.HistogramProto(min=0, max=1, num=1, bucket_limit=[1.0], bucket=[1.0]))])))
    data = [frame(e.SerializeToString()) for e in events]
    data += [frame(_metadata_first_event(step, float(step) / 3)) for step in range(300)]
    path = tmp_path / "events.out.tfevents.1.mixed"
    path.write_bytes(b"".join(data))
    decoder = assert_paths_agree(path)
    assert decoder._templates.count >= 4


def test_reader_returns_tf2_scalars_from_real_writers(tmp_path, tb) -> None:
    """tensorboard.summary.Writer (float_val, metadata on every event) and tensorboardX's
    EventFileWriter with TF2's tensor_content layout, through the public reader."""
    from tensorboard.summary import Writer

    writer = Writer(str(tmp_path / "tbw"))
    for step in range(500):
        writer.add_scalar("loss", 1.0 / (step + 1), step=step, wall_time=1000.0 + step)
        writer.add_scalar("acc", step / 500, step=step, wall_time=1000.0 + step)
    writer.close()
    tb.events(tmp_path / "keras", [tf2_scalar("epoch_loss", s, 2.0 - s / 100, wall_time=5.0 + s) for s in range(400)])
    for run, tags, n in (("tbw", {"loss", "acc"}, 500), ("keras", {"epoch_loss"}, 400)):
        path = next((tmp_path / run).iterdir())
        chunk = EventFileReader(path).read_new()
        series = {s.tag: s for s in chunk.scalars}
        assert set(series) == tags
        assert all(len(s.step) == n and (s.step == np.arange(n)).all() for s in series.values())
        assert_paths_agree(path)
    keras = {s.tag: s for s in EventFileReader(next((tmp_path / "keras").iterdir())).read_new().scalars}["epoch_loss"]
    np.testing.assert_array_equal(keras.value, np.float32(2.0 - np.arange(400) / 100).astype(np.float64))
    np.testing.assert_array_equal(keras.wall_time, 5.0 + np.arange(400))


def _metadata_first_event(step: int, value: float) -> bytes:
    """A tensor scalar whose Summary.Value fields are in an unusual order: metadata, tensor, tag."""
    metadata = _field(1, _field(1, b"scalars"))
    tensor = b"\x08\x01" + _field(2, b"") + _field(4, struct.pack("<f", value))
    value_bytes = _field(9, metadata) + _field(8, tensor) + _field(1, b"odd/order")
    event = b"\x09" + struct.pack("<d", 1.0 + step) + (b"\x10" + _varint_bytes(step) if step else b"")
    return event + _field(5, _field(1, value_bytes))


def _field(number: int, payload: bytes) -> bytes:
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload
