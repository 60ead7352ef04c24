"""The CPU numpy scan writes the bits the torch scan writes (the sampled corpus is keyed on them).

``stats._scan_in_torch`` is the computation every row was written with before the numpy scan
(and still is off the CPU or for half precision): per ``CHUNK`` ``aminmax``, ``sum`` and an
integer zero count, norms by ``_foreach_norm`` and subsamples by ``index_select`` (only
the final slot count is now ``bincount`` on the CPU: integers either way). With
``_numpy_reads`` patched to refuse every tensor, ``full_rows`` takes that path for all of
them; the rows must then be identical bit for bit (``int64`` views: the sign of a zero min
and a NaN's bits count), with one and two torch threads.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from tbmon.trainer_shim import stats
from tests.trainer_shim.test_stats_equivalence import _edge_tensors


def _torch_only_rows(monkeypatch: pytest.MonkeyPatch, grads: list[torch.Tensor], weights: list[torch.Tensor] | None) -> np.ndarray:
    with monkeypatch.context() as patch:
        patch.setattr(stats, "_numpy_reads", lambda t: False)
        return stats.full_rows(grads, weights).numpy()


def _assert_same_bits(new: np.ndarray, old: np.ndarray) -> None:
    assert new.shape == old.shape
    differ = np.argwhere(new.view(np.int64) != old.view(np.int64))
    assert differ.size == 0, f"{len(differ)} fields differ, first (param, column) {differ[:5].tolist()}"


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request: pytest.FixtureRequest) -> Iterator[int]:
    """Both thread counts: a reduction split over threads may round or pick a zero differently."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def _trained_gradients() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Real autograd gradients with sampled tensors: 8 CHUNKs, 3 CHUNKs, one just over HIST_SAMPLE."""
    torch.manual_seed(3)
    model = torch.nn.Sequential(
        torch.nn.Linear(1024, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 300), torch.nn.ReLU(), torch.nn.Linear(300, 55), torch.nn.Linear(55, 7)
    )
    x, y = torch.randn(32, 1024), torch.randn(32, 7)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return [p.grad for p in model.parameters()], [p.detach() for p in model.parameters()]  # type: ignore[misc]


def _zero_and_nan_extremes() -> list[torch.Tensor]:
    """Sampled tensors whose pieces have ±0 or NaN as min or max (there torch must pick the value)."""
    n = 3 * stats.CHUNK + 5
    zeros = torch.zeros(n)
    zeros[::3] = -0.0
    positive = torch.rand(n, generator=torch.Generator().manual_seed(1))
    positive[5] = 0.0
    negative = -positive.clone()
    negative[7], negative[9] = -0.0, 0.0
    nans = torch.randn(n, generator=torch.Generator().manual_seed(2))
    nans[3], nans[n - 2], nans[stats.CHUNK + 1] = math.nan, -math.nan, math.inf
    return [zeros, -zeros, torch.full((n,), -0.0), positive, negative, nans, torch.full((n,), -math.inf)]


def test_real_gradients_and_weights_give_the_same_bits(monkeypatch: pytest.MonkeyPatch, threads: int) -> None:
    grads, weights = _trained_gradients()
    assert len(stats._numpy_scans(grads)) == 3  # the numpy scan really reads the sampled ones
    for w in (weights, None):
        _assert_same_bits(stats.full_rows(grads, w).numpy(), _torch_only_rows(monkeypatch, grads, w))


def test_zero_and_nan_extremes_give_the_same_bits(monkeypatch: pytest.MonkeyPatch, threads: int) -> None:
    tensors = _zero_and_nan_extremes()
    rows = stats.full_rows(tensors, tensors)
    _assert_same_bits(rows.numpy(), _torch_only_rows(monkeypatch, tensors, tensors))
    assert rows[:3, stats.ZEROS].tolist() == [3 * stats.CHUNK + 5] * 3 and rows[5, stats.NONFINITE] == 3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_edge_tensors_give_the_same_bits(monkeypatch: pytest.MonkeyPatch, threads: int, dtype: torch.dtype) -> None:
    grads = _edge_tensors(dtype)
    weights = [torch.randn(g.shape, generator=torch.Generator().manual_seed(p)).to(dtype) for p, g in enumerate(grads)]
    for w in (weights, None):
        _assert_same_bits(stats.full_rows(grads, w).numpy(), _torch_only_rows(monkeypatch, grads, w))
    # every tensor alone too: a lone piece has no stack to combine
    for g in grads:
        _assert_same_bits(stats.full_rows([g], None).numpy(), _torch_only_rows(monkeypatch, [g], None))


def test_non_contiguous_and_mixed_precision_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    """A transposed gradient is read through its flat copy; bfloat16 next to float32 keeps the torch scan."""
    gen = torch.Generator().manual_seed(5)
    grads = [torch.randn(600, 400, generator=gen).t(), torch.randn(300, 300, generator=gen).bfloat16(), torch.randn(20000, generator=gen).double()]
    assert sorted(stats._numpy_scans(grads)) == [0, 2]
    _assert_same_bits(stats.full_rows(grads, grads).numpy(), _torch_only_rows(monkeypatch, grads, grads))
