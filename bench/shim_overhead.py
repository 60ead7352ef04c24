"""Step-time overhead of tbmon's TrainerShim against no logging and the common histogram practice.

Two models, each trained in the same process with every variant, in slices taken in turns
(``--interleave``, shuffled order per turn) inside every round:

* ``mlp``  9 x (Linear(1024,1024)+ReLU), 9.4M params (18 tensors), batch 64, SGD, MSE.
* ``gpt``  a character-level GPT built from a config (no download): 6 pre-norm blocks, width
  268, 4 heads, context 64, vocabulary 65, tied embedding: 5.28M params in 76 tensors; batch 8,
  AdamW, cross-entropy on random tokens.

Variants:

* ``none``          no logging
* ``shim_default``  TrainerShim defaults (loss+lr every step, norms every 10, histograms every 100)
* ``shim_hist1``    TrainerShim(hist_every=1, norms_every=1): everything every step, weights
                    included (weight norms and update ratios, ``log_weights=True``, the default)
* ``shim_hist1_nw`` the same with ``log_weights=False``: gradient content only
* ``tbx_hist1``     tensorboardX ``add_histogram`` of every gradient + loss/lr, every step
* ``tut_hist1``     the same with ``torch.utils.tensorboard.SummaryWriter``
* ``tbx_hist1_w``   tensorboardX ``add_histogram`` of every gradient AND every weight, every step
* ``tut_hist1_w``   the same with ``torch.utils.tensorboard.SummaryWriter``

Like is compared with like: gradient histograms against the shim without weights, gradient
and weight histograms against the shim with weights; the cross pairs are printed too.

Per round and variant: amortized CPU ms/step = process CPU time (all threads: the shim's
writer thread and tensorboardX's are charged) of (loop + close) / steps, summed over the
variant's ``--interleave`` slices (default 4: 25 of the 100 shim steps, numbered on, so the
defaults still log one histogram step; 1-2 of the 6 ``add_histogram`` steps); each slice opens
and closes its own writer: an open and close costs the shim 0.7 ms of CPU (0.03 ms a step
over 25 steps) and tensorboardX 1.6 ms (~0.8 ms a step more over its 6 steps, 0.4 % of its
cost), measured once. Slices rather than one segment per variant because a segment's CPU per step
moved by up to ~10 ms with the load and allocator state of its turn (``none`` 42.9-53.3 ms in
one run), more than half the shim's overhead. Overheads are per round against that round's
``none``; the tables print medians over rounds and the ratio of each
histogram practice's overhead to the shim's every-step overhead, from the same run, then the
same ratios round by round (each practice against the shim measured in the same round) and
their minimum. Torch runs on ONE thread (``--threads``), so a shared machine's other jobs
disturb it least.

Two measures of the shim, both CPU time:

* **overhead per step**: its segment's process CPU per step minus ``none``'s. It is what a
  user pays, including indirect costs (the shim's passes evict the model from the caches, its
  allocations move glibc's heap and page-fault state), but it is the difference of two ~50 ms
  (MLP) or ~170 ms (GPT) figures taken seconds apart, so other jobs on a shared machine and
  the page-fault state left by earlier segments (the ``sys ms`` and ``faults`` columns) move
  it by a few ms per round: a sizeable share of a 10-20 ms overhead.
* **direct cost**: CPU time inside its calls on the training thread (``time.thread_time``,
  user + system) plus its writer thread's own CPU clock. It does not see indirect costs but
  holds still when the machine is loaded: the steadier figure for the shim itself.

Histogram practices are always measured as overhead (their cost is 10-20x the noise). A ratio
against either measure sets the practice's overhead against the shim's cost in the same run;
"every round" means the minimum of the per-round ratios. Usage::

    nice -n 5 python bench/shim_overhead.py --rounds 3
"""

from __future__ import annotations

import argparse
import math
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tensorboardX import SummaryWriter as TbxWriter
from torch import nn
from torch.utils.tensorboard import SummaryWriter as TorchWriter

from tbmon.trainer_shim import TrainerShim

VARIANTS = ["none", "shim_default", "shim_hist1", "shim_hist1_nw", "tbx_hist1", "tut_hist1", "tbx_hist1_w", "tut_hist1_w"]
SLOW = ("tbx_hist1", "tut_hist1", "tbx_hist1_w", "tut_hist1_w")  # ~0.2-0.8 s/step: fewer steps
# (histogram practice, shim variant it is set against): like with like first, then the cross pairs
PAIRS = [
    ("tbx_hist1", "shim_hist1_nw"),
    ("tut_hist1", "shim_hist1_nw"),
    ("tbx_hist1_w", "shim_hist1"),
    ("tut_hist1_w", "shim_hist1"),
    ("tbx_hist1", "shim_hist1"),
    ("tut_hist1", "shim_hist1"),
]


@dataclass(frozen=True)
class GPTConfig:
    vocab: int = 65
    context: int = 64
    width: int = 268
    heads: int = 4
    blocks: int = 6


