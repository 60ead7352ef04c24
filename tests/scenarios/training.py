"""One generic CPU training loop that writes what a real trainer of the chosen style would write."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import data as datasets
from .models import CNN, MLP, RecurrentClassifier
from .styles import STYLES, TagStyle, open_writer


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a training run; same recipe, same seed → bit-identical event values."""

    data: str = "digits"  # digits | digits_img | teacher_reg | teacher_cls | seq
    n_train: int | None = None  # cap on training samples (None: the whole split)
    model: str = "mlp"  # mlp | cnn | rnn
    hidden: tuple[int, ...] = (64,)  # MLP widths; CNN: (number of conv layers,); RNN: (hidden size,)
    act: str = "relu"  # MLP/CNN activation; RNN cell: gru | tanh | relu
    init_gain: float | None = None  # MLP/CNN: × He-normal; RNN: × orthogonal recurrent weights; None = default
    dropout: float = 0.0
    batchnorm: bool = False
    optimizer: str = "sgd"  # sgd | adam
    lr: float = 0.1
    momentum: float = 0.0
    schedule: tuple[Any, ...] = ("const",)
    batch_size: int = 32
    steps: int = 200
    clip: float | None = None  # max total grad norm (torch.nn.utils.clip_grad_norm_)
    seed: int = 0
    val_every: int = 5
    hist_every: int = 10
    norm_every: int = 5
    restart: tuple[int, int] | None = None  # (checkpoint step, crash step): resume from the checkpoint
    purge_on_restart: bool = False  # resume with SummaryWriter(purge_step=checkpoint step)


def lr_at(recipe: Recipe, step: int) -> float:
    """Learning-rate schedules: const, warmup_cosine(warmup), ramp(final), spike(start, length, factor), step(at, factor)."""
    kind, *args = recipe.schedule
    base = recipe.lr
    if kind == "const":
        return base
    if kind == "warmup_cosine":
        (warmup,) = args
        if step < warmup:
            return base * (step + 1) / warmup
        progress = (step - warmup) / max(1, recipe.steps - warmup)
        return base * 0.5 * (1 + math.cos(math.pi * progress))
    if kind == "ramp":  # linear warm-up from `lr` to a peak that is too high
        (final,) = args
        return base + (final - base) * step / max(1, recipe.steps - 1)
    if kind == "spike":
        start, length, factor = args
        return base * factor if start <= step < start + length else base
    if kind == "step":
        at, factor = args
        return base * factor if step >= at else base
    raise ValueError(f"unknown schedule {kind!r}")


def _dataset(recipe: Recipe) -> datasets.Dataset:
    n = recipe.n_train
    if recipe.data in ("digits", "digits_img"):
        return datasets.digits(recipe.seed, n, image=recipe.data == "digits_img")
    if recipe.data == "teacher_reg":
        return datasets.teacher_regression(recipe.seed, n or 2000)
    if recipe.data == "teacher_cls":
        return datasets.teacher_classification(recipe.seed, n or 2000)
    if recipe.data == "seq":
        return datasets.sequence_sign(recipe.seed, n or 2000)
    raise ValueError(f"unknown data {recipe.data!r}")


def _model(recipe: Recipe, ds: datasets.Dataset) -> nn.Module:
    labels = torch.cat([ds.y_train, ds.y_val])  # a 25-sample training set may lack a class
    outputs = int(labels.max()) + 1 if ds.task == "classification" else ds.y_train.shape[1]
    if recipe.model == "mlp":
        inputs = ds.x_train[0].numel()
        return MLP(inputs, recipe.hidden, outputs, recipe.act, recipe.dropout, recipe.batchnorm, recipe.init_gain)
    if recipe.model == "cnn":
        return CNN(recipe.hidden[0], recipe.act, outputs, recipe.init_gain)
    if recipe.model == "rnn":
        return RecurrentClassifier(ds.x_train.shape[2], recipe.hidden[0], outputs, recipe.act, recipe.init_gain)
    raise ValueError(f"unknown model {recipe.model!r}")


def parameter_order(recipe: Recipe) -> list[tuple[str, int]]:
    """(name, size) of each parameter, input → output: the labeller's notion of first and last layer."""
    torch.manual_seed(recipe.seed)
    return [(name, p.numel()) for name, p in _model(recipe, _dataset(recipe)).named_parameters()]


class WriterCrash(Exception):
    """The writer raised inside the training loop; a real script would stop with a traceback here."""


