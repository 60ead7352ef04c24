"""Soak: `tbmon watch` beside busy writers for minutes; RSS sampled, every alert counted per sink.

A writer process keeps ``--runs`` runs writing at ``--rate`` events per second in all (tensorboardX's
``EventsWriter``, flushed every 0.5 s). Each run lives 30-90 s, then logs a NaN loss (one
divergence alert owed) and is replaced by a new run, so over 10 minutes ~200 runs diverge. One
`tbmon watch` process (jsonl to ``-o``, a state file, an ``--on-alert`` command and a webhook on
a local HTTP server, given through ``TBMON_WEBHOOK_URL``) follows them; every 5 s this script
samples its RSS (``/proc/PID/status``) and CPU time (``/proc/PID/stat``).

Figures: events/s written, RSS (median of the first and the last minute, their ratio: 1.0 is
flat, the anchor being the watcher's own first minute), CPU as % of one core, and per sink the
divergence alerts owed vs. received (lost = owed and never received). ``--kill-every S`` also
SIGKILLs and restarts the watcher every S seconds (at-least-once under kills; RSS then restarts).

    python bench/soak.py                       # 10 minutes, 20 runs, 1,000 events/s
    python bench/soak.py --minutes 1           # quick look
    python bench/soak.py --minutes 3 --kill-every 20
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "tbmon.monitor.cli"]
SAMPLE_EVERY = 5.0
CATCH_UP = 90.0
"""Seconds allowed after the writer stops for the last alerts to reach every sink."""

WRITER = r"""
import math, os, random, sys, time
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto import event_pb2, summary_pb2

logdir, runs, rate, seconds, seed = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
rng = random.Random(seed)
TICK = 0.05
made = 0
active = {}

def start_run(now):
    global made
    name = f"run{made:04d}"
    made += 1
    os.makedirs(os.path.join(logdir, name), exist_ok=True)
    active[name] = [EventsWriter(os.path.join(logdir, name, "events"), f".{os.getpid()}"), 0, now + rng.uniform(30, 90)]

def write(name, value):
    writer, step, _ = active[name]
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="train/loss", simple_value=value)])
    writer.write_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))
    active[name][1] = step + 1

begin = time.monotonic()
for _ in range(runs):
    start_run(begin)
events, scalars, last_flush = 0, 0, begin
while (now := time.monotonic()) - begin < seconds:
    for name in [n for n, (_, _, ends) in active.items() if ends <= now]:
        write(name, float("nan"))
        active[name][0].close()
        del active[name]
        print("diverged", name, flush=True)
        events += 1
        start_run(now)
    names = list(active)
    due = int(rate * (now - begin)) - scalars  # by the clock: a slow tick is made up in the next
    for i in range(due):
        name = names[(scalars + i) % len(names)]
        write(name, 2.0 * math.exp(-active[name][1] / 3000) + 0.1 + rng.gauss(0, 0.02))
    scalars += due
    events += due
    if now - last_flush >= 0.5:
        for writer, _, _ in active.values():
            writer.flush()
        last_flush = now
    time.sleep(max(TICK - (time.monotonic() - now), 0))
for writer, _, _ in active.values():
    writer.close()
print("events", events, time.monotonic() - begin, flush=True)
"""


def proc_figures(pid: int) -> tuple[float, float]:
    """(RSS in MB, user+system CPU seconds) of a live process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss_kb / 1024, cpu


