"""CPU cost of one full statistics step (``stats.full_rows``): today's code against the pre-issue-14 one.

The anchor is ``tests/trainer_shim/legacy_stats.py`` (the old ``full_rows``, kept as the
tests' reference), timed in the same process on the same gradients and weights of the two
models of ``bench/shim_overhead.py`` (the MLP and the char-level GPT), after one backward
pass, with weights (``log_weights=True``, the default) and without. Per round, each function
runs ``--reps`` times back to back, in alternating order; the table prints the median over rounds of CPU ms per call and the ratio. One torch thread.
Usage (from the repository root)::

    nice -n 5 python bench/shim_stats.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' legacy reference
sys.path.insert(0, str(Path(__file__).resolve().parent))
from shim_overhead import make_task  # noqa: E402

from tbmon.trainer_shim import stats  # noqa: E402
from tests.trainer_shim.legacy_stats import legacy_full_rows  # noqa: E402


def cpu_ms(fn: Callable[[], object], reps: int) -> float:
    start = time.process_time()
    for _ in range(reps):
        fn()
    return (time.process_time() - start) / reps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=5, help="calls per function and round")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread; CPU ms per full statistics step, median of {args.rounds} rounds")
    for name in ("mlp", "gpt"):
        task = make_task(name)
        task.step()
        grads = [p.grad for p in task.model.parameters()]
        weights = [p.detach() for p in task.model.parameters()]
        for label, w in (("with weights", weights), ("gradients only", None)):
            variants = {"today": lambda w=w: stats.full_rows(grads, w), "legacy": lambda w=w: legacy_full_rows(grads, w)}
            times: dict[str, list[float]] = {v: [] for v in variants}
            for fn in variants.values():
                fn()  # warm-up (and the sample-position cache)
            for r in range(args.rounds):
                for v in sorted(variants, reverse=r % 2 == 1):
                    times[v].append(cpu_ms(variants[v], args.reps))
            today, legacy = (statistics.median(times[v]) for v in ("today", "legacy"))
            params = sum(p.numel() for p in task.model.parameters())
            print(f"  {name}, {label}: {params / 1e6:.2f}M params in {len(grads)} tensors: today {today:.2f} ms, "
                  f"legacy {legacy:.2f} ms, {legacy / today:.2f}x less CPU "
                  f"[today {min(times['today']):.1f}-{max(times['today']):.1f}, legacy {min(times['legacy']):.1f}-{max(times['legacy']):.1f}]")

if __name__ == "__main__":
    main()
