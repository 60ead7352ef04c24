"""Rank detection and the one collective the shim may run (gathering statistics rows).

Rules (ux-style-anchors §A.6): global rank 0 writes by default; the rank comes from
``torch.distributed`` when it is initialised, else from the launcher's environment
(``RANK``, then ``LOCAL_RANK``, then ``SLURM_PROCID``, like Lightning's ``rank_zero_only``).
A collective is only ever issued on every rank alike, never inside a rank-0-only branch.
"""

from __future__ import annotations

import os

import torch

_RANK_VARS = ("RANK", "LOCAL_RANK", "SLURM_PROCID")


def _initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _env_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return default


def rank() -> int:
    """Global rank of this process (0 when not distributed)."""
    if _initialized():
        return torch.distributed.get_rank()
    return _env_int(_RANK_VARS, 0)


def gathers(across_ranks: bool) -> bool:
    """Whether ``gather_rows`` runs a collective (so every rank must call it)."""
    return across_ranks and _initialized() and torch.distributed.get_world_size() > 1


def gather_rows(t: torch.Tensor, across_ranks: bool) -> torch.Tensor:
    """``t`` of every rank stacked as ``[ranks, *t.shape]`` (one ``all_gather``).

    An all-gather rather than an all-reduce: min/max need MIN/MAX, sums need SUM and the
    per-rank subsample counts must be scaled by each rank's own element count, so the
    host combines the rows field by field (``stats.decode``) after one collective.
    """
    if not gathers(across_ranks):
        return t.unsqueeze(0)
    parts = [torch.empty_like(t) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(parts, t.contiguous())
    return torch.stack(parts)
