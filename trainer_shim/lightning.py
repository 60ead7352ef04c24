"""PyTorch Lightning in one line: ``Trainer(callbacks=[TbmonCallback("runs/exp")])``.

Needs ``pip install 'tbmon[lightning]'``. Hooks and what they log (docs/shim.md):

* ``on_before_optimizer_step``: gradient statistics and the learning rate(s). Lightning calls
  it once per optimizer step, after gradient accumulation and after AMP unscaling, and before
  gradient clipping, so the norms are the model's own, not the clipped ones.
* ``on_train_batch_end``: the training loss (the step's mean over its accumulated
  micro-batches), at the step's index.
* ``on_validation_end``: the validation loss the module logged (``val_loss``, ``val/loss``...).

Only global rank 0 writes (under DDP and the sharded strategies too, where the gradient
statistics are gathered from every rank first). The guard's alerts are acted on at the next
hook on the training thread; under several processes the stop decision is shared with
``reduce_boolean_decision`` every ``log_every_n_steps`` steps, as Lightning's ``EarlyStopping``
does, so all ranks stop together.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from tbmon.trainer_shim.adapter import TbmonCallbackBase, find_val_loss
from tbmon.trainer_shim.policy import checkpoint_path

# Strategies whose parameters hold only this rank's shard of each gradient.
_SHARDED = ("FSDPStrategy", "DeepSpeedStrategy", "ModelParallelStrategy")


class TbmonCallback(TbmonCallbackBase, Callback):
    """Logs what tbmon needs from a Lightning run and guards it (``on_alert``: warn, stop, checkpoint_and_stop).

    Options: see ``TbmonCallbackBase``.
    """

    _seen_step = 0  # the last optimizer step logged (a class default: the shared constructor sets no state)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            sharded = type(trainer.strategy).__name__ in _SHARDED
            self.core.start(pl_module, reduce_across_ranks=sharded and trainer.world_size > 1)
            self._seen_step = trainer.global_step

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        self.core.gradients(trainer.global_step, trainer.optimizers)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.core.add_loss(outputs.get("loss") if isinstance(outputs, Mapping) else outputs)
        if trainer.global_step == self._seen_step:
            return  # accumulating: the optimizer has not stepped yet
        self._seen_step = trainer.global_step
        # automatic optimization divides each micro-batch loss by accumulate_grad_batches
        self.core.end_step(trainer.global_step - 1, summed=pl_module.automatic_optimization)
        self._apply_policy(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.core.validation(max(trainer.global_step - 1, 0), find_val_loss(trainer.callback_metrics))
        self._apply_policy(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.core.close()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.core.close()

    def _apply_policy(self, trainer: pl.Trainer) -> None:
        wanted = self.core.stop_requested()  # also logs the alerts raised since the last hook
        if not self.core.policy.stops or self.core.stopped_at is not None:
            return
        if trainer.world_size > 1:
            # every rank reaches this at the same steps: the collective is never rank-0-only
            if trainer.log_every_n_steps > 0 and trainer.global_step % trainer.log_every_n_steps:
                return
            wanted = trainer.strategy.reduce_boolean_decision(wanted, all=False)
        if not wanted:
            return
        step = max(trainer.global_step - 1, 0)
        path = None
        if self.core.policy.checkpoints:
            path = checkpoint_path(self.core.logdir, step, ".ckpt")
            trainer.save_checkpoint(path)
        trainer.should_stop = True
        self.core.stopping(step, path)
