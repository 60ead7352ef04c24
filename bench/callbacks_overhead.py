"""Step-time overhead of tbmon's Lightning and Hugging Face callbacks, beside each framework's own logging.

Same training, one process, variants in a shuffled order inside every round (CPU, 1 torch thread):

Lightning: 9 x (Linear(1024,1024)+ReLU), 9.4M params, batch 64, SGD, MSE (bench/shim_overhead.py's model)
* ``none``            no logger, no callback
* ``tbmon``           ``TbmonCallback(logdir)`` at its defaults (guard on, policy ``warn``)
* ``tbmon_noguard``   the same with ``guard=False``: the difference is the guard's cost
* ``pl_tensorboard``  Lightning's ``TensorBoardLogger`` with ``self.log("train_loss")`` (log_every_n_steps=50)
* ``pl_gradnorm_hist``  + Lightning's documented gradient-norm recipe (``self.log_dict(grad_norm(self, 2))``
                      in ``on_before_optimizer_step``) and ``logger.experiment.add_histogram`` of every
                      gradient every 100 steps: what a Lightning user writes to see what tbmon logs

Hugging Face: GPT-2 from a config (2 layers, 128 wide, vocab 1,024), sequences of 64, batch 8, AdamW
* ``none``            ``report_to=[]``
* ``tbmon`` / ``tbmon_noguard``   as above
* ``hf_tensorboard``  ``report_to=["tensorboard"]`` (HF's own TensorBoardCallback)
All HF variants log every ``logging_steps=10`` steps (the Trainer's own loss/grad_norm/lr logs).

Per round and variant: ms/step from the first timed step to the end of ``fit``/``train`` (so the
drain at close counts), as process CPU time (all threads: the shim's writer thread and the guard
are charged) and wall time. Overheads are per round against that round's ``none``; medians over
rounds. Usage::

    nice -n 10 python bench/callbacks_overhead.py --rounds 5
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import grad_norm
from torch.utils.data import DataLoader, TensorDataset
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

sys.path.insert(0, os.path.dirname(__file__))
from shim_overhead import make_model  # noqa: E402

from tbmon.trainer_shim import hf as tbmon_hf  # noqa: E402
from tbmon.trainer_shim import lightning as tbmon_pl  # noqa: E402
from tbmon.trainer_shim.guard import Guard  # noqa: E402
from tbmon.trainer_shim.writer import EventWriter  # noqa: E402

PL_VARIANTS = ("none", "tbmon", "tbmon_noguard", "pl_tensorboard", "pl_gradnorm_hist")
HF_VARIANTS = ("none", "tbmon", "tbmon_noguard", "hf_tensorboard")


class _Direct:
    """Bench-only instruments: CPU seconds spent in the callbacks' hooks (training thread), in the
    shim's writer thread (all of its life, the guard included), and inside ``Guard.check``."""

    hooks = writer = guard = 0.0
    HOOKS = {
        tbmon_pl.TbmonCallback: ("on_before_optimizer_step", "on_train_batch_end", "on_validation_end", "on_fit_end"),
        tbmon_hf.TbmonCallback: ("_on_forward", "on_pre_optimizer_step", "on_step_end", "on_log", "on_evaluate", "on_train_end"),
    }

    @classmethod
    def reset(cls) -> None:
        cls.hooks = cls.writer = cls.guard = 0.0

    @classmethod
    def install(cls) -> None:
        for owner, names in cls.HOOKS.items():
            for name in names:
                setattr(owner, name, cls._timed(getattr(owner, name), "hooks"))
        Guard.check = cls._timed(Guard.check, "guard")  # type: ignore[method-assign]
        run = EventWriter._run

        def writer_run(self: EventWriter) -> None:
            try:
                run(self)
            finally:
                cls.writer += time.thread_time()  # this thread's whole CPU time

        EventWriter._run = writer_run  # type: ignore[method-assign]

    @classmethod
    def _timed(cls, fn: Any, field: str) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                setattr(cls, field, getattr(cls, field) + time.thread_time() - t0)

        return timed


class _Clock:
    """Process CPU and wall time from the start of batch ``warmup`` (set by a callback)."""

    def __init__(self) -> None:
        self.cpu = self.wall = 0.0

    def start(self) -> None:
        self.cpu, self.wall = time.process_time(), time.perf_counter()

    def per_step(self, steps: int) -> tuple[float, float]:
        return (time.process_time() - self.cpu) / steps * 1e3, (time.perf_counter() - self.wall) / steps * 1e3


# -- Lightning -------------------------------------------------------------------------------


class _MLP(pl.LightningModule):
    def __init__(self, variant: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = make_model(1024, 9)
        self.variant = variant

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        if self.variant.startswith("pl_"):
            self.log("train_loss", loss)
        return loss

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        if self.variant != "pl_gradnorm_hist":
            return
        self.log_dict(grad_norm(self, norm_type=2))  # Lightning's documented recipe
        if self.global_step % 100 == 0:
            for name, p in self.named_parameters():
                self.logger.experiment.add_histogram(f"grad/{name}", p.grad, self.global_step)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=1e-3)


class _PLStart(pl.Callback):
    def __init__(self, clock: _Clock, warmup: int) -> None:
        self.clock, self.warmup = clock, warmup

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.warmup:
            self.clock.start()


