"""Acceptance: tbmon reads what TensorBoard reads, value for value.

Real files written by other people's code (/work/shared/real-logs, see its SOURCES.md: TF2
C++ writer, TF1, tensorboardX, Lightning/torch, Keras) must read with zero problems and give
the same scalars as TensorBoard's EventAccumulator: ``.Scalars(tag)`` for ``simple_value``,
``.Tensors(tag)`` + ``make_ndarray`` for TF2 tensor scalars (plugin ``scalars``). The corpus
has no histograms, so histograms written here by tensorboardX and torch ``add_histogram`` are
checked against ``.Histograms(tag)`` field by field.

The corpus sits next to the repository (``<parent of repo>/shared/real-logs``), as in CI.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

from tbmon.monitor import read
from tests.conftest import tf2_histogram

REAL_LOGS = Path(__file__).resolve().parents[3] / "shared" / "real-logs"
ALL = {"scalars": 0, "tensors": 0, "histograms": 0}

pytestmark = pytest.mark.skipif(
    not REAL_LOGS.is_dir(), reason=f"real-logs corpus not found at {REAL_LOGS} (clone main next to shared/)"
)


def oracle_scalars(event_file: Path) -> dict[str, list[tuple[int, float, float]]]:
    """(step, wall_time, value) per scalar tag, as TensorBoard's EventAccumulator sees them."""
    acc = EventAccumulator(str(event_file), size_guidance=ALL)
    acc.Reload()
    out = {tag: [(e.step, e.wall_time, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    for tag in acc.Tags()["tensors"]:
        if acc.SummaryMetadata(tag).plugin_data.plugin_name == "scalars":
            out[tag] = [
                (e.step, e.wall_time, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)
            ]
    return out


def superseded_dropped(points: list[tuple[int, float, float]]) -> list[tuple[int, float, float]]:
    """The oracle's points minus those a later point of the tag at the same or lower step
    supersedes. EventAccumulator keeps duplicate steps (Lightning logs ``epoch`` twice per
    step, at train and at validation end); tbmon keeps the last, as RustBoard does."""
    return [p for i, p in enumerate(points) if all(q[0] > p[0] for q in points[i + 1 :])]


@pytest.fixture(scope="module")
def corpus():
    return read(REAL_LOGS)


def test_every_real_file_reads_without_problems(corpus) -> None:
    files = sorted(p for p in REAL_LOGS.rglob("*tfevents*") if p.is_file())
    assert len(files) == 16  # SOURCES.md
    assert corpus.problems == []
    read_files = sorted(Path(f.path) for run in corpus.runs for f in run.files)
    assert read_files == files
    for run in corpus.runs:
        for f in run.files:
            assert f.bytes_read == f.size and f.problems == {}


def test_real_scalars_equal_tensorboards(corpus) -> None:
    compared = raw = 0
    for run in corpus.runs:
        (file_info,) = run.files  # one file per run in this corpus
        expected = oracle_scalars(Path(file_info.path))
        df = corpus.scalars[corpus.scalars.run == run.run]
        assert run.scalar_tags == sorted(expected)
        for tag, all_points in expected.items():
            points = superseded_dropped(all_points)
            raw += len(all_points)
            ours = df[df.tag == tag]
            assert ours.step.tolist() == [p[0] for p in points], (run.run, tag)
            assert ours.wall_time.tolist() == [p[1] for p in points], (run.run, tag)
            # EventAccumulator widens float32 to a Python float exactly as we do: equal, not close.
            assert ours.value.tolist() == [p[2] for p in points], (run.run, tag)
            compared += len(points)
    assert compared == len(corpus.scalars) > 5_000  # TF2 tensor scalars included (100 of them)
    # The raw stream the analyzers get keeps every point, duplicates included.
    assert sum(len(s) for b in corpus.batches for s in b.scalars) == raw == sum(r.points for r in corpus.runs)


def test_tf2_tensor_scalars_are_in_scalars(corpus) -> None:
    run = "orktes__go-tensorboard/testdata/tfevents"
    assert corpus.scalars[corpus.scalars.run == run].tag.unique().tolist() == ["my_metric"]


def test_keras_model_config_only_runs_are_listed_without_data(corpus) -> None:
    keras = [r for r in corpus.runs if r.role == "train"]
    assert len(keras) == 3 and all(r.scalar_tags == [] and r.last_step is None for r in keras)


def oracle_histograms(event_file: Path, tag: str):
    acc = EventAccumulator(str(event_file), size_guidance=ALL)
    acc.Reload()
    return acc.Histograms(tag)


@pytest.mark.parametrize("backend", ["tensorboardX", "torch"])
def test_written_histograms_equal_tensorboards(tmp_path: Path, tb, backend: str) -> None:
    rng = np.random.default_rng(7)
    values = [rng.normal(0, 10.0 ** -k, size=500) for k in range(6)] + [np.zeros(3), np.full(4, 2.5)]
    path = tb.histograms(tmp_path, {"grad/layer.weight": values}, backend=backend)
    result = read(tmp_path, histograms="full")
    expected = oracle_histograms(path, "grad/layer.weight")
    ours = result.histograms
    assert len(ours) == len(expected) == len(values)
    for row, event in zip(ours.itertuples(), expected):
        h = event.histogram_value
        assert (row.step, row.wall_time) == (event.step, event.wall_time)
        assert (row.min, row.max, row.num, row.sum, row.sum_squares) == (h.min, h.max, h.num, h.sum, h.sum_squares)
        assert row.bucket_limits.tolist() == list(h.bucket_limit)
        assert row.bucket_counts.tolist() == list(h.bucket)


def test_tf2_histogram_tensors_keep_tensorboards_buckets(tmp_path: Path, tb) -> None:
    rows = np.array([[-1.0, 0.0, 2.0], [0.0, 0.5, 0.0], [0.5, 3.0, 6.0]])
    path = tb.events(tmp_path, [tf2_histogram("dense/kernel_0", 3, rows)])
    acc = EventAccumulator(str(path), size_guidance=ALL)
    acc.Reload()
    (event,) = acc.Tensors("dense/kernel_0")
    oracle = tensor_util.make_ndarray(event.tensor_proto)
    (row,) = read(tmp_path, histograms="full").histograms.itertuples()
    assert row.step == event.step
    assert row.bucket_limits.tolist() == oracle[:, 1].tolist()
    assert row.bucket_counts.tolist() == oracle[:, 2].tolist()
    assert (row.min, row.max, row.num) == (oracle[0, 0], oracle[-1, 1], oracle[:, 2].sum())
