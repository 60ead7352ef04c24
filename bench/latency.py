"""Flush-to-alert latency of `tbmon watch`, and its idle CPU over many runs.

Latency: a writer process writes finite losses (every 0.1 s) into a fresh run, then a NaN, and
reports the time right after its ``flush()`` returned. The watcher (`tbmon watch --format
jsonl`, a real process) prints the divergence alert; this script timestamps the line when it
reads it. Latency = read time - flush time (same host, same clock), repeated ``--reps`` times
per mode: inotify, and polling every 0.2 s.

Anchors measured in the same run: TensorBoard's own loader (``EventAccumulator.Reload()``)
polled every 1 s and every 5 s, TensorBoard's default ``--reload_interval`` (its web UI adds a
30 s auto-reload on top, not measured). Research note (perf-baselines §3): 1 s polling median
≈ 0.5 s; 5 s reload ≈ 2.5 s median.

Idle: ``--idle-runs`` run directories with event files, the watcher started (on a pseudo-
terminal, as a user runs it), let settle, then its user+system CPU time over
``--idle-seconds`` from /proc/<pid>/stat: jsonl with inotify, jsonl polling, rich dashboard.

    python bench/latency.py                      # full: 20 reps per mode, anchors, 200 idle runs
    python bench/latency.py --reps 5 --no-anchors --idle-runs 50   # quick
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

CLI = [sys.executable, "-m", "tbmon.monitor.cli"]

WRITER = r"""
import os, sys, time
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto import event_pb2, summary_pb2

logdir, reps, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def write(writer, step, value):
    v = summary_pb2.Summary.Value(tag="train/loss", simple_value=value)
    writer.write_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=[v])))
    writer.flush()

for rep in range(reps):
    sys.stdin.readline()  # go
    run = os.path.join(logdir, f"rep{rep:03d}")
    os.makedirs(run)
    writer = EventsWriter(os.path.join(run, "events"), f".{os.getpid()}")
    for step in range(warmup):
        write(writer, step, 1.0 / (step + 1))
        time.sleep(0.1)
    write(writer, warmup, float("nan"))
    print(f"rep{rep:03d}", time.time(), flush=True)
    writer.close()
"""

ANCHOR = r"""
import math, os, sys, time
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

logdir, interval = sys.argv[1], float(sys.argv[2])
accs, done = {}, set()
while True:
    time.sleep(interval)
    for run in sorted(os.listdir(logdir)):
        if run in done:
            continue
        acc = accs.setdefault(run, EventAccumulator(os.path.join(logdir, run)))
        acc.Reload()
        if "train/loss" in acc.Tags()["scalars"] and any(math.isnan(e.value) for e in acc.Scalars("train/loss")):
            done.add(run)
            print(run, flush=True)
"""


def follower_cmd(mode: str, logdir: str) -> list[str]:
    if mode == "inotify":
        return [*CLI, "watch", "--format", "jsonl", "--no-state", logdir]
    if mode.startswith("poll "):
        return [*CLI, "watch", "--format", "jsonl", "--no-state", "--poll", mode.split()[1], logdir]
    interval = mode.split()[-1].rstrip("s")
    return [sys.executable, "-c", ANCHOR, logdir, interval]


def alert_run(line: str) -> str | None:
    """The run named by a follower's line when it reports the NaN (tbmon jsonl, or the anchor's run name)."""
    line = line.strip()
    if line.startswith("{"):
        record = json.loads(line)
        return record["run"] if record.get("type") == "alert" and record.get("kind") == "divergence" else None
    return line or None


def poll_period(mode: str) -> float:
    """The follower's polling period (0 for inotify): each rep starts at a random phase of it,
    otherwise reps lock onto the polling clock and the median is biased."""
    return 0.0 if mode == "inotify" else float(mode.split()[-1].rstrip("s"))


def measure_latency(mode: str, reps: int, warmup: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="tbmon-latency-") as logdir:
        follower = subprocess.Popen(follower_cmd(mode, logdir), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        seen: dict[str, float] = {}
        cond = threading.Condition()

        def pump() -> None:
            assert follower.stdout
            for line in follower.stdout:
                now = time.time()
                run = alert_run(line)
                if run:
                    with cond:
                        seen.setdefault(run, now)
                        cond.notify_all()

        threading.Thread(target=pump, daemon=True).start()
        time.sleep(3.0)  # imports and the initial scan
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, logdir, str(reps), str(warmup)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdin and writer.stdout
        latencies = []
        try:
            for _ in range(reps):
                time.sleep(random.uniform(0, poll_period(mode)))
                writer.stdin.write("go\n")
                writer.stdin.flush()
                run, flushed = writer.stdout.readline().split()
                with cond:
                    if not cond.wait_for(lambda: run in seen, timeout=30):
                        raise SystemExit(f"{mode}: no alert for {run} within 30 s")
                    latencies.append(seen[run] - float(flushed))
        finally:
            writer.kill()
            follower.terminate()
            follower.wait(30)
    return latencies


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def make_runs(logdir: str, runs: int) -> None:
    script = r"""
