"""Two real gloo processes: who writes, and statistics reduced over gradient shards."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tbmon.trainer_shim import TrainerShim, stats
from tests.trainer_shim.training import load, mlp, train

pytestmark = pytest.mark.slow  # spawning the two gloo processes takes ~30 s on a busy 2-core machine

SHARD_SIZES = (3000, 5000)  # unequal, like FSDP/ZeRO flat-parameter shards


def _full_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    grad = torch.randn(sum(SHARD_SIZES), generator=gen) * 1e-3
    grad[100:400] = 0.0  # zeros on rank 0's shard
    grad[5000] = float("inf")  # a non-finite entry on rank 1's shard only
    return grad, torch.randn(sum(SHARD_SIZES), generator=gen)


class _Sharded(torch.nn.Module):
    def __init__(self, rank: int) -> None:
        super().__init__()
        grad, weight = _full_tensors()
        lo = sum(SHARD_SIZES[:rank])
        part = slice(lo, lo + SHARD_SIZES[rank])
        self.shard = torch.nn.Parameter(weight[part].clone())
        self.shard.grad = grad[part].clone()


def _worker(rank: int, world: int, port: int, logdir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        # default: rank 0 writes alone, no collective involved
        shim = TrainerShim(f"{logdir}/replicated", mlp(), hist_every=1)
        train(shim, shim.model, 3)
        shim.close()
        # sharded gradients reduced over ranks (every rank calls log_gradients)
        model = _Sharded(rank)
        shim = TrainerShim(f"{logdir}/sharded", model, hist_every=2, norms_every=1, reduce_across_ranks=True)
        shim.log_gradients(0)  # full statistics
        shim.log_gradients(1)  # norms only
        shim.close()
        # per-rank files, still reduced
        shim = TrainerShim(f"{logdir}/per_rank", model, hist_every=1, reduce_across_ranks=True, rank_zero_only=False)
        shim.log_gradients(0)
        shim.close()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, str(out)), nprocs=2, join=True)
    return out


def test_only_rank_zero_writes_by_default(logdir: Path) -> None:
    files = list((logdir / "replicated").iterdir())
    assert len(files) == 1 and ".r0." in files[0].name
    assert [e.step for e in load(logdir / "replicated").Histograms("grad/0.weight")] == [0, 1, 2]


def test_sharded_statistics_are_reduced_to_the_full_tensor(logdir: Path) -> None:
    grad, weight = (t.numpy().astype(np.float64) for t in _full_tensors())
    acc = load(logdir / "sharded")
    (h,) = [e.histogram_value for e in acc.Histograms("grad/shard")]
    finite = grad[np.isfinite(grad)]
    assert h.num == grad.size and h.max == math.inf and h.min == pytest.approx(finite.min())
    assert h.sum == math.inf and h.sum_squares == math.inf
    full_counts = np.histogram(finite, bins=np.r_[-np.inf, stats.BUCKET_LIMITS])[0]
    full_counts[-1] += 1  # +Inf sits in the overflow bucket
    lo = int(np.flatnonzero(full_counts)[0])
    assert list(h.bucket) == full_counts[lo : lo + len(h.bucket)].tolist()
    scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    assert scalars["grad_zero_frac/shard"] == [(0, pytest.approx(300 / grad.size))]
    assert scalars["grad_nonfinite/shard"] == [(0, 1.0)]
    assert scalars["weight_norm/shard"] == [(0, pytest.approx(np.linalg.norm(weight), rel=1e-5))]
    assert [s for s, _ in scalars["train/grad_norm"]] == [0, 1]  # the norms-only step reduced too
    assert all(v == math.inf for _, v in scalars["train/grad_norm"])


def test_per_rank_files_hold_the_same_reduced_statistics(logdir: Path) -> None:
    hists = []
    for r in (0, 1):
        (f,) = (logdir / "per_rank" / f"rank{r}").iterdir()
        assert f".r{r}." in f.name
        (h,) = load(f).Histograms("grad/shard")
        hists.append(h.histogram_value)
    assert hists[0] == hists[1] and hists[0].num == sum(SHARD_SIZES)
