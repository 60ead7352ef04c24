"""The shim's statistics as computed before issue 14 (commit 9627f70), frozen as a test reference.

The labelled corpus was written with this code; the faster ``stats.full_rows`` must give the
same values (up to float rounding) so that the corpus stays valid. Only the tests import it.
Its ``norm_rows`` is today's: the old one raised on float64 gradients (fixed with issue 14).
"""

from __future__ import annotations

import math

import torch

from tbmon.trainer_shim.stats import (
    DECADE_HIGH,
    DECADE_LOW,
    HIST_SAMPLE,
    N_BUCKETS,
    UPDATE_SAMPLE,
    ZERO_BUCKET,
    norm_rows,  # the old one refused float64 gradients; unchanged otherwise
)

_NAN_SLOT = N_BUCKETS


def sample_indices(numel: int, k: int, device: torch.device) -> torch.Tensor | None:
    """Deterministic, evenly spread subsample of ``k`` flat positions (None: take everything).

    ``i * a mod numel`` with ``a`` near ``numel / golden ratio`` and coprime with ``numel``
    visits distinct positions spread over the whole tensor; recomputing it each step costs
    microseconds and holds no device memory between logging steps.
    """
    if numel <= k:
        return None
    a = max(1, round(numel * 0.6180339887498949))
    while math.gcd(a, numel) != 1:
        a += 1
    return torch.arange(k, device=device, dtype=torch.int64).mul_(a).remainder_(numel)


def _bucket_ids(x: torch.Tensor) -> torch.Tensor:
    """Bucket index of every float64 value (NaN → the scratch slot)."""
    decade = torch.floor(torch.log10(x.abs())).clamp_(DECADE_LOW - 1, DECADE_HIGH)
    neg_side = DECADE_HIGH - decade  # -1e10.. → 0, underflow (-1e-20, 0) → 31
    pos_side = decade + (ZERO_BUCKET + 1 - (DECADE_LOW - 1))  # underflow → 33, overflow → 64
    ids = torch.where(x > 0, pos_side, neg_side)
    ids = torch.where(x == 0, float(ZERO_BUCKET), ids)
    ids = torch.where(torch.isnan(x), float(_NAN_SLOT), ids)
    return ids.long()


def _flat_samples(tensors: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    out = []
    for t in tensors:
        flat = t.detach().reshape(-1)
        idx = sample_indices(flat.numel(), k, flat.device)
        out.append(flat if idx is None else flat.index_select(0, idx))
    return out


def _nonfinite_counts(grads: list[torch.Tensor]) -> torch.Tensor:
    """Exact ±Inf/NaN count per tensor, float64 ``[P]``.

    ``x - x`` is 0 for finite x and NaN otherwise (count_nonzero counts NaN); one scratch
    buffer, freed on return, avoids fresh page faults per tensor. ``torch.isfinite`` costs
    ~5x more on CPU (abs, two compares and a product).
    """
    largest: dict[tuple[torch.dtype, torch.device], int] = {}
    for g in grads:
        key = (g.dtype, g.device)
        largest[key] = max(largest.get(key, 0), g.numel())
    scratch = {key: torch.empty(n, dtype=key[0], device=key[1]) for key, n in largest.items()}
    counts = []
    for g in grads:
        out = scratch[(g.dtype, g.device)][: g.numel()].view(g.shape)
        torch.sub(g.detach(), g.detach(), out=out)
        counts.append(torch.count_nonzero(out))
    return torch.stack(counts).double()


def legacy_full_rows(grads: list[torch.Tensor], weights: list[torch.Tensor] | None) -> torch.Tensor:
    """All statistics of every parameter as one float64 ``[P, BLOCK]`` tensor, on the device."""
    device = grads[0].device
    count = len(grads)
    numels = [g.numel() for g in grads]
    sumsq = norm_rows(grads)
    minmax = torch.stack([torch.stack(torch.aminmax(g.detach())) for g in grads]).double()
    # float32 accumulation (float64 would cost ~15x on CPU; half precision would overflow)
    sums = torch.stack([g.detach().sum(dtype=torch.promote_types(g.dtype, torch.float32)) for g in grads]).double()
    nonzero = torch.stack([torch.count_nonzero(g.detach()) for g in grads]).double()
    nonfinite = _nonfinite_counts(grads)
    numel_t = torch.tensor(numels, dtype=torch.float64, device=device)

    samples = _flat_samples(grads, HIST_SAMPLE)
    sizes = [s.numel() for s in samples]
    values = torch.cat(samples).double()
    owner = torch.repeat_interleave(
        torch.arange(count, device=device),
        torch.tensor(sizes, device=device),
        output_size=sum(sizes),
    )
    slots = _bucket_ids(values) + owner * (N_BUCKETS + 1)
    counts = torch.zeros(count * (N_BUCKETS + 1), dtype=torch.float64, device=device)
    counts.index_add_(0, slots, torch.ones_like(values))
    counts = counts.view(count, N_BUCKETS + 1)[:, :N_BUCKETS]

    if weights is None:
        wsumsq = torch.zeros(count, dtype=torch.float64, device=device)
        wsample = torch.zeros(count, UPDATE_SAMPLE, dtype=torch.float64, device=device)
        wlen = [0] * count
    else:
        wsumsq = norm_rows(weights)
        wsamples = _flat_samples(weights, UPDATE_SAMPLE)
        wlen = [s.numel() for s in wsamples]
        wsample = torch.stack(
            [torch.nn.functional.pad(s.double(), (0, UPDATE_SAMPLE - s.numel())) for s in wsamples]
        )
    head = torch.stack(
        [
            numel_t,
            minmax[:, 0],
            minmax[:, 1],
            sums,
            sumsq,
            numel_t - nonzero,
            nonfinite,
            wsumsq,
            torch.tensor(sizes, dtype=torch.float64, device=device),
            torch.tensor(wlen, dtype=torch.float64, device=device),
        ],
        dim=1,
    )
    return torch.cat([head, counts, wsample], dim=1)


