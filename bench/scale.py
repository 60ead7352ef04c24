"""A team's logdir of 1,000 runs: `tbmon report` (json, html) with --jobs 1 and every core, `tbmon
watch` catching up and idling, and tbparse on the same logdir, in one run.

    python bench/scale.py                          # 1,000 runs x 10,040 scalar events + 80 histograms
    python bench/scale.py --runs 100 --steps 1000  # quicker, scaled down
    python bench/scale.py --skip tbparse_full      # leave out the full tbparse read (minutes, GBs)

The logdir is generated once and cached under ``bench/out/scale-<runs>x<steps>/`` (gitignored):
10 projects of 100 runs, each run one event file with ``train/loss`` and ``train/learning_rate``
every step, ``train/grad_norm`` every 2nd step, ``val/loss`` every 100th, and 4 gradient
histograms (30 bins) every 200th. 3 % of runs diverge (a blow-up, then NaN), 3 % overfit
(validation loss turns up half-way), the rest are healthy. Records are encoded by hand (the
protobuf wire format of ``Event``/``Summary.Value.simple_value``, histograms from tensorboardX's
``summary.histogram``) and framed with the repo's ``masked_crc``, on every core: ~1 minute.

Every command runs as a child process; a sampler reads /proc 20 times a second for the peak
resident memory of the process and, for ``--jobs``, of it and its workers together.
"Memory grows with runs and tags, not events" is checked against a second logdir with the
same runs and tags and 1/10 of the steps (``--short-steps``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.read import frame  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
PROJECTS = 10
HIST_LAYERS = 4
CLI = [sys.executable, "-m", "tbmon.monitor.cli"]
_VERSION_EVENT = b"\x1a\x0dbrain.Event:2"  # field 3 (file_version)


# -- the logdir -------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _scalar_event(wall: float, step: int, tag_field: bytes, value: float) -> bytes:
    """Event{wall_time=1, step=2, summary=5{value=1{tag=1, simple_value=2}}}, as writers encode it."""
    value_msg = tag_field + b"\x15" + struct.pack("<f", value)
    summary = b"\x0a" + _varint(len(value_msg)) + value_msg
    return b"\x09" + struct.pack("<d", wall) + b"\x10" + _varint(step) + b"\x2a" + _varint(len(summary)) + summary


def _curves(index: int, steps: int) -> tuple[dict[str, object], str]:
    """The run's scalar curves (numpy arrays) and its kind: healthy, diverging or overfitting."""
    import numpy as np

    rng = np.random.default_rng(index)
    kind = "diverging" if index % 33 == 7 else "overfitting" if index % 33 == 21 else "healthy"
    t = np.arange(steps)
    lr = 3e-4 * 0.5 * (1 + np.cos(np.pi * t / steps))
    loss = 2.3 * np.exp(-t / (steps / rng.uniform(4, 8))) + rng.uniform(0.05, 0.3)
    loss *= 1 + 0.05 * rng.standard_normal(steps)
    grad = 1.0 + 0.5 * np.exp(-t / (steps / 5)) + 0.05 * rng.standard_normal(steps)
    evals = t[::100]
    val = np.interp(evals, t, loss) * 1.05 + 0.05
    if kind == "diverging":
        at = int(steps * rng.uniform(0.4, 0.8))
        loss[at:] = loss[at] * 10.0 ** np.minimum(np.arange(steps - at) / 20, 30)
        loss[at + 60 :] = np.nan
        grad[at:] *= 1e3
        val[evals >= at] = np.nan
    elif kind == "overfitting":
        half = len(evals) // 2
        val[half:] = val[half] + 0.02 * np.arange(len(evals) - half)
    return {"train/loss": loss, "train/learning_rate": lr, "train/grad_norm": grad, "val/loss": val}, kind