import os, sys, time
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto import event_pb2, summary_pb2
logdir, runs = sys.argv[1], int(sys.argv[2])
for i in range(runs):
    run = os.path.join(logdir, f"run{i:03d}")
    os.makedirs(run)
    w = EventsWriter(os.path.join(run, "events"), f".{i}")
    for step in range(20):
        v = summary_pb2.Summary.Value(tag="train/loss", simple_value=1.0 / (step + 1))
        w.write_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=[v])))
    w.close()
"""
    subprocess.run([sys.executable, "-c", script, logdir, str(runs)], check=True)


def measure_idle(runs: int, seconds: float, extra: list[str]) -> tuple[float, int]:
    """CPU share of an idle watcher; ``--format rich`` runs on a pseudo-terminal (drained here)."""
    with tempfile.TemporaryDirectory(prefix="tbmon-idle-") as logdir:
        make_runs(logdir, runs)
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
        proc = subprocess.Popen(
            [*CLI, "watch", "--no-state", *extra, logdir], stdin=slave, stdout=slave, stderr=slave, close_fds=True
        )
        os.close(slave)
        screen = bytearray()

        def drain(duration: float) -> None:
            end = time.monotonic() + duration
            while time.monotonic() < end:
                if select.select([master], [], [], 0.1)[0]:
                    try:
                        screen.extend(os.read(master, 65536)[-200:])
                    except OSError:
                        return
                del screen[:-400]

        while b"following" not in screen and b"inotify" not in screen and proc.poll() is None:
            drain(0.2)  # the initial scan is done once the watcher says what it follows
        drain(2.0)
        before = cpu_seconds(proc.pid)
        drain(seconds)
        used = cpu_seconds(proc.pid) - before
        threads = len(os.listdir(f"/proc/{proc.pid}/task"))
        proc.terminate()
        while proc.poll() is None:
            drain(0.2)
        os.close(master)
    return used / seconds, threads


def describe(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95, ordered[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5, help="finite losses before the NaN in each rep")
    parser.add_argument("--no-anchors", action="store_true")
    parser.add_argument("--anchor-reps", type=int, default=12)
    parser.add_argument("--idle-runs", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args()

    modes = [("inotify", args.reps), ("poll 0.2", args.reps)]
    if not args.no_anchors:
        modes += [("TensorBoard loader, 1s", args.anchor_reps), ("TensorBoard loader, 5s", args.anchor_reps)]
    results = {}
    print(f"flush → alert latency (writer every 0.1 s, {args.warmup} finite losses then NaN, one new run per rep)")
    print(f"{'follower':28} {'reps':>4} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}")
    for mode, reps in modes:
        median, p95, worst = describe(measure_latency(mode, reps, args.warmup))
        results[mode] = median
        print(f"{'tbmon watch ' + mode if not mode.startswith('Tensor') else mode:28} {reps:>4} "
              f"{median * 1e3:>10.1f} {p95 * 1e3:>8.1f} {worst * 1e3:>8.1f}", flush=True)
    for anchor in ("TensorBoard loader, 1s", "TensorBoard loader, 5s"):
        if anchor in results:
            print(f"  {anchor} median / tbmon inotify median = {results[anchor] / results['inotify']:.0f}x")
    print("  research anchors: TensorBoard reloads every 5 s (+30 s web UI refresh); 1 s polling median ≈ 0.5 s")

    print(f"\nidle CPU of a watcher over {args.idle_runs} runs, {args.idle_seconds:g} s after its initial scan")
    tick = 1 / os.sysconf("SC_CLK_TCK")
    for label, extra in (
        ("jsonl, inotify", ["--format", "jsonl"]),
        ("jsonl, poll 0.5 (fallback)", ["--format", "jsonl", "--poll", "0.5"]),
        ("rich dashboard, inotify", ["--format", "rich"]),
    ):
        share, threads = measure_idle(args.idle_runs, args.idle_seconds, extra)
        print(
            f"  {label:26} {share * 100:6.2f} % of one core = {share * args.idle_seconds * 1e3:.0f} ms CPU "
            f"in {args.idle_seconds:g} s (resolution {tick * 1e3:.0f} ms; {threads} threads)",
            flush=True,
        )


if __name__ == "__main__":
    main()
