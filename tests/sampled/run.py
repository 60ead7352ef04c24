"""Train one sampled configuration on CPU and write what its writer and tag convention would write."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
from torch import nn

from tests.scenarios import data as datasets
from tests.scenarios.models import CNN, MLP, RecurrentClassifier, TinyGPT
from tests.scenarios.styles import STYLES
from tests.scenarios.training import StyleLogger, WriterCrash

from .space import Config

CONTEXT = 32  # transformer context (characters)


def lr_at(cfg: Config, step: int) -> float:
    """The scheduled learning rate, then any injected lr jump."""
    kind, *args = cfg.schedule
    base, n = cfg.lr, cfg.steps
    if kind == "warmup_cosine":
        warmup = args[0]
        lr = base * (step + 1) / warmup if step < warmup else base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, n - warmup)))
    elif kind == "step":
        lr = base * args[1] if step >= args[0] else base
    elif kind == "sgdr":  # cosine with warm restarts every `period` steps (Loshchilov & Hutter)
        period = args[0]
        lr = base * 0.5 * (1 + math.cos(math.pi * (step % period) / period))
    elif kind in ("exp_decay", "exp_ramp"):  # multiply by `final` over the whole run, geometrically
        lr = base * args[0] ** (step / max(1, n - 1))
    else:
        lr = base
    for at, what, factor in cfg.events:
        if what == "lr_jump" and step >= at:
            lr *= factor
    return lr


def dataset(cfg: Config) -> datasets.Dataset:
    n = cfg.n_train
    if cfg.task in ("digits", "digits_img"):
        ds = datasets.digits(cfg.seed, n, image=cfg.task == "digits_img")
    elif cfg.task == "teacher_reg":
        ds = datasets.teacher_regression(cfg.seed, n or 2000)
    elif cfg.task == "teacher_cls":
        ds = datasets.teacher_classification(cfg.seed, n or 2000)
    elif cfg.task == "seq":
        ds = datasets.sequence_sign(cfg.seed, n or 2000, length=cfg.depth)
    else:
        ds = datasets.markov_text(cfg.seed, n or 2000, context=CONTEXT)
    return datasets.with_label_noise(ds, cfg.label_noise, cfg.seed)


def model(cfg: Config, ds: datasets.Dataset) -> nn.Module:
    torch.manual_seed(cfg.seed)
    if ds.task == "sequence":
        return TinyGPT(int(torch.cat([ds.x_train.flatten(), ds.x_val.flatten()]).max()) + 1, CONTEXT, cfg.width, cfg.depth)
    labels = torch.cat([ds.y_train, ds.y_val])
    outputs = int(labels.max()) + 1 if ds.task == "classification" else ds.y_train.shape[1]
    if cfg.arch == "mlp":
        return MLP(ds.x_train[0].numel(), (cfg.width,) * cfg.depth, outputs, cfg.act, cfg.dropout, cfg.norm == "batchnorm",
                   cfg.init_gain, layernorm=cfg.norm == "layernorm")
    if cfg.arch == "cnn":
        return CNN(cfg.depth, cfg.act, outputs, cfg.init_gain, channels=cfg.width)
    return RecurrentClassifier(ds.x_train.shape[2], cfg.width, outputs, cfg.act, cfg.init_gain)


def parameter_order(cfg: Config) -> list[tuple[str, int]]:
    """(name, size) of each parameter, input -> output: the labeller's first and last layer."""
    return [(name, p.numel()) for name, p in model(cfg, dataset(cfg)).named_parameters()]


def _optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9 if cfg.optimizer == "momentum" else 0.0)


def _loss(ds: datasets.Dataset, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if ds.task == "regression":
        return nn.functional.mse_loss(out, y)
    return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


class ShimLogger:
    """The same duties as StyleLogger, through tbmon's TrainerShim (its own tags and cadences)."""

    def __init__(self, logdir: Path, net: nn.Module, cfg: Config) -> None:
        from tbmon.trainer_shim import TrainerShim

        self.shim = TrainerShim(logdir, net, hist_every=cfg.hist_every, norms_every=cfg.norm_every, flush_secs=5.0)

    def train_step(self, step: int, loss: float, grad_norm: float, lr: float, every: int) -> None:
        self.shim.log_scalars(step, loss=loss, lr=lr)

    def gradients(self, step: int, net: nn.Module, hist: bool, norms: bool) -> None:
        self.shim.log_gradients(step)

    def validation(self, step: int, val_loss: float, epoch: int) -> None:
        self.shim.log_scalars(step, val_loss=val_loss)

    def close(self) -> None:
        self.shim.close()


def _batch(cfg: Config, ds: datasets.Dataset, step: int, gen: torch.Generator, starved: torch.Tensor | None):
    pool = len(ds.x_train) if starved is None else len(starved)
    idx = torch.randint(pool, (cfg.batch,), generator=gen)
    if starved is not None:
        idx = starved[idx]
    x, y = ds.x_train[idx], ds.y_train[idx]
    for at, what, arg in cfg.events:
        if what == "corrupt" and step == at:  # a bad batch: shuffled targets, or inputs scaled up
            if arg == 0.0 or ds.task == "sequence":
                y = y[torch.randperm(len(y), generator=gen)] if ds.task != "sequence" else torch.randint_like(y, int(y.max()) + 1)
            else:
                x = x * arg
    return x, y


def train(cfg: Config, logdir: Path) -> None:
    """Train ``cfg`` and write its event files under ``logdir``; a job that dies (NaN histogram) just ends."""
    torch.set_num_threads(1)
    ds = dataset(cfg)
    net = model(cfg, ds)
    opt = _optimizer(cfg, net.parameters())
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    if cfg.writer == "shim":
        logger: StyleLogger | ShimLogger = ShimLogger(logdir, net, cfg)
    else:
        logger = StyleLogger(STYLES[cfg.style], cfg.writer, logdir, None, "")
    starved: torch.Tensor | None = None
    nan_at = min((at for at, what, _ in cfg.events if what == "nan_input"), default=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in range(cfg.steps):
            for at, what, arg in cfg.events:
                if what == "starve" and step == at:  # the loader collapses to a few fixed samples
                    starved = torch.randperm(len(ds.x_train), generator=gen)[: int(arg)]
            if step % cfg.val_every == 0:
                net.eval()
                with torch.no_grad():
                    val_loss = _loss(ds, net(ds.x_val), ds.y_val).item()
                net.train()
                logger.validation(step, val_loss, step // cfg.val_every)
            lr = lr_at(cfg, step)
            for group in opt.param_groups:
                group["lr"] = lr
            x, y = _batch(cfg, ds, step, gen, starved)
            loss = _loss(ds, net(x), y)
            if step == nan_at:  # a corrupt record (log(0), a NaN feature) poisons this step
                loss = loss * float("nan")
            opt.zero_grad()
            loss.backward()
            grad_norm = nn.utils.clip_grad_norm_(net.parameters(), cfg.clip or math.inf).item()
            logger.train_step(step, loss.item(), grad_norm, lr, cfg.norm_every)
            try:
                logger.gradients(step, net, cfg.hist_every > 0 and step % cfg.hist_every == 0, step % cfg.norm_every == 0)
            except WriterCrash:
                break
            opt.step()
    logger.close()