class StyleLogger:
    """Writes one style's tags; the HF style reproduces Trainer's logging_nan_inf_filter arithmetic."""

    def __init__(self, style: TagStyle, library: str, logdir: Path, purge_step: int | None, suffix: str) -> None:
        self.style = style
        if style.keras_dirs:
            self.train = open_writer(library, logdir / "train", purge_step, suffix)
            self.val = open_writer(library, logdir / "validation", purge_step, suffix)
        else:
            self.train = self.val = open_writer(library, logdir, purge_step, suffix)
        self.window: list[float] = []  # step losses since the last logged point (HF, Keras epochs)
        self.hf_tr_loss = 0.0

    def train_step(self, step: int, loss: float, grad_norm: float, lr: float, every: int) -> None:
        style = self.style
        if style.keras_dirs:
            self.window.append(loss)
            return
        if style.hf_nan_filter:
            steps_in_window = len(self.window) + 1
            # transformers Trainer: `tr_loss += tr_loss / (1 + global_step - globalstep_last_logged)` on NaN/Inf.
            self.hf_tr_loss += loss if math.isfinite(loss) else self.hf_tr_loss / steps_in_window
            self.window.append(loss)
            if (step + 1) % every == 0:
                self.train.add_scalar(style.train_loss, round(self.hf_tr_loss / len(self.window), 4), step)
                self.train.add_scalar(style.grad_norm_total, grad_norm, step)
                self.train.add_scalar(style.lr, lr, step)
                self.hf_tr_loss, self.window = 0.0, []
            return
        self.train.add_scalar(style.train_loss, loss, step)
        if style.lr and step % every == 0:
            self.train.add_scalar(style.lr, lr, step)
        if style.grad_norm_total and step % every == 0:
            self.train.add_scalar(style.grad_norm_total, grad_norm, step)

    def gradients(self, step: int, model: nn.Module, hist: bool, norms: bool) -> None:
        for name, p in model.named_parameters():
            if p.grad is None:
                continue
            if hist and self.style.grad_hist:
                try:
                    self.train.add_histogram(self.style.grad_hist.format(p=name), p.grad.detach().numpy(), step)
                except ValueError as exc:  # torch's writer cannot bin NaN gradients: the user's job dies here
                    raise WriterCrash(str(exc)) from exc
            if norms and self.style.grad_norm_layer:
                self.train.add_scalar(self.style.grad_norm_layer.format(p=name), p.grad.detach().norm().item(), step)

    def validation(self, step: int, val_loss: float, epoch: int) -> None:
        if self.style.keras_dirs:
            if self.window:
                self.train.add_scalar("epoch_loss", sum(self.window) / len(self.window), epoch)
                self.val.add_scalar("epoch_loss", val_loss, epoch)
            self.window = []
            return
        self.val.add_scalar(self.style.val_loss, val_loss, step)

    def close(self) -> None:
        self.train.close()
        if self.val is not self.train:
            self.val.close()


def _loss_fn(ds: datasets.Dataset) -> nn.Module:
    return nn.CrossEntropyLoss() if ds.task == "classification" else nn.MSELoss()


def train(recipe: Recipe, style_name: str, library: str, logdir: Path) -> None:
    """Train `recipe` on CPU and write its event files under `logdir` (crash + resume if `recipe.restart`)."""
    torch.set_num_threads(1)
    torch.manual_seed(recipe.seed)
    style = STYLES[style_name]
    ds = _dataset(recipe)
    model = _model(recipe, ds)
    if recipe.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum)
    loss_fn = _loss_fn(ds)
    gen = torch.Generator().manual_seed(recipe.seed + 1)
    logger = StyleLogger(style, library, logdir, None, "")
    checkpoint: dict[str, Any] | None = None
    resumed = False
    step = 0
    while step < recipe.steps:
        if recipe.restart and step == recipe.restart[0] and checkpoint is None:
            checkpoint = {"model": copy.deepcopy(model.state_dict()), "opt": copy.deepcopy(opt.state_dict()),
                          "gen": gen.get_state(), "logger_window": list(logger.window)}
        if recipe.restart and step == recipe.restart[1] and checkpoint is not None and not resumed:
            logger.close()  # the job dies here; a new process resumes from the checkpoint
            model.load_state_dict(checkpoint["model"])
            opt.load_state_dict(checkpoint["opt"])
            gen.set_state(checkpoint["gen"])
            step = recipe.restart[0]
            purge = step if recipe.purge_on_restart else None
            logger = StyleLogger(style, library, logdir, purge, ".resumed")
            logger.window = checkpoint["logger_window"]
            resumed = True
        if step % recipe.val_every == 0:
            model.eval()
            with torch.no_grad():
                val_loss = loss_fn(model(ds.x_val), ds.y_val).item()
            model.train()
            logger.validation(step, val_loss, step // recipe.val_every)
        lr = lr_at(recipe, step)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(len(ds.x_train), (recipe.batch_size,), generator=gen)
        loss = loss_fn(model(ds.x_train[idx]), ds.y_train[idx])
        opt.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip or math.inf).item()
        logger.train_step(step, loss.item(), grad_norm, lr, recipe.norm_every)
        try:
            logger.gradients(step, model, step % recipe.hist_every == 0, step % recipe.norm_every == 0)
        except WriterCrash:
            break  # the event files end where the job died, as they would for the user
        opt.step()
        step += 1
    logger.close()