def write_run(directory: Path, index: int, steps: int) -> str:
    import numpy as np
    from tensorboardX.proto import event_pb2
    from tensorboardX.summary import histogram

    curves, kind = _curves(index, steps)
    tags = {name: b"\x0a" + _varint(len(name)) + name.encode() for name in curves}
    rng = np.random.default_rng(10_000 + index)
    t0 = 1_763_900_000.0 + index * 3600
    directory.mkdir(parents=True, exist_ok=True)
    records = [frame(b"\x09" + struct.pack("<d", t0) + _VERSION_EVENT)]
    loss, lr, grad, val = (curves[k].tolist() for k in ("train/loss", "train/learning_rate", "train/grad_norm", "val/loss"))
    for step in range(steps):
        wall = t0 + step * 0.2
        records.append(frame(_scalar_event(wall, step, tags["train/loss"], loss[step])))
        records.append(frame(_scalar_event(wall, step, tags["train/learning_rate"], lr[step])))
        if step % 2 == 0:
            records.append(frame(_scalar_event(wall, step, tags["train/grad_norm"], grad[step])))
        if step % 100 == 0:
            records.append(frame(_scalar_event(wall, step, tags["val/loss"], val[step // 100])))
        if step % 200 == 0:
            scale = grad[step] if np.isfinite(grad[step]) else 1e30
            for layer in range(HIST_LAYERS):
                values = rng.normal(scale=scale * (1 + 0.25 * layer), size=256)
                summary = histogram(f"grad/layer{layer}.weight", values, 30)
                records.append(frame(event_pb2.Event(wall_time=wall, step=step, summary=summary).SerializeToString()))
    (directory / f"events.out.tfevents.{int(t0)}.bench.{index}").write_bytes(b"".join(records))
    return kind


def _write_share(root: str, runs: int, steps: int, share: int, shares: int) -> None:
    for index in range(share, runs, shares):
        write_run(Path(root) / f"project_{index % PROJECTS:02d}" / f"run_{index:04d}", index, steps)


def generate(runs: int, steps: int) -> Path:
    """The cached logdir (written on every core the first time)."""
    from concurrent.futures import ProcessPoolExecutor

    root = OUT / f"scale-{runs}x{steps}"
    if (root / "done").is_file():
        return root / "logs"
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    started = time.perf_counter()
    shares = os.cpu_count() or 1
    with ProcessPoolExecutor(shares) as pool:
        list(pool.map(_write_share, *zip(*[(str(root / "logs"), runs, steps, s, shares) for s in range(shares)])))
    (root / "done").write_text("ok\n")
    size = sum(f.stat().st_size for f in (root / "logs").rglob("*tfevents*"))
    print(f"generated {root / 'logs'}: {runs} runs, {size / 1e6:,.0f} MB in {time.perf_counter() - started:.0f} s")
    return root / "logs"


def expected_events(runs: int, steps: int) -> tuple[int, int]:
    per_run = steps * 2 + (steps + 1) // 2 + (steps + 99) // 100
    return runs * per_run, runs * HIST_LAYERS * ((steps + 199) // 200)


# -- measuring a child process ----------------------------------------------------------------


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _descendants(pid: int) -> list[int]:
    out, stack = [], [pid]
    while stack:
        current = stack.pop()
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                children = Path(f"/proc/{current}/task/{task}/children").read_text().split()
                out += map(int, children)
                stack += map(int, children)
        except OSError:
            continue
    return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sampler(threading.Thread):
    """Peak RSS of one process, and of it plus its descendants (summed at the same instant), and
    the CPU time of its descendants as last seen: ``--jobs`` workers are children of the
    forkserver, which never waits for them, so the usual rusage of children misses them."""

    def __init__(self, pid: int, kill_above_mb: float | None = None) -> None:
        super().__init__(daemon=True)
        self.pid, self.kill_above_mb = pid, kill_above_mb
        self.main_mb = self.total_mb = 0.0
        self.descendant_cpu: dict[int, float] = {}
        self.killed = False
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            main = _rss_mb(self.pid)
            children = _descendants(self.pid)
            for child in children:
                try:
                    self.descendant_cpu[child] = _cpu_seconds(child)
                except (OSError, IndexError):
                    pass
            total = main + sum(_rss_mb(child) for child in children)
            self.main_mb, self.total_mb = max(self.main_mb, main), max(self.total_mb, total)
            if self.kill_above_mb and total > self.kill_above_mb:
                self.killed = True
                os.kill(self.pid, 9)


def measure(command: list[str], timeout: float, kill_above_mb: float | None = None) -> dict:
    """Wall and CPU time (the process and its reaped workers) and peak memory of one command."""
    before = os.times()
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sampler = Sampler(proc.pid, kill_above_mb)
    sampler.start()
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"error": f"did not finish in {timeout:.0f} s"}
    finally:
        sampler.stop.set()
        sampler.join()
    wall = time.perf_counter() - started
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    cpu += sum(sampler.descendant_cpu.values())  # workers (the forkserver itself, reaped and counted twice, idles)
    if sampler.killed:
        return {"error": f"stopped above {kill_above_mb:,.0f} MB resident", "peak_mb": sampler.total_mb, "wall": wall}
    if proc.returncode not in (0, 1):
        return {"error": f"exit {proc.returncode}: {err.strip()[-300:]}"}
    return {"wall": wall, "cpu": cpu, "peak_mb": sampler.main_mb, "peak_total_mb": sampler.total_mb}


def report_row(label: str, result: dict, anchor: dict | None = None) -> str:
    if "error" in result:
        return f"  {label:44} {result['error']}"
    ratio = ""
    if anchor and "wall" in anchor:
        ratio = f"  ({anchor['wall'] / result['wall']:.2f}x the speed of --jobs 1)"
    workers = "" if abs(result["peak_total_mb"] - result["peak_mb"]) < 1 else f", with workers {result['peak_total_mb']:,.0f} MB"
    return (f"  {label:44} {result['wall']:7.1f} s wall, {result['cpu']:7.1f} s CPU, peak {result['peak_mb']:,.0f} MB"
            f"{workers}{ratio}")  # fmt: skip


# -- watch ------------------------------------------------------------------------------------


def measure_watch(logdir: Path, idle_seconds: float, timeout: float) -> dict:
    """Time until the watcher has read everything (its "following" line comes after the initial
    scan), then its CPU and memory while nothing changes."""
    started = time.perf_counter()
    proc = subprocess.Popen([*CLI, "watch", str(logdir), "--format", "jsonl", "--no-state", "--fail-on", "never"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    sampler = Sampler(proc.pid)
    sampler.start()
    alerts = 0
    try:
        deadline = started + timeout
        for line in proc.stdout:
            alerts += '"type":"alert"' in line
            if '"following' in line:
                break
            if time.perf_counter() > deadline:
                return {"error": f"did not catch up in {timeout:.0f} s"}
        caught_up = time.perf_counter() - started
        catch_up_cpu = _cpu_seconds(proc.pid)
        drain = threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True)
        drain.start()
        time.sleep(2.0)
        cpu_before = _cpu_seconds(proc.pid)
        time.sleep(idle_seconds)
        idle_cpu = _cpu_seconds(proc.pid) - cpu_before
        rss = _rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        sampler.stop.set()
        sampler.join()
    return {"catch_up": caught_up, "catch_up_cpu": catch_up_cpu, "idle_cpu": idle_cpu, "rss_mb": rss,
            "peak_mb": sampler.main_mb, "alerts": alerts}  # fmt: skip


# -- tbparse ----------------------------------------------------------------------------------


def tbparse_child(logdir: str) -> None:
    from tbparse import SummaryReader

    reader = SummaryReader(logdir, extra_columns={"dir_name"})
    print(json.dumps({"scalars": len(reader.scalars), "histograms": len(reader.histograms)}))


def tbmon_read_child(logdir: str) -> None:
    from tbmon.monitor import read

    result = read(logdir)
    print(json.dumps({"scalars": len(result.scalars), "histograms": len(result.histograms)}))


def subset(logdir: Path, runs: int) -> Path:
    """The first ``runs`` runs of project_00 (symlinked), for an anchor that cannot load everything."""
    target = logdir.parent / f"subset-{runs}"
    if not target.is_dir():
        target.mkdir()
        for run in sorted((logdir / "project_00").iterdir())[:runs]:
            (target / run.name).symlink_to(run)
    return target


# -- main ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=4000, help="steps per run (4,000: 10,040 scalar events)")
    parser.add_argument("--short-steps", type=int, default=400, help="the same runs with fewer steps (memory check)")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--tbparse-max-mb", type=float, default=8000.0, help="stop tbparse above this resident size")
    parser.add_argument("--subset-runs", type=int, default=50, help="runs in the tbparse-vs-tbmon subset")
    parser.add_argument("--skip", default="", help="comma list of: report, short, html, watch, tbparse_subset, tbparse_full")
    parser.add_argument("--child", nargs=2, metavar=("WHAT", "LOGDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        {"tbparse": tbparse_child, "tbmon_read": tbmon_read_child}[args.child[0]](args.child[1])
        return
    skip = set(filter(None, args.skip.split(",")))
    from tbmon.monitor.fleet import cpu_count

    cores = cpu_count()
    logdir = generate(args.runs, args.steps)
    scalars, histograms = expected_events(args.runs, args.steps)
    size = sum(f.stat().st_size for f in logdir.rglob("*tfevents*"))
    print(f"\nlogdir: {args.runs} runs, {scalars:,} scalar events + {histograms:,} histograms, {size / 1e6:,.0f} MB; "
          f"{cores} cores (load average now {os.getloadavg()[0]:.1f})")  # fmt: skip
    print(f"python bench/scale.py {' '.join(sys.argv[1:])}".rstrip())

    results: dict[str, dict] = {}
    base = [*CLI, "report", str(logdir), "--fail-on", "never"]
    if "report" not in skip:
        print("\ntbmon report --format json")
        for jobs in (1, cores):
            label = f"json --jobs {jobs}"
            results[label] = measure([*base, "--format", "json", "-o", os.devnull, "--jobs", str(jobs)], args.timeout)
            print(report_row(label, results[label], results.get("json --jobs 1") if jobs > 1 else None))
        # Anchor, same run: the read alone holds every point; the report reads, analyses and drops a part at a time.
        results["read"] = measure([sys.executable, __file__, "--child", "tbmon_read", str(logdir)], args.timeout)
        print(report_row("tbmon read() alone", results["read"]))
        full = results["json --jobs 1"]
        if "peak_mb" in full and "peak_mb" in results["read"]:
            print(f"  report --jobs 1 peak memory: {full['peak_mb'] / results['read']['peak_mb']:.2f}x the read's "
                  f"(issue 14's target: <= 1.2x)")
    if "short" not in skip:
        short = generate(args.runs, args.short_steps)
        short_events = expected_events(args.runs, args.short_steps)[0]
        label = f"json --jobs 1, {short_events / scalars:.0%} of the events"
        results["short"] = measure([*CLI, "report", str(short), "--fail-on", "never", "--format", "json", "-o",
                                    os.devnull, "--jobs", "1"], args.timeout)  # fmt: skip
        print(report_row(label, results["short"]))
        full = results.get("json --jobs 1")
        if full and "peak_mb" in full and "peak_mb" in results["short"]:
            print(f"  memory with 10x the events: {full['peak_mb'] / results['short']['peak_mb']:.2f}x "
                  f"(same runs and tags)")  # fmt: skip
    if "html" not in skip:
        print("\ntbmon report --format html (charts for runs with alerts, default cap 50)")
        html = OUT / f"scale-{args.runs}x{args.steps}" / "report.html"
        for jobs in (1, cores):
            label = f"html --jobs {jobs}"
            results[label] = measure([*base, "--format", "html", "-o", str(html), "--jobs", str(jobs)], args.timeout)
            print(report_row(label, results[label], results.get("html --jobs 1") if jobs > 1 else None))
        if html.is_file():
            text = html.read_text(encoding="utf-8")
            charts = len(set(re.findall(r"aria-label='curves of run ([^']*)'", text)))
            print(f"  {html}: {html.stat().st_size / 1e6:.1f} MB, {charts} runs charted, "
                  f"{text.count('<tr>')} table rows")  # fmt: skip
    if "watch" not in skip:
        print(f"\ntbmon watch (inotify), catching up, then idle for {args.idle_seconds:g} s")
        empty = OUT / "scale-empty"
        empty.mkdir(parents=True, exist_ok=True)
        base_watch = measure_watch(empty, args.idle_seconds, 120)
        targets = [(logdir, "")]
        if "short" not in skip:
            targets.append((generate(args.runs, args.short_steps), ", 1/10 the events"))
        for target, note in targets:
            watch = measure_watch(target, args.idle_seconds, args.timeout)
            if "error" in watch:
                print(f"  {watch['error']}")
                continue
            per_run = (watch["rss_mb"] - base_watch["rss_mb"]) / args.runs * 1024
            print(f"  caught up on {args.runs} runs{note} in {watch['catch_up']:.1f} s ({watch['catch_up_cpu']:.1f} s "
                  f"CPU), {watch['alerts']} alerts, peak {watch['peak_mb']:,.0f} MB")
            print(f"    idle: {watch['idle_cpu'] * 1e3:.0f} ms CPU in {args.idle_seconds:g} s "
                  f"({watch['idle_cpu'] / args.idle_seconds * 100:.2f} % of a core); resident {watch['rss_mb']:,.0f} MB "
                  f"vs {base_watch['rss_mb']:,.0f} MB watching an empty logdir: {per_run:,.0f} kB per run")  # fmt: skip
    for name, target, runs in (("tbparse_subset", None, args.subset_runs), ("tbparse_full", logdir, args.runs)):
        if name in skip:
            continue
        target = target or subset(logdir, runs)
        print(f"\ntbparse SummaryReader(...).scalars + .histograms vs tbmon read(), {runs} runs")
        mine = measure([sys.executable, __file__, "--child", "tbmon_read", str(target)], args.timeout)
        theirs = measure([sys.executable, __file__, "--child", "tbparse", str(target)], args.timeout, args.tbparse_max_mb)
        print(report_row("tbmon read()", mine))
        print(report_row("tbparse", theirs))
        if "wall" in theirs and "wall" in mine and "error" not in theirs:
            print(f"  tbmon: {theirs['wall'] / mine['wall']:.1f}x faster, {mine['peak_mb'] / theirs['peak_mb']:.2f}x "
                  f"the memory")  # fmt: skip
        if name == "tbparse_full" and "report" not in skip and "error" not in theirs and "wall" in theirs:
            full = results["json --jobs 1"]
            print(f"  tbmon report --jobs 1 (read + analyze + summarise): {theirs['wall'] / full['wall']:.1f}x faster "
                  f"than tbparse's read alone, {full['peak_mb'] / theirs['peak_mb']:.2f}x the memory")  # fmt: skip


if __name__ == "__main__":
    main()
