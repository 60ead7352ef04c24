"""Shared fixtures: write real event files into ``tmp_path`` with the writers users run.

Use the ``tb`` fixture (an :class:`EventWriters`) in any test:

    def test_x(tmp_path, tb):
        path = tb.scalars(tmp_path / "run", {"loss": [1.0, 0.5]})                  # tensorboardX
        tb.scalars(tmp_path / "run", {"loss": [0.4]}, steps=[1], backend="torch", purge_step=1)
        tb.histograms(tmp_path / "run", {"grad/w": [np.random.randn(100)]})
        tb.events(tmp_path / "keras" / "train", [tf2_scalar("epoch_loss", 0, 0.9)])

Every call opens a NEW writer, writes, and closes it, so each call adds one event file to the
directory (as a restarted job does). tensorboardX names files by the second, and two writers
in one second would overwrite each other (lanpa/tensorboardX#776), so each call gets a unique,
zero-padded filename suffix that keeps name order = call order.

TF2/Keras summaries (tensor scalars, ``[k,3]`` histogram tensors) are built as ``Event`` protos
by :func:`tf2_scalar` / :func:`tf2_histogram` (TensorFlow is not installed) with the byte
layout of the real TF2 file in /work/shared/real-logs, and written by tensorboardX's own
``EventFileWriter`` (real framing and CRCs).

torch is imported only when ``backend="torch"`` is used.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
from tensorboardX.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2

BACKENDS = ("tensorboardX", "torch")
_DT_FLOAT, _DT_DOUBLE = 1, 2


def tf2_scalar(
    tag: str, step: int, value: float, *, wall_time: float | None = None, encoding: str = "tensor_content"
) -> event_pb2.Event:
    """A TF2 ``tf.summary.scalar`` event: DT_FLOAT shape [] with plugin ``scalars``.

    ``encoding``: ``tensor_content`` (TF's C++ writer, as in the real orktes file),
    ``float_val`` (torch ``new_style=True``) or ``double_val`` (DT_DOUBLE).
    """
    if encoding == "tensor_content":
        tensor = tensor_pb2.TensorProto(dtype=_DT_FLOAT, tensor_content=np.float32(value).tobytes())
    elif encoding == "float_val":
        tensor = tensor_pb2.TensorProto(dtype=_DT_FLOAT, float_val=[value])
    elif encoding == "double_val":
        tensor = tensor_pb2.TensorProto(dtype=_DT_DOUBLE, double_val=[value])
    else:
        raise ValueError(f"unknown encoding {encoding!r}")
    tensor.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto())
    return _tensor_event(tag, step, tensor, "scalars", wall_time)


def tf2_histogram(tag: str, step: int, rows: np.ndarray, *, wall_time: float | None = None) -> event_pb2.Event:
    """A TF2 ``tf.summary.histogram`` event: DT_DOUBLE ``[k,3]`` (left, right, count) rows."""
    rows = np.asarray(rows, dtype="<f8").reshape(-1, 3)
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in rows.shape]
    )
    tensor = tensor_pb2.TensorProto(dtype=_DT_DOUBLE, tensor_shape=shape, tensor_content=rows.tobytes())
    return _tensor_event(tag, step, tensor, "histograms", wall_time)


def session_start(step: int, *, wall_time: float | None = None) -> event_pb2.Event:
    """A ``SessionLog.START`` at ``step``: what torch's ``purge_step`` and TF1 sessions write."""
    event = event_pb2.Event(step=step, session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START))
    if wall_time is not None:
        event.wall_time = wall_time
    return event


def _tensor_event(tag: str, step: int, tensor: tensor_pb2.TensorProto, plugin: str, wall_time: float | None):
    value = summary_pb2.Summary.Value(tag=tag, tensor=tensor)
    value.metadata.plugin_data.plugin_name = plugin
    event = event_pb2.Event(step=step, summary=summary_pb2.Summary(value=[value]))
    if wall_time is not None:
        event.wall_time = wall_time
    return event


