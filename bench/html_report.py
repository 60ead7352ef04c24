"""Size and time of the interactive HTML report, against the PNG figures it replaced.

    .venv/bin/python bench/html_report.py                     # 50 runs x 5,000 steps x 24 layers
    .venv/bin/python bench/html_report.py --runs 10 --steps 1000

Writes RUNS runs with tensorboardX (training loss every step, validation loss every 100 steps,
``grad_norm/<layer>`` for LAYERS layers every 10 steps, one layer dead, one run diverging), then
in the same session times, each in its own process:

* ``tbmon report LOGDIR -o report.html``: the interactive report (chart data inline, thinned);
* anchor: ``tbmon report LOGDIR -f json --plots DIR``: one PNG per run, what the HTML report
  embedded before (as base64, 4/3 of the PNG bytes).

Prints wall time and bytes of each and their ratios.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TBMON = [sys.executable, "-m", "tbmon.monitor.cli"]


def write_logdir(root: Path, runs: int, steps: int, layers: int) -> None:
    from tensorboardX import SummaryWriter

    for run in range(runs):
        writer = SummaryWriter(str(root / f"sweep/lr_{run:02d}/version_0"))
        for step in range(steps):
            loss = 2.3 * math.exp(-step / (steps / 5)) + 0.05 + 0.01 * math.sin(step * 0.7 + run)
            if run == 0 and step > steps * 0.7:
                loss *= 1.01 ** (step - steps * 0.7)
            writer.add_scalar("train/loss", loss, step)
            if step % 100 == 0:
                writer.add_scalar("val/loss", loss * 1.1, step)
            if step % 10 == 0:
                for layer in range(layers):
                    norm = 0.0 if layer == 3 else 0.01 * (layer + 1) * (1 + 0.1 * math.sin(step / 50))
                    writer.add_scalar(f"grad_norm/layer{layer:02d}.weight", norm, step)
        writer.close()


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--layers", type=int, default=24)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        logdir, html, plots = Path(tmp) / "logs", Path(tmp) / "report.html", Path(tmp) / "plots"
        write_logdir(logdir, args.runs, args.steps, args.layers)
        html_s = timed([*TBMON, "report", str(logdir), "-o", str(html), "--jobs", "1"])
        png_s = timed([*TBMON, "report", str(logdir), "-f", "json", "--plots", str(plots), "--jobs", "1"])
        html_bytes = html.stat().st_size
        png_bytes = sum(p.stat().st_size for p in plots.rglob("*.png"))
    embedded = png_bytes * 4 // 3
    print(f"workload: {args.runs} runs x {args.steps} steps, {args.layers} gradient layers")
    print(f"interactive HTML report: {html_s:6.1f} s  {html_bytes / 1e6:6.2f} MB")
    print(f"anchor, PNG per run:     {png_s:6.1f} s  {png_bytes / 1e6:6.2f} MB", end="")
    print(f" (base64 in HTML: {embedded / 1e6:.2f} MB)")
    print(f"ratio HTML/PNG: time {html_s / png_s:.2f}x, bytes {html_bytes / embedded:.2f}x of the PNG-embedding report")


if __name__ == "__main__":
    main()
