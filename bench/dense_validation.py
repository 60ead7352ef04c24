"""Dense validation: `tbmon report` on runs that log their validation loss every step, against reading them.

    .venv/bin/python bench/dense_validation.py                 # 100 runs x 2,000 steps, 3 rounds
    .venv/bin/python bench/dense_validation.py --runs 20       # quicker, scaled down
    .venv/bin/python bench/dense_validation.py --report-json bench/out/dense-report.json   # keep the alerts
    .venv/bin/python bench/dense_validation.py --rounds 3 --by-rule  # and each rule's CPU alone, in-process
    .venv/bin/python bench/dense_validation.py --val-first   # validation logged before each step's training

Issue 14: with ``val/loss`` every step the overfitting rule cost 160-220 µs of CPU per point and
the report on 100 such runs took 40 s CPU against 1.25 s to read them. The logdir (cached under
``bench/out/dense-<runs>x<steps>/``) holds per run one event file with ``train/loss``,
``train/learning_rate`` and ``val/loss`` every step (bench/scale.py's curves, validation sampled at
every step; 3 % diverge, 3 % overfit). Each round runs, as child processes, ``tbmon.monitor.read()``
(the anchor: what the report must read anyway) and ``tbmon report --format json --jobs 1``, and
prints their CPU time, peak memory, and the report/read ratio; the median of the rounds closes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.read import frame  # noqa: E402
from bench.scale import _VERSION_EVENT, CLI, OUT, _curves, _scalar_event, _varint, measure  # noqa: E402


def write_run(path: Path, index: int, steps: int, val_first: bool = False) -> None:
    curves, _ = _curves(index, steps)
    loss, lr = curves["train/loss"], curves["train/learning_rate"]
    every = np.arange(steps)
    sparse_steps = every[::100]
    val = np.interp(every, sparse_steps, curves["val/loss"])  # the same curve, evaluated every step
    val *= 1 + 0.01 * np.random.default_rng(index).standard_normal(steps)
    columns = {"train/loss": loss.tolist(), "train/learning_rate": lr.tolist(), "val/loss": val.tolist()}
    order = ["val/loss", "train/loss", "train/learning_rate"] if val_first else list(columns)
    tags = [b"\x0a" + _varint(len(n)) + n.encode() for n in order]
    t0 = 1_763_900_000.0 + index * 3600
    records = [frame(b"\x09" + struct.pack("<d", t0) + _VERSION_EVENT)]
    for step, values in enumerate(zip(*(columns[n] for n in order))):
        records += [frame(_scalar_event(t0 + step * 0.2, step, tag, v)) for tag, v in zip(tags, values)]
    path.mkdir(parents=True, exist_ok=True)
    (path / f"events.out.tfevents.{int(t0)}.dense.{index}").write_bytes(b"".join(records))


def generate(runs: int, steps: int, val_first: bool = False) -> Path:
    root = OUT / f"dense-{runs}x{steps}{'-val-first' if val_first else ''}"
    if not (root / "done").is_file():
        for index in range(runs):
            write_run(root / "logs" / f"run_{index:04d}", index, steps, val_first)
        (root / "done").write_text("ok\n")
    return root / "logs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=2000, help="steps per run (3 scalar events each)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--val-first", action="store_true", help="log each step's val/loss before its training "
                        "points (as the corpora's Lightning/HF styles do): judged when the next training point comes")
    parser.add_argument("--by-rule", action="store_true", help="then time each rule alone on the runs read in-process")
    parser.add_argument("--report-json", default=os.devnull, metavar="PATH",
                        help="keep the report's JSON there (compare the alerts of two versions; default: discarded)")
    args = parser.parse_args()
    logdir = generate(args.runs, args.steps, args.val_first)
    print(f"logdir {logdir}: {args.runs} runs x {args.steps} steps, {3 * args.runs * args.steps:,} scalar events "
          f"(val/loss every step)")
    read = [sys.executable, str(ROOT / "bench" / "scale.py"), "--child", "tbmon_read", str(logdir)]
    report = [*CLI, "report", str(logdir), "--fail-on", "never", "--format", "json", "-o", args.report_json, "--jobs", "1"]
    ratios = []
    for round_ in range(1, args.rounds + 1):
        r, t = measure(read, args.timeout), measure(report, args.timeout)
        if "error" in r or "error" in t:
            print(f"round {round_}: read {r.get('error', 'ok')}, report {t.get('error', 'ok')}")
            continue
        ratios.append(t["cpu"] / r["cpu"])
        print(f"round {round_}: read {r['cpu']:.2f} s CPU (peak {r['peak_mb']:,.0f} MB), report {t['cpu']:.2f} s CPU "
              f"(peak {t['peak_mb']:,.0f} MB): report/read {ratios[-1]:.2f}x CPU, {t['peak_mb'] / r['peak_mb']:.2f}x memory")
    if ratios:
        print(f"median report/read CPU ratio over {len(ratios)} rounds: {statistics.median(ratios):.2f}x (target <= 2x)")
    if args.by_rule:
        by_rule(logdir, args.rounds)


def by_rule(logdir: Path, rounds: int) -> None:
    """CPU of each rule alone (``analyze`` with only it enabled, the engine included) over the runs read
    once in this process: where the report's analysis time goes."""
    from tbmon.analyzers import AnalyzerConfig, analyze
    from tbmon.analyzers.registry import available_rules
    from tbmon.monitor import read

    results = [read(run, histograms="summary") for run in sorted(logdir.iterdir())]
    evaluations = sum(len(s) for r in results for b in r.batches for s in b.scalars if s.tag == "val/loss")
    for name in available_rules():
        config = AnalyzerConfig(enabled=(name,))
        times = []
        for _ in range(rounds):
            started = time.process_time()
            for result in results:
                analyze(result, config)
            times.append(time.process_time() - started)
        print(f"  {name:20s} alone: {min(times):.3f}-{max(times):.3f} s CPU over {rounds} rounds "
              f"({min(times) / evaluations * 1e6:.2f} µs per val/loss point)")


if __name__ == "__main__":
    main()
