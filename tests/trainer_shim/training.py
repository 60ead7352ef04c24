"""A real, tiny CPU training (MLP on sklearn's bundled digits) that the shim tests log from."""

from __future__ import annotations

from collections.abc import Callable

import torch
from sklearn.datasets import load_digits

from tbmon.trainer_shim import TrainerShim


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    return x, torch.tensor(data.target)


def mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))


def train(
    shim: TrainerShim | None,
    model: torch.nn.Module,
    steps: int,
    *,
    lr: float = 0.1,
    before_log: Callable[[int, torch.nn.Module], None] | None = None,
    log_lr: bool = True,
) -> list[float]:
    """SGD on digits batches of 64; logs like a user would (``log_lr=False``: the loss alone, as many loops
    do); returns the losses."""
    torch.set_num_threads(1)
    x, y = digits()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        i = (step * 64) % (len(x) - 64)
        loss = torch.nn.functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64])
        opt.zero_grad()
        loss.backward()
        if before_log is not None:
            before_log(step, model)
        if shim is not None:
            shim.log_gradients(step)
        opt.step()
        if shim is not None:
            shim.log_scalars(step, loss=loss, **({"lr": lr} if log_lr else {}))
        losses.append(loss.item())
    return losses


def load(logdir: str):  # noqa: ANN201 - EventAccumulator, imported lazily (slow import)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc
