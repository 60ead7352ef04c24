"""Memory of `tbmon watch` per run followed: runs coming and going, and a catch-up on many runs.

Churn: one watcher (jsonl to ``-o``, a state file) follows ``--runs`` runs written by
tensorboardX's ``EventsWriter``, ``--live`` at a time, ``--points`` losses each in 5 flushes,
then a NaN (one divergence alert each); every other finished run is deleted 2 s later, as sweeps
and clean-up scripts do. RSS (``/proc/PID/status``) is read once ``--warm`` runs have been
followed and at the end; the figure is the growth per run after the warm-up (the anchor: the
watcher's own RSS after the warm-up). Catch-up: the peak RSS of a watcher reading ``--catch-up``
existing runs of ``--steps`` steps (bench/scale.py's cached logdir) until it follows them.

``--against DIR`` measures another checkout of tbmon the same way in the same run and prints
the ratios (that tree's figure / this tree's).

    python bench/watch_memory.py                         # 400 runs of churn, catch-up on 200 runs x 4000 steps
    python bench/watch_memory.py --against /tmp/old-tbmon  # before/after
    python bench/watch_memory.py --catch-up 0 --config no-overfitting.toml  # without the overfitting rule
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scale import _rss_mb, generate, measure_watch  # noqa: E402

CLI = [sys.executable, "-m", "tbmon.monitor.cli"]


def _tree_env(tree: Path | None, scratch: Path) -> dict[str, str]:
    """The environment that imports ``tbmon`` from ``tree`` (None: this checkout, as installed)."""
    env = dict(os.environ)
    if tree is not None:
        site = scratch / "site"
        site.mkdir(exist_ok=True)
        link = site / "tbmon"
        if not link.exists():
            link.symlink_to(tree.resolve())
        env["PYTHONPATH"] = str(site) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def churn(runs: int, live: int, points: int, warm: int, env: dict[str, str], config: list[str]) -> dict[str, float]:
    """RSS after ``warm`` runs and at the end of ``runs`` runs created, written, half deleted."""
    from tensorboardX.event_file_writer import EventsWriter
    from tensorboardX.proto import event_pb2, summary_pb2

    root = Path(tempfile.mkdtemp(prefix="tbmon-churn-"))
    logdir, out = root / "logs", root / "out.jsonl"
    logdir.mkdir()
    proc = subprocess.Popen([*CLI, "watch", str(logdir), "--format", "jsonl", "-o", str(out), "--poll", "0.2",
                             "--state", str(root / "state.json"), *config], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)  # fmt: skip

    def event(step: int, value: float) -> event_pb2.Event:
        loss = summary_pb2.Summary.Value(tag="train/loss", simple_value=value)
        return event_pb2.Event(wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=[loss]))

    writers: dict[int, list] = {}
    doomed: list[tuple[float, Path]] = []
    made, rss_warm = 0, 0.0
    try:
        time.sleep(3)
        while made < runs or writers or doomed:
            while len(writers) < live and made < runs:
                run = logdir / f"run{made:05d}"
                run.mkdir()
                writers[made] = [EventsWriter(str(run / "events"), ".1"), 0]
                made += 1
                if made == warm:
                    time.sleep(3)
                    rss_warm = _rss_mb(proc.pid)
            for index, state in list(writers.items()):
                writer, step = state
                for _ in range(points // 5):
                    writer.write_event(event(step, 1.0 / (1 + step * 0.01)))
                    step += 1
                writer.flush()
                state[1] = step
                if step >= points:
                    writer.write_event(event(step, float("nan")))
                    writer.close()
                    del writers[index]
                    if index % 2 == 0:
                        doomed.append((time.monotonic() + 2.0, logdir / f"run{index:05d}"))
            while doomed and doomed[0][0] <= time.monotonic():
                shutil.rmtree(doomed.pop(0)[1])
            time.sleep(0.25)
        time.sleep(8)  # the last alerts and removals, and a checkpoint
        rss_end = _rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(60)
    alerts = sum(1 for line in out.read_text().splitlines() if json.loads(line).get("type") == "alert")
    shutil.rmtree(root, ignore_errors=True)
    per_run = (rss_end - rss_warm) / (runs - warm)
    return {"rss_warm_mb": rss_warm, "rss_end_mb": rss_end, "mb_per_run": per_run, "alerts": alerts}


def catch_up(runs: int, steps: int, env: dict[str, str]) -> dict[str, float]:
    logdir = generate(runs, steps)
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # measure_watch starts the child with this environment
    try:
        return measure_watch(logdir, idle_seconds=2.0, timeout=1800.0)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=400, help="runs in the churn")
    parser.add_argument("--live", type=int, default=10, help="runs written at once")
    parser.add_argument("--points", type=int, default=1000, help="losses per run before its NaN")
    parser.add_argument("--warm", type=int, default=100, help="runs followed before the first RSS reading")
    parser.add_argument("--catch-up", type=int, default=200, help="existing runs for the catch-up (0: skip)")
    parser.add_argument("--steps", type=int, default=4000, help="steps per existing run")
    parser.add_argument("--against", type=Path, help="another tbmon checkout to measure the same way")
    parser.add_argument("--config", help="a tbmon config for the churn's watcher, e.g. one with "
                        "disable = [\"overfitting\"] to measure what that rule's state costs")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="tbmon-trees-"))
    trees = {"this tree": None, **({"against": args.against} if args.against else {})}
    results = {}
    for label, tree in trees.items():
        env = _tree_env(tree, scratch)
        c = churn(args.runs, args.live, args.points, args.warm, env, ["--config", args.config] if args.config else [])
        row = {**c}
        if args.catch_up:
            row["catch_up_peak_mb"] = catch_up(args.catch_up, args.steps, env)["peak_mb"]
        results[label] = row
        print(f"{label}: churn {args.runs} runs: RSS {c['rss_warm_mb']:.0f} MB after {args.warm} -> "
              f"{c['rss_end_mb']:.0f} MB, {c['mb_per_run'] * 1024:.0f} KB per run "
              f"(end/warm {c['rss_end_mb'] / c['rss_warm_mb']:.2f}); {c['alerts']} alerts"
              + (f"; catch-up on {args.catch_up} runs x {args.steps} steps: peak {row['catch_up_peak_mb']:.0f} MB"
                 if args.catch_up else ""), flush=True)
    if args.against:
        this, other = results["this tree"], results["against"]
        print(f"ratio against/this: per-run growth {other['mb_per_run'] / max(this['mb_per_run'], 1e-9):.2f}x"
              + (f", catch-up peak {other['catch_up_peak_mb'] / this['catch_up_peak_mb']:.2f}x" if args.catch_up else ""))
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
