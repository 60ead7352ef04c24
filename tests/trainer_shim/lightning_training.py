"""A real, tiny Lightning training (MLP on sklearn's bundled digits) for the callback tests.

Also run as a script by the DDP test: ``python -m tests.trainer_shim.lightning_training LOGDIR``
trains with ``strategy="ddp"`` on two CPU processes (gloo), the way users launch DDP.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from tests.trainer_shim.training import digits


class DigitsModule(pl.LightningModule):
    """Logs ``train_loss``/``val_loss`` itself (Lightning's logger), as users do."""

    def __init__(self, lr: float = 0.1, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.lr = lr
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def loaders(batch: int = 64) -> tuple[DataLoader, DataLoader]:
    x, y = digits()
    train, val = TensorDataset(x[:1500], y[:1500]), TensorDataset(x[1500:], y[1500:])
    return DataLoader(train, batch_size=batch, shuffle=False), DataLoader(val, batch_size=256)


def fit(callbacks: list[pl.Callback], *, lr: float = 0.1, epochs: int = 2, **trainer_args: Any) -> pl.Trainer:
    """Train ``DigitsModule`` on CPU (no progress bar, no model summary); return the trainer."""
    torch.set_num_threads(1)
    options: dict[str, Any] = {
        "max_epochs": epochs,
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        **trainer_args,
    }
    trainer = pl.Trainer(callbacks=callbacks, **options)
    train, val = loaders()
    trainer.fit(DigitsModule(lr=lr), train, val)
    return trainer


def main() -> None:
    """The DDP test's job: ``LOGDIR [--lr LR] [--on-alert POLICY]`` on two CPU processes (gloo)."""
    import argparse

    from tbmon.trainer_shim.lightning import TbmonCallback

    parser = argparse.ArgumentParser()
    parser.add_argument("logdir")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--on-alert", default="warn")
    args = parser.parse_args()
    callback = TbmonCallback(args.logdir, hist_every=5, norms_every=1, on_alert=args.on_alert)
    epochs = 1 if args.on_alert == "warn" else 3
    fit([callback], lr=args.lr, strategy="ddp", devices=2, epochs=epochs, log_every_n_steps=5)


if __name__ == "__main__":
    main()