class Hook:
    """A webhook endpoint on 127.0.0.1 that records which run each alert was about."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if body.get("kind") == "divergence":
                    hook.runs.append(body["run"])
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def divergence_runs(path: Path) -> list[str]:
    runs = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("type") == "alert" and record.get("kind") == "divergence":
            runs.append(record["run"])
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=20, help="runs writing at once")
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second, all runs together")
    parser.add_argument("--kill-every", type=float, default=0.0, metavar="S", help="SIGKILL + restart the watcher every S s")
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tbmon-soak-"))
    logdir, out, got, state = work / "logs", work / "out.jsonl", work / "got.jsonl", work / "state.json"
    logdir.mkdir()
    hook = Hook()
    watch_cmd = [*CLI, "watch", "--format", "jsonl", "-o", str(out), "--state", str(state),
                 "--on-alert", f"cat >> {got}; echo >> {got}", str(logdir)]
    env = {**os.environ, "TBMON_WEBHOOK_URL": hook.url}
    err = open(work / "watch.err", "ab")  # noqa: SIM115 - open for the whole soak
    watcher = subprocess.Popen(watch_cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
    seconds = args.minutes * 60
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(logdir), str(args.runs), str(args.rate), str(seconds),
                               str(args.seed)], stdout=subprocess.PIPE, text=True)
    owed: list[str] = []
    events = [0, 1.0]  # events written, seconds the writer wrote for

    def read_writer() -> None:
        assert writer.stdout
        for line in writer.stdout:
            word, *values = line.split()
            if word == "diverged":
                owed.append(values[0])
            else:
                events[:] = [int(values[0]), float(values[1])]

    reader = threading.Thread(target=read_writer, daemon=True)
    reader.start()
    samples: list[tuple[float, float, float]] = []  # (seconds since start, RSS MB, CPU s of the current watcher)
    cpu_done, kills = 0.0, 0
    begin = time.monotonic()
    next_kill = begin + args.kill_every if args.kill_every else float("inf")
    while writer.poll() is None:
        time.sleep(SAMPLE_EVERY)
        rss, cpu = proc_figures(watcher.pid)
        samples.append((time.monotonic() - begin, rss, cpu))
        if time.monotonic() >= next_kill:
            cpu_done += cpu
            watcher.kill()
            watcher.wait()
            kills += 1
            watcher = subprocess.Popen(watch_cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
            next_kill = time.monotonic() + args.kill_every
    reader.join()
    wrote_for = events[1]
    deadline = time.monotonic() + CATCH_UP
    sinks = {"output": lambda: divergence_runs(out), "--on-alert": lambda: divergence_runs(got), "webhook": lambda: hook.runs}
    while time.monotonic() < deadline and not all(set(owed) <= set(get()) for get in sinks.values()):
        time.sleep(1.0)
    _, cpu = proc_figures(watcher.pid)
    watched_for = time.monotonic() - begin
    watcher.send_signal(signal.SIGINT)
    code = watcher.wait(60)
    cpu_total = cpu_done + cpu

    first = [r for t, r, _ in samples if t <= 60] or [samples[0][1]]
    last = [r for t, r, _ in samples if t >= samples[-1][0] - 60]
    print(f"soak: {wrote_for:.0f} s, {args.runs} runs at once, {len(owed) + args.runs} runs in all, "
          f"{events[0]:,} events ({events[0] / wrote_for:,.0f} events/s); watcher killed and restarted {kills} times")
    print(f"watcher RSS: first minute median {statistics.median(first):.1f} MB, last minute median "
          f"{statistics.median(last):.1f} MB (ratio {statistics.median(last) / statistics.median(first):.2f}; "
          f"anchor: its first minute), max {max(r for _, r, _ in samples):.1f} MB, {len(samples)} samples")
    by_minute = [statistics.median([r for t, r, _ in samples if m * 60 <= t < (m + 1) * 60] or [float("nan")])
                 for m in range(int(samples[-1][0] // 60) + 1)]
    print("watcher RSS by minute (median, MB):", " ".join(f"{r:.0f}" for r in by_minute))
    print(f"watcher CPU: {cpu_total:.1f} s over {watched_for:.0f} s = {100 * cpu_total / watched_for:.1f} % of one core")
    print(f"divergence alerts owed: {len(owed)}")
    for name, get in sinks.items():
        received = get()
        lost = sorted(set(owed) - set(received))
        print(f"  {name:10} received {len(set(received) & set(owed))}, lost {len(lost)}{' ' + str(lost[:5]) if lost else ''}, "
              f"repeats {len(received) - len(set(received))}")
    print(f"watcher exit code {code} (1: critical alerts seen); files in {work}")


if __name__ == "__main__":
    main()