class EventWriters:
    """Writes event files with real writers; see the module docstring."""

    def __init__(self) -> None:
        self._counter = itertools.count()

    def scalars(
        self,
        run_dir: str | os.PathLike[str],
        values: Mapping[str, Sequence[float]],
        *,
        steps: Sequence[int] | None = None,
        wall_times: Sequence[float] | None = None,
        backend: str = "tensorboardX",
        purge_step: int | None = None,
    ) -> Path:
        """One writer, one file: ``values[tag][i]`` at ``steps[i]`` (default 0, 1, ...), interleaved by step."""
        n = max((len(v) for v in values.values()), default=0)
        steps = list(range(n)) if steps is None else list(steps)
        with self._writer(run_dir, backend, purge_step) as (writer, _):
            for i, step in enumerate(steps):
                for tag, series in values.items():
                    if i < len(series):
                        wall = None if wall_times is None else wall_times[i]
                        writer.add_scalar(tag, series[i], step, walltime=wall)
        return self.last_path

    def histograms(
        self,
        run_dir: str | os.PathLike[str],
        values: Mapping[str, Sequence[np.ndarray]],
        *,
        steps: Sequence[int] | None = None,
        backend: str = "tensorboardX",
    ) -> Path:
        """One writer, one file: ``add_histogram(tag, values[tag][i], steps[i])`` (default bins)."""
        n = max((len(v) for v in values.values()), default=0)
        steps = list(range(n)) if steps is None else list(steps)
        with self._writer(run_dir, backend, None) as (writer, _):
            for i, step in enumerate(steps):
                for tag, series in values.items():
                    if i < len(series):
                        writer.add_histogram(tag, np.asarray(series[i]), step)
        return self.last_path

    def events(self, run_dir: str | os.PathLike[str], events: Iterable[event_pb2.Event]) -> Path:
        """One file of hand-built ``Event`` protos via tensorboardX's ``EventFileWriter``."""
        from tensorboardX.event_file_writer import EventFileWriter

        directory = Path(run_dir)
        directory.mkdir(parents=True, exist_ok=True)
        before = set(directory.iterdir())
        writer = EventFileWriter(str(directory), filename_suffix=self._suffix())
        for event in events:
            if not event.wall_time:
                event.wall_time = 1.7e9
            writer.add_event(event)
        writer.close()
        self.last_path = _new_file(directory, before)
        return self.last_path

    def _suffix(self) -> str:
        return f".{next(self._counter):04d}"

    def _writer(self, run_dir, backend: str, purge_step: int | None):
        return _OpenWriter(self, Path(run_dir), backend, purge_step)


class _OpenWriter:
    """Context manager: a fresh SummaryWriter in ``directory``; records the file it made."""

    def __init__(self, owner: EventWriters, directory: Path, backend: str, purge_step: int | None) -> None:
        self.owner, self.directory, self.backend, self.purge_step = owner, directory, backend, purge_step

    def __enter__(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        self.before = set(self.directory.iterdir())
        suffix = self.owner._suffix()
        if self.backend == "tensorboardX":
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(str(self.directory), purge_step=self.purge_step, filename_suffix=suffix)
        elif self.backend == "torch":
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.directory), purge_step=self.purge_step, filename_suffix=suffix)
        else:
            raise ValueError(f"backend must be one of {BACKENDS}, not {self.backend!r}")
        return self.writer, self.directory

    def __exit__(self, *exc) -> None:
        self.writer.close()
        self.owner.last_path = _new_file(self.directory, self.before)


def _new_file(directory: Path, before: set[Path]) -> Path:
    (path,) = [p for p in set(directory.iterdir()) - before if "tfevents" in p.name]
    return path


@pytest.fixture
def tb() -> EventWriters:
    """Writers for real event files (tensorboardX, torch.utils.tensorboard, hand-built TF2)."""
    return EventWriters()
