"""The shim's CUDA path on a real GPU: device-to-host copies per logging step, and overhead per step.

The claim (docs/shim.md): statistics are computed on the device and reach the host in at most one
device-to-host copy per logging step; protobuf and file writes run off the training thread. On a GPU
the copy count is read from the CUDA activity of torch.profiler ("Memcpy DtoH" records), not from the
shim's own bookkeeping. Overhead is wall time per step against no logging, in the same process, and
against the common practice (tensorboardX ``add_histogram`` of every gradient every step), for a small
model (9 x Linear(1024), batch 64: logging dominates) and a large one (8 x Linear(4096), batch 1024).

    python bench/shim_cuda.py --out results.json     # needs a CUDA device
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

VARIANTS = ("none", "shim_default", "shim_hist1", "tbx_hist1")


def make_model(width: int, layers: int) -> torch.nn.Module:
    mods: list[torch.nn.Module] = []
    for _ in range(layers):
        mods += [torch.nn.Linear(width, width), torch.nn.ReLU()]
    return torch.nn.Sequential(*mods).cuda()


def segment(variant: str, model: torch.nn.Module, batch: int, steps: int, logdir: str, profile: bool = False):
    """Train ``steps`` steps with one logging variant; returns (ms per step incl. drain, DtoH copies or None)."""
    from tensorboardX import SummaryWriter

    from tbmon.trainer_shim import TrainerShim

    width = model[0].in_features
    x, y = torch.randn(batch, width, device="cuda"), torch.randn(batch, width, device="cuda")
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    shim = writer = None
    if variant.startswith("shim"):
        shim = TrainerShim(logdir, model, **({"hist_every": 1, "norms_every": 1} if variant == "shim_hist1" else {}))
    elif variant == "tbx_hist1":
        writer = SummaryWriter(logdir)
    names = [n for n, _ in model.named_parameters()]

    def loop() -> None:
        for step in range(steps):
            loss = torch.nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            if shim is not None:
                shim.log_gradients(step)
            elif writer is not None:
                for n, p in zip(names, model.parameters()):
                    writer.add_histogram(f"grad/{n}", p.grad, step)
            opt.step()
            if shim is not None:
                shim.log_scalars(step, loss=loss, lr=1e-4)
            elif writer is not None:
                writer.add_scalar("train/loss", loss.item(), step)

    copies = None
    torch.cuda.synchronize()
    start = time.perf_counter()
    if profile:
        from torch.profiler import ProfilerActivity, profile as prof

        with prof(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
            loop()
            torch.cuda.synchronize()
        copies = sum(1 for e in p.events() if "Memcpy DtoH" in e.name)
    else:
        loop()
    if shim is not None:
        shim.close()
    if writer is not None:
        writer.close()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3 / steps, copies


def records(logdir: str) -> int:
    """Events in the files the run wrote, read back with TensorBoard's own loader."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    return sum(sum(1 for _ in LegacyEventFileLoader(str(f)).Load()) for f in Path(logdir).glob("*tfevents*"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("shim_cuda: no CUDA device here; run it on a GPU machine", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    results: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        # Copies: 100 steps at the defaults (100 scalar steps, 10 norm steps, 1 histogram step), and
        # 20 steps with everything every step.
        model = make_model(1024, 9)
        segment("none", model, 64, 20, f"{tmp}/warm")
        for variant, steps in (("none", 100), ("shim_default", 100), ("shim_hist1", 20)):
            _, copies = segment(variant, model, 64, steps, f"{tmp}/p_{variant}", profile=True)
            written = records(f"{tmp}/p_{variant}") if variant != "none" else 0
            results[f"dtoh_copies_{variant}"] = {"steps": steps, "copies": copies, "records_written": written}
            print(f"{variant}: {copies} device-to-host copies in {steps} steps, {written} event records", flush=True)
        for size, (width, layers, batch, steps, tbx_steps) in {
            "small": (1024, 9, 64, 200, 20), "large": (4096, 8, 1024, 100, 10),
        }.items():
            model = make_model(width, layers)
            segment("none", model, batch, 10, f"{tmp}/w_{size}")
            times: dict[str, list[float]] = {v: [] for v in VARIANTS}
            for r in range(args.rounds):
                for v in VARIANTS:
                    n = tbx_steps if v == "tbx_hist1" else steps
                    times[v].append(segment(v, model, batch, n, f"{tmp}/{size}_{r}_{v}")[0])
            none = statistics.median(times["none"])
            row = {v: statistics.median(t) for v, t in times.items()}
            shim1, tbx = row["shim_hist1"] - none, row["tbx_hist1"] - none
            results[size] = {"params": sum(p.numel() for p in model.parameters()), "batch": batch,
                             "ms_per_step": row, "overhead_pct": {v: 100 * (row[v] - none) / none for v in VARIANTS},
                             "tbx_over_shim_hist1": tbx / shim1 if shim1 > 0 else None}
            print(f"{size} ({results[size]['params'] / 1e6:.1f}M params, batch {batch}): "
                  + ", ".join(f"{v} {row[v]:.3f} ms ({results[size]['overhead_pct'][v]:+.1f}%)" for v in VARIANTS)
                  + f"; tensorboardX add_histogram overhead / shim hist_every=1 overhead = "
                  + (f"{tbx / shim1:.1f}x" if shim1 > 0 else "n/a"), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
