"""Step-time overhead of tbmon's TrainerShim against no logging and the common tensorboardX practice.

Model (perf-baselines §1 "big" plus one layer): 9 x (Linear(1024,1024)+ReLU), 9.4M params,
batch 64, SGD, MSE. Variants, all in one process, in a shuffled order inside every round:

* ``none``        no logging
* ``shim_default`` TrainerShim defaults (loss+lr every step, norms every 10, histograms every 100)
* ``shim_hist1``   TrainerShim(hist_every=1, norms_every=1): everything every step
* ``tbx_hist1``    tensorboardX ``add_histogram`` of every parameter's gradient + loss/lr every
                  step (the common practice; ~0.8 s/step, so fewer steps)

Per round and variant: amortized ms/step = (loop + close) / steps, so the background drain
counts, measured twice: wall time, and process CPU time (all threads, so the shim's writer
thread is charged too; far less sensitive than wall time to other jobs on a shared machine).
Overheads are per round against that round's ``none``; the tables print medians over rounds.
Usage::

    nice -n 10 python bench/shim_overhead.py --rounds 5
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
from tensorboardX import SummaryWriter

from tbmon.trainer_shim import TrainerShim


def make_model(width: int, layers: int) -> torch.nn.Module:
    mods: list[torch.nn.Module] = []
    for _ in range(layers):
        mods += [torch.nn.Linear(width, width), torch.nn.ReLU()]
    return torch.nn.Sequential(*mods)


def run_segment(variant: str, model: torch.nn.Module, steps: int, logdir: str) -> tuple[float, float, float, float]:
    """Train ``steps`` steps with one logging variant.

    Returns amortized seconds per step: wall, process CPU, and for the shim its direct cost:
    CPU inside its calls on the training thread, and its writer thread's CPU.
    """
    direct = [0.0, 0.0]
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(64, model[0].in_features)
    y = torch.randn(64, model[0].in_features)
    log_grads: Callable[[int], None] = lambda step: None
    log_scalars: Callable[[int, torch.Tensor], None] = lambda step, loss: None
    close: Callable[[], None] = lambda: None
    if variant.startswith("shim"):
        kwargs = {"hist_every": 1, "norms_every": 1} if variant == "shim_hist1" else {}
        shim = TrainerShim(logdir, model, **kwargs)
        writer_clock = time.pthread_getcpuclockid(shim._writer._thread.ident)  # bench-only peek

        def log_grads(step: int) -> None:
            t0 = time.thread_time()
            shim.log_gradients(step)
            direct[0] += time.thread_time() - t0

        def log_scalars(step: int, loss: torch.Tensor) -> None:
            t0 = time.thread_time()
            shim.log_scalars(step, loss=loss, lr=1e-3)
            direct[0] += time.thread_time() - t0

        def close() -> None:
            shim.flush()
            direct[1] = time.clock_gettime(writer_clock)
            shim.close()
    elif variant == "tbx_hist1":
        writer = SummaryWriter(logdir)
        names = [n for n, _ in model.named_parameters()]

        def log_grads(step: int) -> None:
            for n, p in zip(names, model.parameters()):
                writer.add_histogram(f"grad/{n}", p.grad, step)

        def log_scalars(step: int, loss: torch.Tensor) -> None:
            writer.add_scalar("train/loss", loss.item(), step)
            writer.add_scalar("train/learning_rate", 1e-3, step)

        close = writer.close
    start, cpu_start = time.perf_counter(), time.process_time()
    for step in range(steps):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        log_grads(step)
        opt.step()
        log_scalars(step, loss)
    close()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return wall / steps, cpu / steps, direct[0] / steps, direct[1] / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100, help="steps per segment (shim and none)")
    parser.add_argument("--tbx-steps", type=int, default=6, help="steps per tensorboardX segment")
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = make_model(args.width, args.layers)
    params = sum(p.numel() for p in model.parameters())
    variants = ["none", "shim_default", "shim_hist1", "tbx_hist1"]
    clocks = ("wall", "cpu")
    times = {c: {v: [] for v in variants} for c in clocks}
    overhead = {c: {v: [] for v in variants} for c in clocks}
    direct_ms: dict[str, list[tuple[float, float]]] = {"shim_default": [], "shim_hist1": []}
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        run_segment("none", model, 5, tmp)  # warm-up
        for r in range(args.rounds):
            order = variants[:]
            rng.shuffle(order)
            this_round = {}
            for v in order:
                steps = args.tbx_steps if v == "tbx_hist1" else args.steps
                this_round[v] = run_segment(v, model, steps, f"{tmp}/r{r}_{v}")
            for v in ("shim_default", "shim_hist1"):
                direct_ms[v].append((this_round[v][2] * 1e3, this_round[v][3] * 1e3))
            for i, c in enumerate(clocks):
                for v in variants:
                    times[c][v].append(this_round[v][i] * 1e3)
                    overhead[c][v].append((this_round[v][i] - this_round["none"][i]) * 1e3)
            print(f"round {r + 1}/{args.rounds} (wall/cpu ms): "
                  + ", ".join(f"{v} {this_round[v][0] * 1e3:.1f}/{this_round[v][1] * 1e3:.1f}" for v in variants), flush=True)

    print(f"\nmodel: {args.layers} x Linear({args.width},{args.width})+ReLU, {params / 1e6:.2f}M params, "
          f"batch 64, SGD, {args.threads} thread(s); {args.rounds} interleaved rounds")
    for c in clocks:
        none = statistics.median(times[c]["none"])
        print(f"\n[{c} time] {'variant':<14}{'ms/step median':>16}{'[min-max]':>18}{'overhead ms':>13}{'overhead %':>12}")
        for v in variants:
            med, ov = statistics.median(times[c][v]), statistics.median(overhead[c][v])
            span = f"[{min(times[c][v]):.1f}-{max(times[c][v]):.1f}]"
            print(f"{'':<12}{v:<14}{med:>16.2f}{span:>18}{ov:>13.2f}{100 * ov / none:>11.1f}%")
        shim1, tbx = statistics.median(overhead[c]["shim_hist1"]), statistics.median(overhead[c]["tbx_hist1"])
        ratio = f"{tbx / shim1:.1f}x" if shim1 > 0 else "n/a (shim overhead within noise)"
        print(f"{c}: shim at defaults {100 * statistics.median(overhead[c]['shim_default']) / none:+.1f}% (target < 3%); "
              f"tensorboardX add_histogram overhead / shim hist_every=1 overhead = {ratio} (target >= 10x)")
    none_cpu = statistics.median(times["cpu"]["none"])
    print("\n[direct shim cost] CPU inside the shim's calls (training thread) + its writer thread, per step,"
          " vs the no-logging CPU step")
    for v, pairs in direct_ms.items():
        train_ms = statistics.median(p[0] for p in pairs)
        writer_ms = statistics.median(p[1] for p in pairs)
        print(f"  {v:<14} training thread {train_ms:.3f} ms + writer thread {writer_ms:.3f} ms"
              f" = {100 * (train_ms + writer_ms) / none_cpu:.2f}% of {none_cpu:.1f} ms")


if __name__ == "__main__":
    main()
