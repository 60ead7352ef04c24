"""Issue 11 items 3 and 4 as the user met them: a real ``tbmon watch`` in a real pty, read as a terminal shows it.

Item 3: Ctrl-C and start the watcher again (state on): the dashboard showed only the runs with
alerts, every cell "—", and the old alert messages were gone. Item 4: Lightning's nested
``project/group/<date>/lightning_logs/version_N`` runs on a 120-column terminal left only the
run and trend columns, both cut so that runs looked the same.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from tests.conftest import EventWriters
from tests.monitor.pty_terminal import Terminal

pytestmark = pytest.mark.slow  # real watcher processes in a pty: 5-30 s each on a busy machine

SWEEP = "imagenet-resnet50/sweep-lr-warmup"
DAYS = ("2024-06-01_09-12-44", "2024-06-02_17-40-03")


def table_rows(screen: str) -> list[str]:
    """The runs table's rows: after its rule, up to the blank line."""
    lines = screen.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("─")) + 1
    return lines[start : lines.index("", start)]


def column_names(screen: str) -> list[str]:
    header = next(line for line in screen.splitlines() if line.split()[:1] == ["run"])
    return re.split(r"\s{2,}", header.strip())


def test_a_restarted_watcher_shows_the_dashboard_it_showed_before(tmp_path: Path) -> None:
    logs, state = tmp_path / "logs", tmp_path / "state.json"
    writers = EventWriters()  # tensorboardX
    steps = list(range(0, 300, 3))
    curve = [2 * math.exp(-s / 80) + 0.1 for s in steps]
    writers.scalars(logs / "baseline", {"train/loss": curve, "val/loss": [v + 0.05 for v in curve],
                                        "train/grad_norm": [1.0] * len(steps)}, steps=steps)  # fmt: skip
    writers.scalars(logs / "lr_0.1", {"train/loss": [1.0, 0.9, 0.8, 5.0, float("nan")]}, steps=[0, 10, 20, 30, 40])

    first = Terminal("watch", "--state", state, logs, columns=120, lines=30)
    try:
        first.wait_for(lambda s: "CRITICAL divergence lr_0.1" in s and "baseline" in s and "0.1988" in s)
        before = first.settle()
        assert first.interrupt() == 1
    finally:
        first.close()

    second = Terminal("watch", "--state", state, logs, columns=120, lines=30)
    try:
        after = second.wait_for(lambda s: "resumed 2 runs" in s)
        after = second.settle()
        assert table_rows(after) == table_rows(before), f"before:\n{before}\n\nafter:\n{after}"
        assert "2 runs, 2 files" in after.splitlines()[0]
        old_alert = "CRITICAL divergence lr_0.1 train/loss step 40: train/loss is NaN at step 40"
        assert old_alert in after and "resumed 2 runs from the state file (2 with their last values)" in after
        # and it stays live: a restarted training job appends a new file to baseline
        writers.scalars(logs / "baseline", {"train/loss": [0.09, 0.08]}, steps=[300, 303])
        later = second.wait_for(lambda s: any(row.split()[:2] == ["baseline", "303"] for row in table_rows(s)))
        baseline = next(row for row in table_rows(later) if row.startswith(" baseline"))
        assert "0.08" in baseline.split() and "0.1988" in baseline.split()  # new loss, val loss kept
        assert second.interrupt() == 1  # the old critical alert still counts for --fail-on
        assert after.count(old_alert) == 1 and "1 alert" in second.screen()
    finally:
        second.close()


@pytest.fixture(scope="module")
def lightning_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four runs written by Lightning's own TensorBoardLogger at Lightning's default nesting."""
    from lightning.pytorch.loggers import TensorBoardLogger

    root = tmp_path_factory.mktemp("lightning")
    for day in DAYS:
        for version in (0, 3):
            logger = TensorBoardLogger(save_dir=str(root / SWEEP / day), version=version)  # .../lightning_logs/version_N
            diverges = (day, version) == (DAYS[1], 0)
            losses = [1.0, 5.0, float("nan")] if diverges else [1.0, 0.8, 0.6, 0.5]
            for step, loss in enumerate(losses):
                logger.log_metrics({"train_loss": loss, "val_loss": loss + 0.1}, step=step)
            logger.finalize("success")
    return root


@pytest.mark.parametrize("columns", [80, 120])
def test_nested_lightning_runs_stay_apart_and_keep_step_loss_status(lightning_sweep: Path, columns: int) -> None:
    term = Terminal("watch", "--no-state", lightning_sweep, columns=columns, lines=24)
    try:
        term.wait_for(lambda s: "CRITICAL divergence" in s and len(table_rows(s)) == 4)
        screen = term.settle()
    finally:
        term.interrupt()
        term.close()
    assert f"runs under {SWEEP}/" in screen  # the shared directories, once
    assert {"run", "step", "loss", "status"} <= set(column_names(screen)), screen
    rows = table_rows(screen)
    names = [row.split()[0] for row in rows]
    assert len(set(names)) == 4, screen  # no two runs look the same
    for name in names:
        assert not name.startswith("imagenet") and re.search(r"version_[03]$", name) and name.startswith("2024-06-0"), name
    critical = next(row for row in rows if "critical" in row)
    assert critical.split()[0].startswith("2024-06-02") and critical.split()[0].endswith("version_0"), screen
    assert critical.split()[1] == "2" and "NaN" in critical.split(), critical  # its step and its loss
    for row in rows:
        if row is not critical:
            assert row.split()[1] == "3" and "0.5" in row.split() and row.split()[-1] == "ok", row
    assert "Traceback" not in screen
