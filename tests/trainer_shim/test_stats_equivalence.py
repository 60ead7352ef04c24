"""The fast statistics write what the pre-issue-14 code wrote (corpus keyed on it stays valid).

``legacy_stats`` is the old ``full_rows`` frozen in the tests; every field of every row must
match it on tensors chosen to hit the edges: zeros of both signs, NaN/±Inf, values at and
beside every power of ten, subnormals, huge and tiny magnitudes, integers, half precision,
float64, and sizes around the sampling threshold. Bucket counts, zero and non-finite counts
must be identical; float fields equal up to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from tbmon.trainer_shim import TrainerShim, stats
from tests.trainer_shim.legacy_stats import legacy_full_rows
from tests.trainer_shim.training import load, mlp, train

EXACT = [stats.NUMEL, stats.ZEROS, stats.NONFINITE, stats.HIST_K, stats.WSAMPLE_LEN]


def _powers_of_ten(dtype: torch.dtype, neighbours: bool = True) -> torch.Tensor:
    """±10**e for every decade edge, and (``neighbours``) the representable values on both sides."""
    exact = torch.tensor([10.0**e for e in range(stats.DECADE_LOW - 1, stats.DECADE_HIGH + 2)], dtype=dtype)
    if neighbours:
        exact = torch.cat([exact, torch.nextafter(exact, torch.zeros_like(exact)), torch.nextafter(exact, exact * 2)])
    return torch.cat([exact, -exact])


def _edge_tensors(dtype: torch.dtype) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(14)
    info = torch.finfo(dtype)
    mixed = torch.randn(3000, generator=gen, dtype=torch.float64) * 10.0 ** torch.randint(-45, 40, (3000,), generator=gen)
    mixed[::7] = 0.0
    mixed[1::11] = -0.0
    mixed[5], mixed[6], mixed[7] = math.nan, math.inf, -math.inf
    return [
        torch.zeros(50, 3, dtype=dtype),
        torch.full((40,), -0.0, dtype=dtype),
        torch.full((30,), math.nan, dtype=dtype),
        torch.tensor([math.inf, -math.inf, math.inf, 1.0], dtype=dtype),
        _powers_of_ten(dtype, neighbours=dtype != torch.float64),  # float64: see the test below
        torch.tensor([info.tiny, -info.tiny, info.tiny / 4, -info.smallest_normal / 8, info.max, -info.max], dtype=dtype),
        torch.randint(-5, 6, (17, 9), generator=gen).to(dtype),  # int-like: exact 0, ±1, ±10 ...
        mixed.to(dtype),  # float32: huge ones become ±Inf, tiny ones subnormal or zero
        torch.randn(stats.HIST_SAMPLE, generator=gen, dtype=dtype) * 1e-3,  # largest exact tensor
        torch.randn(stats.HIST_SAMPLE + 1, generator=gen, dtype=dtype),  # smallest sampled one
        (torch.randn(700, 300, generator=gen, dtype=torch.float64) * 10.0 ** torch.randint(-30, 12, (700, 1), generator=gen)).to(dtype),
        (torch.randn(1024, 1024, generator=gen) * torch.rand(1024, 1, generator=gen).lt(0.7)).to(dtype),  # 8 CHUNKs
        mixed.repeat(100).to(dtype),  # sampled, in 3 CHUNKs, with zeros of both signs, NaN, ±Inf, subnormals
    ]


def _assert_rows_match(new: np.ndarray, old: np.ndarray) -> None:
    assert new.shape == old.shape
    np.testing.assert_array_equal(new[:, EXACT], old[:, EXACT])
    np.testing.assert_array_equal(new[:, stats.BUCKETS], old[:, stats.BUCKETS])  # counts: identical
    for column in (stats.MIN, stats.MAX, stats.SUMSQ, stats.WSUMSQ):
        np.testing.assert_allclose(new[:, column], old[:, column], rtol=1e-6, atol=0, equal_nan=True)
    # sums are added in another order (per CHUNK): float32 rounding, bounded by sum|x| <= sqrt(n * sum x^2)
    # (or, when sum x^2 overflowed float32, relative); a non-finite sum is the same non-finite value
    new_sum, old_sum = new[:, stats.SUM], old[:, stats.SUM]
    with np.errstate(invalid="ignore", over="ignore"):
        bound = 1e-6 * np.sqrt(old[:, stats.NUMEL] * old[:, stats.SUMSQ])
    bound = np.where(np.isfinite(bound), bound, 1e-6 * np.abs(old_sum))
    finite = np.isfinite(old_sum)
    np.testing.assert_array_equal(new_sum[~finite], old_sum[~finite])  # NaN == NaN here
    assert (np.abs(new_sum[finite] - old_sum[finite]) <= bound[finite]).all()
    # the weight subsample is the same set of entries, now in memory order
    for n, o in zip(new, old):
        k = int(o[stats.WSAMPLE_LEN])
        np.testing.assert_array_equal(np.sort(n[stats.WSAMPLE][:k]), np.sort(o[stats.WSAMPLE][:k]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_rows_equal_the_legacy_rows_on_edge_tensors(dtype: torch.dtype) -> None:
    grads = _edge_tensors(dtype)
    weights = [torch.randn(g.shape, generator=torch.Generator().manual_seed(p)).to(dtype) for p, g in enumerate(grads)]
    new, old = stats.full_rows(grads, weights).numpy(), legacy_full_rows(grads, weights).numpy()
    _assert_rows_match(new, old)
    # the edge cases really are in there: NaN, both infinities, zeros of both signs, subnormals
    assert new[2, stats.NONFINITE] == 30 and new[3, stats.NONFINITE] == 3
    assert new[0, stats.ZEROS] == 150 and new[1, stats.ZEROS] == 40
    assert new[-3, stats.HIST_K] == stats.HIST_SAMPLE and new[-4, stats.HIST_K] == stats.HIST_SAMPLE
    assert new[-1, stats.NONFINITE] >= 300 and new[-1, stats.ZEROS] > 0.2 * 300000  # sampled: exact counts
    assert stats.CHUNK < 300000


def test_float32_table_gives_bucketize_slots_for_every_257th_bit_pattern() -> None:
    """The 4096-row float32 table agrees with ``bucketize`` on the edges over 16.7M patterns."""
    bits = torch.arange(-(2**31), 2**31, 257, dtype=torch.int64).to(torch.int32)
    values = bits.view(torch.float32)
    edges = torch.tensor(stats._EDGES[torch.float32], dtype=torch.float32)
    assert torch.equal(stats._bucket_slots(values), torch.bucketize(values, edges, out_int32=True))


def test_float64_values_one_ulp_below_a_limit_go_below_it() -> None:
    """The one documented difference: float64 ``log10`` rounded these up a decade.

    Legacy's ``floor(log10(v))`` in float64 returns ``e`` for the float64 just below
    ``10.0**e`` (the logarithm rounds to the integer); comparing with the limits puts it one
    decade lower, inside the written ``bucket_limit`` it is below. float32 gradients never
    come that close to a float64 limit, so nothing they wrote changes.
    """
    limits = torch.tensor([10.0**e for e in range(stats.DECADE_LOW + 1, stats.DECADE_HIGH + 1)], dtype=torch.float64)
    below = torch.nextafter(limits, torch.zeros_like(limits))
    row = stats.full_rows([below], None).numpy()[0][stats.BUCKETS]
    positive_decades = slice(stats.ZERO_BUCKET + 2, stats.ZERO_BUCKET + 2 + len(limits))
    assert row[positive_decades].tolist() == [1.0] * len(limits)  # [10**(e-1), 10**e): one each
    legacy = legacy_full_rows([below], None).numpy()[0][stats.BUCKETS]
    assert 0 < (legacy != row).sum()  # some rounded up there (which is why this test exists)


def test_rows_equal_the_legacy_rows_with_mixed_dtypes() -> None:
    grads = [t.to(d) for t, d in zip(_edge_tensors(torch.float32), [torch.float64, torch.bfloat16, torch.float32] * 6)]
    grads[3] = _powers_of_ten(torch.float64, neighbours=False)
    weights = [torch.ones_like(g) for g in grads]
    for w in (None, weights):
        _assert_rows_match(stats.full_rows(grads, w).numpy(), legacy_full_rows(grads, w).numpy())


def test_buckets_match_the_legacy_rows_on_random_magnitudes_in_both_precisions() -> None:
    """16,000 values over 37 decades, both signs: the same bucket counts in float32 and float64."""
    gen = torch.Generator().manual_seed(7)
    values = (torch.rand(16000, generator=gen, dtype=torch.float64) * 2 - 1) * 10.0 ** torch.randint(-24, 13, (16000,), generator=gen)
    for dtype in (torch.float32, torch.float64):
        v = values.to(dtype)
        row = stats.full_rows([v], None).numpy()[0]
        np.testing.assert_array_equal(row[stats.BUCKETS], legacy_full_rows([v], None).numpy()[0][stats.BUCKETS])


def test_the_shim_writes_the_same_event_values_as_with_the_legacy_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two shims log the same gradients, one through the legacy rows: every value written matches."""
    model = mlp()
    train(None, model, 3)  # real gradients after a few steps
    with torch.no_grad():
        model[0].weight.grad[0, :5] = torch.tensor([0.0, -0.0, math.inf, 1.0, -10.0])
        model[2].bias.grad[1] = math.nan
    new_shim = TrainerShim(tmp_path / "new", model, hist_every=1)
    old_shim = TrainerShim(tmp_path / "old", model, hist_every=1)
    for step in (0, 1):
        new_shim.log_gradients(step)
        monkeypatch.setattr(stats, "full_rows", legacy_full_rows)
        old_shim.log_gradients(step)
        monkeypatch.undo()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(p.grad.nan_to_num(0.0, 0.0, 0.0), alpha=-0.1)  # a step, for update_ratio
    new_shim.close()
    old_shim.close()
    new, old = load(tmp_path / "new"), load(tmp_path / "old")
    assert new.Tags() == old.Tags() and len(new.Tags()["histograms"]) == 4
    for tag in new.Tags()["scalars"]:
        got, want = [e.value for e in new.Scalars(tag)], [e.value for e in old.Scalars(tag)]
        np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True, err_msg=tag)
    for tag in new.Tags()["histograms"]:
        for a, b in zip(new.Histograms(tag), old.Histograms(tag), strict=True):
            ha, hb = a.histogram_value, b.histogram_value
            assert (ha.bucket_limit, ha.bucket, ha.num) == (hb.bucket_limit, hb.bucket, hb.num), tag
            np.testing.assert_allclose([ha.min, ha.max, ha.sum, ha.sum_squares], [hb.min, hb.max, hb.sum, hb.sum_squares], rtol=1e-6, equal_nan=True)
    assert [e.value for e in new.Scalars("grad_nonfinite/0.weight")] == [1.0, 1.0]