class Block(nn.Module):
    """Pre-norm transformer block (nanoGPT layout: 12 tensors)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.ln_1, self.ln_2 = nn.LayerNorm(cfg.width), nn.LayerNorm(cfg.width)
        self.attn, self.attn_proj = nn.Linear(cfg.width, 3 * cfg.width), nn.Linear(cfg.width, cfg.width)
        self.fc, self.fc_proj = nn.Linear(cfg.width, 4 * cfg.width), nn.Linear(4 * cfg.width, cfg.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (h.view(b, t, self.heads, c // self.heads).transpose(1, 2) for h in self.attn(self.ln_1(x)).split(c, 2))
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.fc_proj(nn.functional.gelu(self.fc(self.ln_2(x))))


class GPT(nn.Module):
    """Character-level GPT: token + position embeddings, blocks, final norm, tied output head."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok, self.pos = nn.Embedding(cfg.vocab, cfg.width), nn.Embedding(cfg.context, cfg.width)
        self.blocks = nn.Sequential(*(Block(cfg) for _ in range(cfg.blocks)))
        self.ln_f = nn.LayerNorm(cfg.width)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        return self.ln_f(self.blocks(x)) @ self.tok.weight.T


@dataclass
class Task:
    """A model with its optimizer and one fixed batch."""

    name: str
    model: nn.Module
    step: Callable[[], torch.Tensor]  # forward + backward, returns the loss
    optimizer: torch.optim.Optimizer


def make_task(name: str) -> Task:
    torch.manual_seed(0)
    if name == "mlp":
        model: nn.Module = nn.Sequential(*(m for _ in range(9) for m in (nn.Linear(1024, 1024), nn.ReLU())))
        x, y = torch.randn(64, 1024), torch.randn(64, 1024)

        def step() -> torch.Tensor:
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            return loss

        return Task(name, model, step, torch.optim.SGD(model.parameters(), lr=1e-3))
    cfg = GPTConfig()
    model = GPT(cfg)
    idx, target = torch.randint(0, cfg.vocab, (8, cfg.context)), torch.randint(0, cfg.vocab, (8 * cfg.context,))

    def step() -> torch.Tensor:
        loss = nn.functional.cross_entropy(model(idx).view(-1, cfg.vocab), target)
        loss.backward()
        return loss

    return Task(name, model, step, torch.optim.AdamW(model.parameters(), lr=1e-4))


def run_segment(variant: str, task: Task, steps: int, logdir: str, first_step: int = 0) -> tuple[float, float, float, float]:
    """Train ``steps`` steps (numbered from ``first_step``) with one logging variant; amortized
    process CPU seconds per step.

    Second value, for the shim: its direct cost per step, i.e. CPU inside its calls on the
    training thread plus its writer thread's own CPU clock (steadier than a difference of
    two noisy step times when the cost is a fraction of a percent). Last two: the process's
    system CPU seconds and minor page faults per step (``getrusage``), which show when a
    difference between variants is the allocator's, not the logging's.
    """
    model = task.model
    direct = [0.0, 0.0]
    log_grads: Callable[[int], None] = lambda step: None
    log_scalars: Callable[[int, torch.Tensor], None] = lambda step, loss: None
    close: Callable[[], None] = lambda: None
    if variant.startswith("shim"):
        kwargs: dict[str, object] = {}
        if variant != "shim_default":
            kwargs = {"hist_every": 1, "norms_every": 1, "log_weights": variant == "shim_hist1"}
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
    elif variant in SLOW:
        writer = (TbxWriter if variant.startswith("tbx") else TorchWriter)(logdir)
        named = [(n, p) for n, p in model.named_parameters()]
        with_weights = variant.endswith("_w")

        def log_grads(step: int) -> None:
            for n, p in named:
                writer.add_histogram(f"grad/{n}", p.grad, step)
                if with_weights:
                    writer.add_histogram(f"weight/{n}", p.detach(), step)

        def log_scalars(step: int, loss: torch.Tensor) -> None:
            writer.add_scalar("train/loss", loss.item(), step)
            writer.add_scalar("train/learning_rate", 1e-3, step)

        close = writer.close
    usage_start = resource.getrusage(resource.RUSAGE_SELF)
    cpu_start = time.process_time()
    for step in range(first_step, first_step + steps):
        task.optimizer.zero_grad()
        loss = task.step()
        log_grads(step)
        task.optimizer.step()
        log_scalars(step, loss)
    close()
    cpu = (time.process_time() - cpu_start) / steps
    usage = resource.getrusage(resource.RUSAGE_SELF)
    system, faults = (usage.ru_stime - usage_start.ru_stime) / steps, (usage.ru_minflt - usage_start.ru_minflt) / steps
    return cpu, (direct[0] + direct[1]) / steps, system, faults


Series = dict[str, list[float]]


