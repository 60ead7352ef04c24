"""A real, tiny Hugging Face training for the callback tests: GPT-2 built from a config, no download.

The data is synthetic and learnable: each sequence counts up from a random start modulo the
vocabulary, so a 2-layer, 32-wide GPT-2 brings its loss well down within a few dozen steps.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

VOCAB, LENGTH = 64, 16


class CountingDataset(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        starts = torch.randint(0, VOCAB, (n, 1), generator=g)
        self.ids = (starts + torch.arange(LENGTH)) % VOCAB

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class PlainLM(torch.nn.Module):
    """A model whose ``forward`` takes no loss kwargs: the Trainer then averages micro-batch losses."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(VOCAB, 32)
        self.head = torch.nn.Linear(32, VOCAB)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.head(self.embed(input_ids[:, :-1]))
        return {"loss": torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), labels[:, 1:].reshape(-1))}


def tiny_gpt2(seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=VOCAB, n_positions=LENGTH, n_embd=32, n_layer=2, n_head=2)
    return GPT2LMHeadModel(config)


def train(
    output_dir: str,
    callbacks: list[TrainerCallback],
    *,
    lr: float = 3e-3,
    steps: int = 40,
    compute_loss_func: Any = None,
    model: torch.nn.Module | None = None,
    **arguments: Any,
) -> Trainer:
    """Train ``tiny_gpt2`` on CPU with no reporting integration; return the trainer."""
    torch.set_num_threads(1)
    options: dict[str, Any] = {
        "output_dir": output_dir,
        "max_steps": steps,
        "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 64,
        "learning_rate": lr,
        "lr_scheduler_type": "constant",
        "logging_steps": 10,
        "eval_strategy": "steps",
        "eval_steps": 20,
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
        **arguments,
    }
    trainer = Trainer(
        model=model if model is not None else tiny_gpt2(),
        args=TrainingArguments(**options),
        train_dataset=CountingDataset(1024, seed=1),
        eval_dataset=CountingDataset(128, seed=2),
        callbacks=callbacks,
        compute_loss_func=compute_loss_func,
    )
    trainer.train()
    return trainer