def _isfinite_calls(fn: Callable[[], object]) -> int:
    """How many ``aten::isfinite`` ops ``fn`` ran (torch.profiler, CPU)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key == "aten::isfinite")


def test_sampled_nonfinite_count_is_exact_and_only_counted_on_a_bad_tensor() -> None:
    """NaN/Inf in sampled tensors are counted only when min or max is non-finite, and exactly.

    Finite values whose sum of squares overflows to Inf and whose sum comes out NaN (float32
    near its max) still give 0 and no counting pass; a single NaN or Inf in the first, a middle or the last
    ``CHUNK`` is counted exactly, as the legacy rows and a plain ``isfinite`` count do.
    """
    n = 3 * stats.CHUNK + 5
    huge = torch.full((n,), 3e38)
    huge[::4] = -3e38
    huge[1::9] = 0.0
    clean = torch.randn(n, generator=torch.Generator().manual_seed(3))
    bad = []
    for position, value in ((0, math.nan), (2 * stats.CHUNK - 1, math.inf), (n - 1, -math.inf)):
        t = clean.clone()
        t[position] = value
        bad.append(t)
    both = clean.clone()
    both[7], both[stats.CHUNK + 7] = math.inf, math.nan
    bad.append(both)

    rows = stats.full_rows([huge, clean], None).numpy()
    # the overflow happened: sum of squares Inf, and the sum of pieces +Inf + -Inf = NaN although no entry is
    assert math.isinf(rows[0, stats.SUMSQ]) and not math.isfinite(rows[0, stats.SUM])
    assert rows[:, stats.NONFINITE].tolist() == [0.0, 0.0]
    assert rows[0, stats.ZEROS] == huge.eq(0).sum().item()
    assert _isfinite_calls(lambda: stats.full_rows([huge, clean], None)) == 0  # no counting pass

    rows = stats.full_rows(bad, None).numpy()
    assert rows[:, stats.NONFINITE].tolist() == [1.0, 1.0, 1.0, 2.0]
    assert _isfinite_calls(lambda: stats.full_rows([clean, *bad], None)) == len(bad)  # one pass per bad tensor
    for grads in ([huge, clean], bad):
        _assert_rows_match(stats.full_rows(grads, None).numpy(), legacy_full_rows(grads, None).numpy())


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_sampled_nonfinite_count_in_other_precisions(dtype: torch.dtype) -> None:
    """The same rule in every gradient precision: finite extremes give 0, a NaN or an Inf counts."""
    info = torch.finfo(dtype)
    finite = torch.linspace(-1, 1, stats.CHUNK + 3).to(dtype) * info.max
    bad = finite.clone()
    bad[3], bad[-2] = math.nan, -math.inf
    rows = stats.full_rows([finite, bad], None).numpy()
    assert rows[:, stats.NONFINITE].tolist() == [0.0, 2.0]
    _assert_rows_match(rows, legacy_full_rows([finite, bad], None).numpy())
