"""The Lightning callback on real tiny trainings (CPU): tags, steps, the guard and its policies, DDP."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

pl = pytest.importorskip("lightning.pytorch", reason="the [lightning] extra is not installed")

from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402

from tbmon.analyzers import analyze  # noqa: E402
from tbmon.monitor import read  # noqa: E402
from tbmon.trainer_shim.lightning import TbmonCallback  # noqa: E402
from tests.trainer_shim.frameworks import identity, report_alerts  # noqa: E402
from tests.trainer_shim.lightning_training import fit  # noqa: E402
from tests.trainer_shim.training import load  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
STEPS_PER_EPOCH = 24  # 1,500 digits in batches of 64


class LossRecorder(pl.Callback):
    """The loss Lightning hands to callbacks at each batch (already divided by the accumulation)."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.losses.append(float(outputs["loss"]))


def _scalar(logdir: Path, tag: str) -> Any:
    frame = read(logdir).scalars
    return frame[(frame.run == ".") & (frame.tag == tag)]


def test_healthy_run_beside_lightnings_own_tensorboard_logger(tmp_path: Path) -> None:
    callback = TbmonCallback(tmp_path, on_alert="stop", hist_every=10)
    recorder = LossRecorder()
    trainer = fit([callback, recorder], epochs=3, logger=TensorBoardLogger(tmp_path), log_every_n_steps=5)
    assert trainer.global_step == 3 * STEPS_PER_EPOCH and callback.core.stopped_at is None  # never stopped
    assert callback.alerts == [] and report_alerts(tmp_path) == []
    # our run (the logdir itself) and Lightning's (lightning_logs/version_0) side by side, no shared tag
    ours = load(tmp_path)
    theirs = load(tmp_path / "lightning_logs" / "version_0")
    our_tags = set(ours.Tags()["scalars"]) | set(ours.Tags()["histograms"])
    assert {"train/loss", "val/loss", "train/learning_rate", "train/grad_norm", "grad/net.0.weight"} <= our_tags
    assert {"train_loss", "val_loss"} <= set(theirs.Tags()["scalars"])
    assert not our_tags & set(theirs.Tags()["scalars"])
    assert {r.run for r in read(tmp_path).runs} == {".", "lightning_logs/version_0"}
    # the loss at every optimizer step, the very values Lightning computed; gradients every 10 steps
    assert [e.step for e in ours.Scalars("train/loss")] == list(range(3 * STEPS_PER_EPOCH))
    assert [e.value for e in ours.Scalars("train/loss")] == pytest.approx(recorder.losses, rel=1e-6)
    assert [e.step for e in ours.Histograms("grad/net.0.weight")] == list(range(0, 3 * STEPS_PER_EPOCH, 10))
    assert [e.step for e in ours.Scalars("val/loss")] == [STEPS_PER_EPOCH * k - 1 for k in (1, 2, 3)]
    assert [e.value for e in ours.Scalars("train/learning_rate")] == pytest.approx([0.1] * 3 * STEPS_PER_EPOCH)


def test_nan_run_stops_at_the_first_non_finite_loss_and_report_agrees(tmp_path: Path) -> None:
    callback = TbmonCallback(tmp_path, on_alert="stop")
    recorder = LossRecorder()
    trainer = fit([callback, recorder], lr=1e8, epochs=3)
    first_nan = next(i for i, v in enumerate(recorder.losses) if not math.isfinite(v))
    assert trainer.global_step == first_nan + 1  # the step that went NaN was the last one
    assert callback.core.stopped_at == first_nan
    (alert,) = [a for a in callback.alerts if a.severity == "critical"]
    assert (alert.kind, alert.step, alert.tag) == ("divergence", first_nan, "train/loss")
    assert math.isnan(_scalar(tmp_path, "train/loss").value.iloc[-1])  # the NaN is in the event file
    notes = load(tmp_path).Tensors("tbmon/alerts/text_summary")  # and the alert, for TensorBoard
    assert any(e.step == first_nan and b"CRITICAL divergence" in e.tensor_proto.string_val[0] for e in notes)
    assert sorted(map(identity, callback.alerts)) == sorted(map(identity, report_alerts(tmp_path)))


