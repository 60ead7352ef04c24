"""Hugging Face Transformers in one line: ``Trainer(..., callbacks=[TbmonCallback("runs/exp")])``.

Needs ``pip install 'tbmon[hf]'``. Hooks and what they log (docs/shim.md):

* a forward hook on the model (training mode only): each micro-batch's loss as the model
  returned it, BEFORE the Trainer's ``logging_nan_inf_filter`` replaces a NaN/Inf by the
  running average in its own logs; the step's loss is the mean of its micro-batches (their
  sum when the Trainer passed ``num_items_in_batch``, as the losses are then already divided
  by the whole step's token count). A model that returns no loss (``compute_loss_func``,
  label smoothing) falls back to the Trainer's own logged ``loss``, filter included.
* ``on_pre_optimizer_step``: gradient statistics and the learning rate(s). The Trainer calls
  it AFTER gradient clipping (``max_grad_norm``, 1.0 by default), so norms above the clip
  value are logged clipped; per-layer ratios, NaN/Inf and vanishing gradients are unaffected.
* ``on_step_end``: the step's loss and learning rate; then the alert policy.
* ``on_evaluate``: ``eval_loss``.

Only the world's process zero writes. ``stop`` sets ``control.should_training_stop`` (and
``checkpoint_and_stop`` also ``control.should_save``, so the Trainer saves its usual
``checkpoint-<step>``); under several processes the decision is shared with one
``all_reduce`` every ``logging_steps`` steps so that all ranks stop together.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from tbmon.trainer_shim.adapter import TbmonCallbackBase, find_val_loss


class TbmonCallback(TbmonCallbackBase, TrainerCallback):
    """Logs what tbmon needs from a Hugging Face run and guards it (``on_alert``: warn, stop, checkpoint_and_stop).

    Options: see ``TbmonCallbackBase``.
    """

    # per-run state, set by the hooks (class defaults so the shared constructor needs no override)
    _hook: torch.utils.hooks.RemovableHandle | None = None
    _summed = False  # this step's micro-batch losses add up (num_items_in_batch) or average
    _model_gave_loss = False

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        model = kwargs.get("model")
        if not isinstance(model, torch.nn.Module):
            return
        self.core.start(model)
        if self._hook is None:
            self._hook = model.register_forward_hook(self._on_forward, with_kwargs=True)

    def _on_forward(self, module: torch.nn.Module, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        if not module.training:
            return
        loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            self._summed = kwargs.get("num_items_in_batch") is not None
            self._model_gave_loss = True
            self.core.add_loss(loss)

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        optimizer = kwargs.get("optimizer")
        self.core.gradients(state.global_step, [optimizer] if optimizer is not None else [])

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.core.end_step(state.global_step - 1, summed=self._summed)
        self._apply_policy(args, state, control)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._model_gave_loss and logs and "loss" in logs and self.core.shim is not None:
            self.core.shim.log_scalars(max(state.global_step - 1, 0), {"train/loss": logs["loss"]})

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.core.validation(max(state.global_step - 1, 0), find_val_loss(metrics or {}))
        self._apply_policy(args, state, control)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self.core.close()

    def _apply_policy(self, args: TrainingArguments, state: TrainerState, control: TrainerControl) -> None:
        wanted = self.core.stop_requested()  # also logs the alerts raised since the last hook
        if not self.core.policy.stops or self.core.stopped_at is not None:
            return
        if args.world_size > 1:
            # every rank reaches this at the same steps: the collective is never rank-0-only
            every = max(int(state.logging_steps or 1), 1)
            if state.global_step % every:
                return
            flag = torch.tensor([float(wanted)], device=args.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            wanted = bool(flag.item())
        if not wanted:
            return
        control.should_training_stop = True
        if self.core.policy.checkpoints:
            control.should_save = True
        step = max(state.global_step - 1, 0)
        saved = os.path.join(args.output_dir, f"checkpoint-{state.global_step}") if self.core.policy.checkpoints else None
        self.core.stopping(step, saved)
