"""Tag conventions of the frameworks tbmon must understand (contract: "Tags it understands"), and writers.

Each style names the tags a real framework writes; `None` means that framework does not log the signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TagStyle:
    train_loss: str
    val_loss: str
    lr: str | None = None
    grad_norm_total: str | None = None
    grad_hist: str | None = None  # "{p}" is the parameter name
    grad_norm_layer: str | None = None  # "{p}" is the parameter name
    hf_nan_filter: bool = False  # HF Trainer logging_nan_inf_filter: NaN step losses vanish from the logged mean
    keras_dirs: bool = False  # Keras: sibling run dirs `train/` and `validation/`, tag `epoch_loss` per epoch


STYLES: dict[str, TagStyle] = {
    # Hand-written loops: slash-separated scalars, tensorboardX-style gradient histograms.
    "slash": TagStyle("train/loss", "val/loss", lr="lr", grad_hist="grad/{p}"),
    # Keras/Lightning-flat names with `<p>.grad` histograms and per-layer norms.
    "flat": TagStyle("loss", "val_loss", lr="learning_rate", grad_hist="{p}.grad", grad_norm_layer="grad_norm/{p}"),
    # PyTorch Lightning: `*_step` losses, LearningRateMonitor `lr-<Optimizer>`, `grad_norm(model, 2)` scalars.
    "lightning": TagStyle("train_loss_step", "val_loss", lr="lr-Optimizer",
                          grad_norm_total="grad_2.0_norm_total", grad_norm_layer="grad_2.0_norm/{p}"),
    # HF Transformers Trainer as the brief's contract names it: loss, eval_loss, grad_norm, learning_rate.
    "hf": TagStyle("loss", "eval_loss", lr="learning_rate", grad_norm_total="grad_norm", hf_nan_filter=True),
    # TF-summary-like names: `loss/train` + `loss/val`, `gradients/<p>` histograms, total norm.
    "tf": TagStyle("loss/train", "loss/val", grad_norm_total="train/grad_norm", grad_hist="gradients/{p}"),
    # Underscore names with `<p>_grad` histograms.
    "underscore": TagStyle("train_loss", "valid_loss", lr="lr", grad_hist="{p}_grad"),
    # Keras TensorBoard callback: per-epoch `epoch_loss` in `train/` and `validation/` sibling runs.
    "keras": TagStyle("epoch_loss", "epoch_loss", keras_dirs=True),
    # tbmon's own TrainerShim: the contract's default tags (it writes them itself; see trainer_shim/shim.py).
    "shim": TagStyle("train/loss", "val/loss", lr="train/learning_rate", grad_norm_total="train/grad_norm",
                     grad_hist="grad/{p}", grad_norm_layer="grad_norm/{p}"),
}


def open_writer(library: str, logdir: Path, purge_step: int | None = None, suffix: str = "") -> Any:
    """A real SummaryWriter of either library (both expose add_scalar/add_histogram/close)."""
    if library == "tensorboardX":
        from tensorboardX import SummaryWriter

        return SummaryWriter(logdir=str(logdir), purge_step=purge_step, filename_suffix=suffix)
    if library == "torch":
        from torch.utils.tensorboard import SummaryWriter as TorchWriter

        return TorchWriter(log_dir=str(logdir), purge_step=purge_step, filename_suffix=suffix)
    raise ValueError(f"unknown writer library {library!r}")