def test_warn_lets_the_doomed_run_finish_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    callback = TbmonCallback(tmp_path)  # on_alert="warn" is the default
    with caplog.at_level("WARNING", logger="tbmon"):
        trainer = fit([callback], lr=1e8, epochs=1)
    assert trainer.global_step == STEPS_PER_EPOCH and callback.core.stopped_at is None
    assert any("CRITICAL divergence" in r.getMessage() and "is NaN" in r.getMessage() for r in caplog.records)


def test_checkpoint_and_stop_saves_a_loadable_checkpoint(tmp_path: Path) -> None:
    callback = TbmonCallback(tmp_path, on_alert="checkpoint_and_stop")
    trainer = fit([callback], lr=1e8, epochs=2)
    step = callback.core.stopped_at
    assert step is not None and trainer.global_step == step + 1
    saved = torch.load(tmp_path / f"tbmon-stop-step{step}.ckpt", weights_only=False)
    assert saved["global_step"] == step + 1 and "net.0.weight" in saved["state_dict"]


def test_gradient_accumulation_logs_one_mean_loss_per_optimizer_step(tmp_path: Path) -> None:
    callback = TbmonCallback(tmp_path, hist_every=0, norms_every=1)
    recorder = LossRecorder()
    trainer = fit([callback, recorder], epochs=1, accumulate_grad_batches=2)
    assert trainer.global_step == STEPS_PER_EPOCH // 2
    pairs = [recorder.losses[i] + recorder.losses[i + 1] for i in range(0, STEPS_PER_EPOCH, 2)]
    assert _scalar(tmp_path, "train/loss").value.tolist() == pytest.approx(pairs, rel=1e-5)
    assert _scalar(tmp_path, "train/grad_norm").step.tolist() == list(range(STEPS_PER_EPOCH // 2))


def test_bad_policy_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="on_alert='halt'.*warn, stop, checkpoint_and_stop"):
        TbmonCallback("unused", on_alert="halt")
    with pytest.raises(ValueError, match="severity='fatal'.*info, warning, critical"):
        TbmonCallback("unused", severity="fatal")
    with pytest.raises(ValueError, match="needs the guard"):
        TbmonCallback("unused", on_alert="stop", guard=False)


def _ddp(logdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "tests.trainer_shim.lightning_training", str(logdir), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.slow
def test_ddp_two_gloo_processes_one_writer_and_a_shared_stop(tmp_path: Path) -> None:
    healthy = _ddp(tmp_path / "healthy")
    assert healthy.returncode == 0, healthy.stderr[-3000:]
    files = sorted(p for p in (tmp_path / "healthy").rglob("*") if p.is_file())
    assert len(files) == 1 and files[0].parent == tmp_path / "healthy"  # rank 0 only, no rank dirs
    steps = _scalar(tmp_path / "healthy", "train/loss").step.tolist()
    assert steps == list(range(12))  # 1,500 digits / 2 ranks / 64 = 12 optimizer steps
    assert analyze(tmp_path / "healthy") == []

    # NaN on every rank; rank 0's guard decides, every rank stops within one logging step (5)
    doomed = _ddp(tmp_path / "doomed", "--lr", "1e8", "--on-alert", "stop")
    assert doomed.returncode == 0, doomed.stderr[-3000:]
    assert "stopping training at step" in doomed.stderr
    loss = _scalar(tmp_path / "doomed", "train/loss")
    first_nan = int(loss.step[loss.value.isna()].iloc[0])
    assert loss.step.max() <= first_nan + 5 < 3 * 12
    assert any(a.kind == "divergence" and a.severity == "critical" for a in analyze(tmp_path / "doomed"))
