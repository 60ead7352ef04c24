"""Small deterministic datasets that need no download (sklearn's bundled digits, synthetic tasks)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch


@dataclass(frozen=True)
class Dataset:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    task: str  # "classification" (y: class indices), "regression" (y: float targets) or "sequence" (y: next tokens)
    image: bool = False  # x holds 8x8 images, not flat vectors


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64)


def digits(seed: int, n_train: int | None, n_val: int = 500, image: bool = False) -> Dataset:
    """sklearn's 1,797 8x8 digits, split by a seeded permutation; `n_train` caps the training set."""
    x, y = _digits()
    order = np.random.default_rng(seed).permutation(len(x))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if n_train is not None:
        train_idx = train_idx[:n_train]
    xt = torch.from_numpy(x)
    if image:
        xt = xt.reshape(-1, 1, 8, 8)
    yt = torch.from_numpy(y)
    return Dataset(xt[train_idx], yt[train_idx], xt[val_idx], yt[val_idx], "classification", image)


def _teacher(seed: int, dim: int, out: int) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(10_000 + seed)
    teacher = torch.nn.Sequential(torch.nn.Linear(dim, 32), torch.nn.Tanh(), torch.nn.Linear(32, out))
    with torch.no_grad():
        for p in teacher.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (1.5 / max(1, p.shape[-1]) ** 0.5))
    return teacher


def teacher_regression(seed: int, n_train: int, n_val: int = 500, dim: int = 16, noise: float = 0.3) -> Dataset:
    """Targets from a random tanh teacher plus Gaussian noise: the noise sets a floor the val loss plateaus at."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_val, dim, generator=gen)
    with torch.no_grad():
        y = _teacher(seed, dim, 1)(x) + noise * torch.randn(n_train + n_val, 1, generator=gen)
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:], "regression")


def teacher_classification(seed: int, n_train: int, n_val: int = 500, dim: int = 16, classes: int = 4) -> Dataset:
    """Labels = argmax of a random teacher's logits: separable, so a student can converge early."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_val, dim, generator=gen)
    with torch.no_grad():
        y = _teacher(seed, dim, classes)(x).argmax(dim=1)
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:], "classification")


def sequence_sign(seed: int, n_train: int, n_val: int = 400, length: int = 12, features: int = 3) -> Dataset:
    """Sequences of Gaussian vectors; class = sign of the sum of feature 0 over time (needs memory)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_val, length, features, generator=gen)
    y = (x[:, :, 0].sum(dim=1) > 0).long()
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:], "classification")


def markov_text(seed: int, n_train: int, n_val: int = 200, vocab: int = 24, context: int = 32) -> Dataset:
    """Next-token prediction on text from a random sparse Markov chain (a stand-in for char-level corpora):
    learnable structure, an entropy floor above zero, no download. y[t] = x[t + 1]."""
    rng = np.random.default_rng(seed)
    transition = rng.dirichlet(np.full(vocab, 0.2), size=vocab)
    n = n_train + n_val
    tokens = np.empty((n, context + 1), dtype=np.int64)
    tokens[:, 0] = rng.integers(vocab, size=n)
    cumulative = transition.cumsum(axis=1)
    for t in range(context):
        u = rng.random(n)[:, None]
        tokens[:, t + 1] = np.minimum((u > cumulative[tokens[:, t]]).sum(axis=1), vocab - 1)
    x, y = torch.from_numpy(tokens[:, :-1].copy()), torch.from_numpy(tokens[:, 1:].copy())
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:], "sequence")


def with_label_noise(ds: Dataset, fraction: float, seed: int) -> Dataset:
    """A copy whose training labels are replaced by uniformly random classes at `fraction` of the samples."""
    if fraction <= 0 or ds.task != "classification":
        return ds
    gen = torch.Generator().manual_seed(seed + 7)
    classes = int(torch.cat([ds.y_train, ds.y_val]).max()) + 1
    flip = torch.rand(len(ds.y_train), generator=gen) < fraction
    noisy = torch.where(flip, torch.randint(classes, ds.y_train.shape, generator=gen), ds.y_train)
    return Dataset(ds.x_train, noisy, ds.x_val, ds.y_val, ds.task, ds.image)