def run_lightning(variant: str, steps: int, warmup: int, logdir: str) -> tuple[float, float]:
    x, y = torch.randn(64 * 8, 1024), torch.randn(64 * 8, 1024)
    loader = DataLoader(TensorDataset(x, y), batch_size=64)
    clock = _Clock()
    callbacks: list[pl.Callback] = [_PLStart(clock, warmup)]
    if variant.startswith("tbmon"):
        callbacks.append(tbmon_pl.TbmonCallback(logdir, guard=variant == "tbmon"))
    trainer = pl.Trainer(
        max_steps=warmup + steps,
        accelerator="cpu",
        devices=1,
        logger=TensorBoardLogger(logdir) if variant.startswith("pl_") else False,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(_MLP(variant), loader)
    return clock.per_step(steps)


# -- Hugging Face ----------------------------------------------------------------------------


class _Tokens(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.ids = torch.randint(0, 1024, (n, 64), generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class _HFStart(TrainerCallback):
    def __init__(self, clock: _Clock, warmup: int) -> None:
        self.clock, self.warmup = clock, warmup

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.warmup:
            self.clock.start()


def run_hf(variant: str, steps: int, warmup: int, logdir: str) -> tuple[float, float]:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=1024, n_positions=64, n_embd=128, n_layer=2, n_head=2))
    clock = _Clock()
    callbacks: list[TrainerCallback] = [_HFStart(clock, warmup)]
    if variant.startswith("tbmon"):
        callbacks.append(tbmon_hf.TbmonCallback(os.path.join(logdir, "tbmon"), guard=variant == "tbmon"))
    args = TrainingArguments(
        output_dir=logdir,
        max_steps=warmup + steps,
        per_device_train_batch_size=8,
        logging_steps=10,
        save_strategy="no",
        report_to=["tensorboard"] if variant == "hf_tensorboard" else [],
        use_cpu=True,
        disable_tqdm=True,
        log_level="error",
    )
    Trainer(model=model, args=args, train_dataset=_Tokens(8 * (warmup + steps)), callbacks=callbacks).train()
    return clock.per_step(steps)


# -- driver ------------------------------------------------------------------------------------


def bench(name: str, variants: tuple[str, ...], run: Any, rounds: int, steps: int, warmup: int) -> None:
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    wall: dict[str, list[float]] = {v: [] for v in variants}
    direct: dict[str, list[tuple[float, float, float]]] = {"tbmon": [], "tbmon_noguard": []}
    for r in range(rounds):
        order = list(variants)
        random.Random(r).shuffle(order)
        for variant in order:
            _Direct.reset()
            with tempfile.TemporaryDirectory() as logdir:
                c, w = run(variant, steps, warmup, logdir)
            cpu[variant].append(c)
            wall[variant].append(w)
            if variant in direct:
                per_step = 1e3 / (steps + warmup)
                direct[variant].append((_Direct.hooks * per_step, _Direct.writer * per_step, _Direct.guard * per_step))
        print(f"  {name} round {r + 1}/{rounds}: " + ", ".join(f"{v} {cpu[v][-1]:.1f}" for v in variants), flush=True)
    base_cpu, base_wall = statistics.median(cpu["none"]), statistics.median(wall["none"])
    print(f"\n{name}: {steps} timed steps after {warmup} warm-up steps, medians of {rounds} rounds")
    print(f"| variant | CPU ms/step | CPU overhead | wall ms/step | wall overhead |\n|---|---|---|---|---|")
    for v in variants:
        d_cpu = statistics.median(c - n for c, n in zip(cpu[v], cpu["none"]))
        d_wall = statistics.median(w - n for w, n in zip(wall[v], wall["none"]))
        row = f"| {v} | {statistics.median(cpu[v]):.1f} | "
        row += "—" if v == "none" else f"{d_cpu:+.2f} ms ({100 * d_cpu / base_cpu:+.1f} %)"
        row += f" | {statistics.median(wall[v]):.1f} | "
        row += "—" if v == "none" else f"{d_wall:+.2f} ms ({100 * d_wall / base_wall:+.1f} %)"
        print(row + " |")
    guard = statistics.median(a - b for a, b in zip(cpu["tbmon"], cpu["tbmon_noguard"]))
    print(f"guard by difference (tbmon - tbmon_noguard): {guard:+.2f} ms/step CPU ({100 * guard / base_cpu:+.2f} %)")
    print("direct cost, timed inside tbmon's code (medians, ms/step and % of the `none` step):")
    for variant, rows in direct.items():
        hooks, writer, inside = (statistics.median(col) for col in zip(*rows))
        total = hooks + writer
        print(
            f"  {variant}: hooks {hooks:.3f} + writer thread {writer:.3f} = {total:.3f} ms ({100 * total / base_cpu:.2f} %)"
            f"; of which Guard.check {inside:.3f} ms ({100 * inside / base_cpu:.2f} %)"
        )
    print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200, help="timed steps per variant and round")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--only", choices=("lightning", "hf"), help="run one framework only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    _Direct.install()
    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.fabric", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if args.only in (None, "lightning"):
        bench("Lightning", PL_VARIANTS, run_lightning, args.rounds, args.steps, args.warmup)
    if args.only in (None, "hf"):
        bench("Hugging Face", HF_VARIANTS, run_hf, args.rounds, args.steps, args.warmup)


if __name__ == "__main__":
    main()
