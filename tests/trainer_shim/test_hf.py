"""The Hugging Face callback on real tiny trainings (GPT-2 from a config, CPU): tags, the real loss, policies."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers", reason="the [hf] extra is not installed")

from tbmon.monitor import read  # noqa: E402
from tbmon.trainer_shim.hf import TbmonCallback  # noqa: E402
from tests.trainer_shim.frameworks import identity, report_alerts  # noqa: E402
from tests.trainer_shim.hf_training import PlainLM, train  # noqa: E402
from tests.trainer_shim.training import load  # noqa: E402

DOOMED = {"lr": 1e6, "optim": "sgd", "max_grad_norm": 0.0}  # plain SGD, no clipping: NaN at step 2


def _loss(logdir: Path) -> Any:
    frame = read(logdir).scalars
    return frame[frame.tag == "train/loss"]


def _hf_losses(trainer: Any) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def test_healthy_run_logs_the_trainers_own_loss_and_never_stops(tmp_path: Path) -> None:
    callback = TbmonCallback(tmp_path / "tb", on_alert="stop", hist_every=10)
    trainer = train(str(tmp_path), [callback], steps=40)
    assert trainer.state.global_step == 40 and callback.core.stopped_at is None
    assert callback.alerts == [] and report_alerts(tmp_path / "tb") == []
    acc = load(tmp_path / "tb")
    tags = set(acc.Tags()["scalars"]) | set(acc.Tags()["histograms"])
    assert {"train/loss", "val/loss", "train/learning_rate", "train/grad_norm", "grad/transformer.wte.weight"} <= tags
    losses = [e.value for e in acc.Scalars("train/loss")]
    assert [e.step for e in acc.Scalars("train/loss")] == list(range(40))
    # the Trainer logs the mean over each 10 steps: ours are the per-step values it averaged
    means = [sum(losses[i : i + 10]) / 10 for i in range(0, 40, 10)]
    assert means == pytest.approx(_hf_losses(trainer), abs=2e-4)  # HF rounds its logs to 4 decimals
    assert losses[-1] < 0.6 * losses[0]  # it learned
    assert [e.step for e in acc.Scalars("val/loss")] == [19, 39]
    assert [e.step for e in acc.Histograms("grad/transformer.wte.weight")] == [0, 10, 20, 30]


def test_the_nan_hf_filters_from_its_logs_is_in_ours_with_a_critical_alert(tmp_path: Path) -> None:
    callback = TbmonCallback(tmp_path / "tb")  # warn: the run goes on
    trainer = train(str(tmp_path), [callback], steps=20, logging_steps=5, **DOOMED)
    assert trainer.state.global_step == 20
    assert all(math.isfinite(v) for v in _hf_losses(trainer))  # logging_nan_inf_filter hid it
    loss = _loss(tmp_path / "tb")
    first_nan = int(loss.step[loss.value.isna()].iloc[0])
    critical = [a for a in callback.alerts if a.severity == "critical"]
    assert (critical[0].kind, critical[0].step, critical[0].tag) == ("divergence", first_nan, "train/loss")
    assert sorted(map(identity, callback.alerts)) == sorted(map(identity, report_alerts(tmp_path / "tb")))
    notes = load(tmp_path / "tb").Tensors("tbmon/alerts/text_summary")
    assert any(e.step == first_nan and b"CRITICAL divergence" in e.tensor_proto.string_val[0] for e in notes)


def test_stop_ends_training_on_the_first_non_finite_step(tmp_path: Path) -> None:
    callback = TbmonCallback(tmp_path / "tb", on_alert="stop")
    trainer = train(str(tmp_path), [callback], steps=40, **DOOMED)
    loss = _loss(tmp_path / "tb")
    first_nan = int(loss.step[loss.value.isna()].iloc[0])
    assert callback.core.stopped_at == first_nan and trainer.state.global_step == first_nan + 1
    assert loss.step.max() == first_nan


def test_checkpoint_and_stop_saves_the_trainers_checkpoint(tmp_path: Path) -> None:
    callback = TbmonCallback(tmp_path / "tb", on_alert="checkpoint_and_stop")
    trainer = train(str(tmp_path), [callback], steps=40, **DOOMED)
    saved = tmp_path / f"checkpoint-{trainer.state.global_step}"
    assert callback.core.stopped_at == trainer.state.global_step - 1 < 39
    assert (saved / "model.safetensors").is_file() and (saved / "trainer_state.json").is_file()


@pytest.mark.parametrize("plain", [False, True], ids=["num_items_in_batch", "no_loss_kwargs"])
def test_gradient_accumulation_logs_one_loss_per_optimizer_step(tmp_path: Path, plain: bool) -> None:
    # GPT-2 takes num_items_in_batch (micro-batch losses add up); PlainLM does not (they average)
    callback = TbmonCallback(tmp_path / "tb", hist_every=0, norms_every=1)
    model = PlainLM() if plain else None
    trainer = train(str(tmp_path), [callback], steps=20, gradient_accumulation_steps=2, logging_steps=5, model=model)
    loss = _loss(tmp_path / "tb")
    assert loss.step.tolist() == list(range(20))
    means = [loss.value.iloc[i : i + 5].mean() for i in range(0, 20, 5)]
    assert means == pytest.approx(_hf_losses(trainer), abs=2e-4)


def test_a_loss_the_model_does_not_return_comes_from_the_trainers_logs(tmp_path: Path) -> None:
    import torch

    def shifted_cross_entropy(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
        logits = outputs.logits[:, :-1].reshape(-1, outputs.logits.shape[-1])
        return torch.nn.functional.cross_entropy(logits, labels[:, 1:].reshape(-1))

    callback = TbmonCallback(tmp_path / "tb")
    trainer = train(str(tmp_path), [callback], steps=20, logging_steps=5, compute_loss_func=shifted_cross_entropy)
    loss = _loss(tmp_path / "tb")
    assert loss.step.tolist() == [4, 9, 14, 19]  # at the Trainer's logging steps, its own values
    assert loss.value.tolist() == pytest.approx(_hf_losses(trainer), rel=1e-6)