def bench(task: Task, rounds: int, steps: int, slow_steps: int, interleave: int, rng: random.Random) -> tuple[Series, Series, Series, Series]:
    """Per-round CPU ms/step of every variant, the shim's direct ms/step, and every variant's
    system CPU ms and minor page faults per step.

    A round runs each variant's steps as ``interleave`` slices (each a segment of its own:
    writer created, steps numbered on from the previous slice, writer closed), all variants'
    first slices in a shuffled order, then all second slices in another, and so on: every
    variant is sampled across the whole round, so the shim, ``none`` and the histogram
    practices see the same load and allocator states on average. A variant's figure is its
    slices' total over their total steps.
    """
    times: Series = {v: [] for v in VARIANTS}
    direct: Series = {v: [] for v in VARIANTS if v.startswith("shim")}
    system: Series = {v: [] for v in VARIANTS}
    faults: Series = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        run_segment("none", task, 3, tmp)  # warm-up
        for r in range(rounds):
            totals = {v: [0.0, 0.0, 0.0, 0.0, 0] for v in VARIANTS}  # cpu, direct, sys, faults (x steps), steps
            for s in range(interleave):
                order = VARIANTS[:]
                rng.shuffle(order)
                for v in order:
                    total = slow_steps if v in SLOW else steps
                    first, n = total * s // interleave, total * (s + 1) // interleave - total * s // interleave
                    if n == 0:
                        continue
                    measured = run_segment(v, task, n, f"{tmp}/r{r}_{v}_{s}", first_step=first)
                    for i, value in enumerate(measured):
                        totals[v][i] += value * n
                    totals[v][4] += n
            for v, (cpu, shim_cpu, sys_cpu, minflt, n) in totals.items():
                times[v].append(1e3 * cpu / n)
                system[v].append(1e3 * sys_cpu / n)
                faults[v].append(minflt / n)
                if v in direct:
                    direct[v].append(1e3 * shim_cpu / n)
            print(f"  {task.name} round {r + 1}/{rounds} (CPU ms/step): "
                  + ", ".join(f"{v} {times[v][-1]:.1f}" for v in VARIANTS), flush=True)
    return times, direct, system, faults


def report(task: Task, times: Series, direct: Series, system: Series, faults: Series) -> None:
    params = sum(p.numel() for p in task.model.parameters())
    tensors = len(list(task.model.parameters()))
    overhead = {v: [t - n for t, n in zip(times[v], times["none"])] for v in VARIANTS}
    none = statistics.median(times["none"])
    print(f"\n{task.name}: {params / 1e6:.2f}M params in {tensors} tensors; CPU time, medians of {len(times['none'])} rounds")
    print(f"  {'variant':<15}{'ms/step':>10}{'[min-max]':>20}{'overhead ms':>13}{'overhead %':>12}{'sys ms':>9}{'faults':>9}")
    for v in VARIANTS:
        med, ov = statistics.median(times[v]), statistics.median(overhead[v])
        span = f"[{min(times[v]):.1f}-{max(times[v]):.1f}]"
        kernel = f"{statistics.median(system[v]):>9.1f}{statistics.median(faults[v]):>9.0f}"
        print(f"  {v:<15}{med:>10.2f}{span:>20}{ov:>13.2f}{100 * ov / none:>11.2f}%{kernel}")
    print("  (sys ms: the process's system CPU per step, part of ms/step; faults: minor page faults per step)")
    print(f"  shim at defaults: {100 * statistics.median(overhead['shim_default']) / none:+.2f}% of the step end to end")
    for v, costs in direct.items():
        med = statistics.median(costs)
        print(f"  {v} direct cost (its calls + its writer thread): {med:.3f} ms/step = {100 * med / none:.2f}% of the step")
    print("  histogram practice / shim every step (target >= 10x):")
    for practice, shim in PAIRS:
        cost, shim_ov, shim_direct = (statistics.median(x) for x in (overhead[practice], overhead[shim], direct[shim]))
        ratio = f"{cost / shim_ov:.1f}x" if shim_ov > 0 else "n/a (shim within noise)"
        print(f"    {practice:<12} / {shim:<14} overhead {ratio:>6}, against the shim's direct cost {cost / shim_direct:.1f}x")
    print("  the same, round by round (practice and shim from the same round), and the minimum:")
    for practice, shim in PAIRS:
        cells = []
        for name, shim_costs in (("overhead", overhead[shim]), ("direct", direct[shim])):
            ratios = [p / s if s > 0 else math.nan for p, s in zip(overhead[practice], shim_costs)]
            low = "n/a" if any(math.isnan(r) for r in ratios) else f"{min(ratios):.1f}x"
            cells.append(f"{name} " + " ".join(f"{r:.1f}" for r in ratios) + f" (min {low})")
        print(f"    {practice:<12} / {shim:<14} " + "; ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100, help="steps per segment (none and shim variants; 100 = one full histogram step at the defaults)")
    parser.add_argument("--slow-steps", type=int, default=6, help="steps per add_histogram segment")
    parser.add_argument("--models", default="mlp,gpt", help="comma-separated: mlp, gpt")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: least disturbed on a shared machine)")
    parser.add_argument("--interleave", type=int, default=4, help="slices per variant and round, run in turns with the other variants' (1: one segment each)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = random.Random(0)
    results = []
    for name in args.models.split(","):
        task = make_task(name)  # built just before its rounds: a later model does not shape the allocator's state for an earlier one
        results.append((task, bench(task, args.rounds, args.steps, args.slow_steps, args.interleave, rng)))
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    for task, series in results:
        report(task, *series)


if __name__ == "__main__":
    main()
