"""The Python API as data people know: ``read()``'s run/tag regex filters, ``pivot=True``, alerts
as a DataFrame, and ``Engine.feed`` on what the reader returns (issue 11, item 7).

Logs are written with ``torch.utils.tensorboard`` under PyTorch's tutorial tags.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tbmon.analyzers import Engine, alerts_frame, analyze
from tbmon.monitor import LogdirReader, read


@pytest.fixture(scope="module")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``lr_0.1/seed1`` overfits (Loss/test bottoms out at epoch 12), ``lr_0.01/seed1`` is healthy,
    ``broken`` holds only a garbage event file."""
    from torch.utils.tensorboard import SummaryWriter

    root = tmp_path_factory.mktemp("api")
    for run, overfit in (("lr_0.1/seed1", True), ("lr_0.01/seed1", False)):
        writer = SummaryWriter(str(root / run))
        for epoch in range(40):
            for batch in range(10):
                step = epoch * 10 + batch
                writer.add_scalar("Loss/train", 2 * math.exp(-step / 80) + 0.05, step)
            test = 0.6 + 0.002 * (epoch - 12) ** 2 if overfit else 2 * math.exp(-step / 80) + 0.1
            writer.add_scalar("Loss/test", test, step)
            writer.add_scalar("Accuracy/test", 0.5 + epoch / 100, step)
        writer.close()
    (root / "broken").mkdir()
    (root / "broken" / "events.out.tfevents.1700000000.host").write_bytes(b"\x07" * 300)
    return root


def test_run_filter_is_a_case_insensitive_search_and_unmatched_runs_are_not_read(logdir: Path) -> None:
    everything = read(logdir)
    assert {r.run for r in everything.runs} == {"lr_0.1/seed1", "lr_0.01/seed1", "broken"}
    assert everything.problems  # the garbage file, when it is read
    only = read(logdir, runs=r"LR_0\.1/")
    assert [r.run for r in only.runs] == ["lr_0.1/seed1"]
    assert set(only.scalars["run"]) == {"lr_0.1/seed1"}
    assert only.problems == []  # `broken` was never opened
    assert [b.run for b in only.batches] == ["lr_0.1/seed1"]


def test_tag_filter_keeps_only_matching_tags_everywhere_and_analysis_follows_it(logdir: Path) -> None:
    losses = read(logdir, runs="^lr_", tags=r"^loss/")
    assert set(losses.scalars["tag"]) == {"Loss/train", "Loss/test"}
    assert all(r.scalar_tags == ["Loss/test", "Loss/train"] for r in losses.runs)
    assert [a.run for a in analyze(losses) if a.kind == "overfitting"] == ["lr_0.1/seed1"]
    train_only = read(logdir, tags="train")
    assert set(train_only.scalars["tag"]) == {"Loss/train"}
    assert [a for a in analyze(train_only) if a.kind == "overfitting"] == []  # no held-out loss kept


def test_pivot_gives_tbparses_wide_frame_with_the_same_values(logdir: Path) -> None:
    long = read(logdir, runs="^lr_").scalars
    long = long.assign(run=long["run"].astype(str))  # categorical in the long frame, plain in the wide one
    wide = read(logdir, runs="^lr_", pivot=True).scalars
    assert list(wide.columns) == ["run", "step", "Accuracy/test", "Loss/test", "Loss/train"]
    assert len(wide) == long.groupby(["run", "step"], observed=True).ngroups == 2 * 400
    for tag in ("Loss/train", "Loss/test"):
        expected = long[long["tag"] == tag].set_index(["run", "step"])["value"].astype("float64")
        got = wide.set_index(["run", "step"])[tag].dropna()
        pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False)
    assert wide["Loss/test"].isna().sum() == 2 * 360  # once per epoch, NaN at the other steps
    assert list(read(logdir / "broken", pivot=True).scalars.columns) == ["run", "step"]


def test_an_invalid_regex_is_a_value_error_that_names_it(logdir: Path) -> None:
    with pytest.raises(ValueError, match=r"tags='\(' is not a valid regular expression"):
        read(logdir, tags="(")


def test_alerts_as_a_dataframe_keep_nan_as_float_and_evidence_as_dicts(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "nan_run"))
    for step, value in enumerate([1.0, 0.9, 0.8, float("nan")]):
        writer.add_scalar("train/loss", value, step)
    writer.close()
    alerts = analyze(tmp_path)
    frame = alerts_frame(alerts)
    assert list(frame.columns) == ["run", "kind", "severity", "step", "wall_time", "tag", "message", "evidence", "incident"]
    assert frame["incident"].tolist() == ["nan_run:instability@3"] * len(frame)  # as report and watch name it
    assert len(frame) == len(alerts) >= 1
    row = frame[frame["kind"] == "divergence"].iloc[0]
    assert row["step"] == 3 and frame["step"].dtype == np.int64
    assert isinstance(row["evidence"], dict) and math.isnan(row["evidence"]["value"])
    assert alerts_frame([]).columns.tolist() == frame.columns.tolist()


def test_engine_feed_takes_a_poll_result_whole(logdir: Path) -> None:
    """The README's `Engine().feed(LogdirReader(d).poll())` raised AttributeError before."""
    alerts = Engine().feed(LogdirReader(logdir).poll())
    assert [(a.run, a.kind) for a in alerts] == [("lr_0.1/seed1", "overfitting")]
    assert [a.key() for a in alerts] == [a.key() for a in Engine().feed(read(logdir))]
