"""The on-device statistics equal a straightforward numpy computation on the same tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tbmon.trainer_shim import stats


def reference_buckets(values: np.ndarray) -> np.ndarray:
    """Bucket counts by the documented rule, one value at a time (slow and obvious)."""
    counts = np.zeros(stats.N_BUCKETS)
    for v in values.astype(np.float64):
        if math.isnan(v):
            continue
        if v == 0:
            counts[stats.ZERO_BUCKET] += 1
            continue
        decade = min(max(math.floor(math.log10(abs(v))), stats.DECADE_LOW - 1), stats.DECADE_HIGH)
        if v > 0:
            counts[stats.ZERO_BUCKET + 1 + decade - (stats.DECADE_LOW - 1)] += 1
        else:
            counts[stats.DECADE_HIGH - decade] += 1
    return counts


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layout_is_fixed_ascending_and_holds_each_value_between_its_limits(dtype: torch.dtype) -> None:
    limits = stats.BUCKET_LIMITS
    assert limits.shape == (65,) and np.all(np.diff(limits) > 0)
    values = torch.tensor([-3e12, -4e5, -2e-25, 0.0, 1e-30, 3e-7, 0.5, 7e9, 2e11, 1e-20, 1e10], dtype=dtype)
    rows = stats.full_rows([v.reshape(1) for v in values], None).numpy()
    for v, row in zip(values.double().tolist(), rows):
        (i,) = np.flatnonzero(row[stats.BUCKETS])
        left = limits[i - 1] if i > 0 else -np.inf
        assert left <= v < limits[i], (v, i)
    assert np.flatnonzero(rows[3][stats.BUCKETS]).tolist() == [stats.ZERO_BUCKET]
    assert limits[stats.ZERO_BUCKET - 1] == 0.0


def _reference_row(g: np.ndarray, w: np.ndarray) -> dict[str, float]:
    g64 = g.astype(np.float64).ravel()
    return {
        "numel": g.size,
        "min": g64.min(),
        "max": g64.max(),
        "sum": g64.sum(),
        "sumsq": float(g64 @ g64),
        "zeros": float((g64 == 0).sum()),
        "nonfinite": float((~np.isfinite(g64)).sum()),
        "wsumsq": float(w.astype(np.float64).ravel() @ w.astype(np.float64).ravel()),
    }


def test_exact_fields_and_small_tensor_buckets_match_numpy() -> None:
    gen = torch.Generator().manual_seed(1)
    grads = [
        torch.randn(300, 40, generator=gen) * 1e-3,
        torch.randn(7, generator=gen) * 1e4,
        torch.where(torch.rand(50, 50, generator=gen) < 0.3, 0.0, torch.randn(50, 50, generator=gen) * 1e-12),
    ]
    weights = [torch.randn(g.shape, generator=gen) for g in grads]
    rows = stats.full_rows(grads, weights).numpy()
    for p, (g, w) in enumerate(zip(grads, weights)):
        ref = _reference_row(g.numpy(), w.numpy())
        r = rows[p]
        assert r[stats.NUMEL] == ref["numel"]
        assert r[stats.MIN] == pytest.approx(ref["min"], rel=1e-6)
        assert r[stats.MAX] == pytest.approx(ref["max"], rel=1e-6)
        assert r[stats.SUM] == pytest.approx(ref["sum"], rel=1e-4, abs=1e-6 * math.sqrt(ref["sumsq"]))
        assert r[stats.SUMSQ] == pytest.approx(ref["sumsq"], rel=1e-5)
        assert r[stats.ZEROS] == ref["zeros"] and r[stats.NONFINITE] == ref["nonfinite"]
        assert r[stats.WSUMSQ] == pytest.approx(ref["wsumsq"], rel=1e-5)
        # tensors with at most HIST_SAMPLE elements are bucketed exactly
        np.testing.assert_array_equal(r[stats.BUCKETS], reference_buckets(g.numpy().ravel()))
    assert rows[2][stats.ZEROS] > 0.2 * 2500  # the zero-heavy tensor really has zeros


def test_large_tensor_buckets_come_from_the_fixed_subsample_scaled_to_numel() -> None:
    g = torch.randn(600, 100, generator=torch.Generator().manual_seed(2)) * 10.0 ** torch.randint(-8, 3, (600, 1))
    rows = stats.full_rows([g], None).numpy()
    idx = stats.sample_indices(g.numel(), stats.HIST_SAMPLE, g.device)
    assert idx is not None and len(set(idx.tolist())) == stats.HIST_SAMPLE  # distinct positions
    sample = g.reshape(-1)[idx].numpy()
    np.testing.assert_array_equal(rows[0][stats.BUCKETS], reference_buckets(sample))
    decoded = stats.decode(rows[None])[0]
    assert decoded.bucket_counts.sum() == pytest.approx(g.numel())
    full = reference_buckets(g.numpy().ravel())
    # the estimate follows the true per-decade mass (rows span 11 decades): within 3 points of it
    assert np.abs(decoded.bucket_counts / g.numel() - full / g.numel()).max() < 0.03


def test_nan_and_inf_are_counted_and_propagate_like_a_plain_writer() -> None:
    g = torch.randn(1000)
    g[3], g[10], g[11] = float("nan"), float("inf"), float("-inf")
    nan_only = torch.full((20,), float("nan"))
    p, q = stats.decode(stats.full_rows([g, nan_only], None).numpy()[None])
    assert p.nonfinite == 3 and math.isnan(p.min) and math.isnan(p.max) and math.isnan(p.sum)
    assert not math.isfinite(p.sum_squares)
    assert p.bucket_counts[0] == 1 and p.bucket_counts[-1] == 1  # ±Inf in the overflow buckets
    assert p.bucket_counts.sum() == 999  # the NaN is in no bucket
    assert q.nonfinite == 20 and q.bucket_counts.sum() == 0 and math.isnan(q.max)


def test_decode_merges_rank_shards_into_the_full_tensor_stats() -> None:
    full = torch.randn(40000, generator=torch.Generator().manual_seed(3))
    full[:500] = 0.0
    shards = [full[:25000], full[25000:]]
    rows = np.stack([stats.full_rows([s], None).numpy() for s in shards])
    merged = stats.decode(rows)[0]
    ref = _reference_row(full.numpy(), full.numpy())
    assert merged.numel == 40000 and merged.zeros == 500
    assert merged.min == pytest.approx(ref["min"]) and merged.max == pytest.approx(ref["max"])
    assert merged.sum_squares == pytest.approx(ref["sumsq"], rel=1e-5)
    assert merged.bucket_counts.sum() == pytest.approx(40000)
