"""The bench anchor ``bench/rustboard.py`` really receives every point from TensorBoard's Rust
data server: a harness that got fewer points would make every ratio against it a lie."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tbmon.monitor import read
from tests.conftest import tf2_scalar

rustboard = pytest.importorskip("bench.rustboard", reason="bench/ is importable from the repository root only")


def test_rustboard_harness_counts_every_scalar_and_histogram(tmp_path: Path, tb) -> None:
    try:
        rustboard.server_binary()
    except SystemExit:
        pytest.skip("tensorboard-data-server ships no binary for this platform")
    rng = np.random.default_rng(0)
    tb.scalars(tmp_path / "a", {"loss": list(np.linspace(1, 0, 300)), "lr": [0.1] * 300})
    tb.histograms(tmp_path / "a", {"grad/w": [rng.normal(size=50) for _ in range(20)]})
    tb.events(tmp_path / "keras" / "train", [tf2_scalar("epoch_loss", s, 1.0 / (s + 1)) for s in range(40)])
    ours = read(tmp_path)
    got = rustboard.read_logdir(tmp_path, timeout=60)
    assert (got["scalars"], got["histograms"]) == (len(ours.scalars), len(ours.histograms)) == (640, 20)
    assert got["server_cpu"] >= 0 and got["peak_mb"] > 0 and got["seconds"] > 0
