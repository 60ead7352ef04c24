"""Analyzer throughput: ``Engine.feed`` over a 10 M-event workload, in one batch and in watch-sized chunks.

    .venv/bin/python bench/analyzers.py                    # 10,000,000 scalar events (~1 min on 2 cores)
    .venv/bin/python bench/analyzers.py --events 1000000   # quicker, scaled down
    .venv/bin/python bench/analyzers.py --steps-only       # the live feed alone (a step at a time vs one batch)
    .venv/bin/python bench/analyzers.py --steps-only --by-rule --step-events 20000  # and each rule's share
    .venv/bin/python bench/analyzers.py --steps-only --tags-per-step 0   # only the 3-point feed

Issue 3 makes rules take numpy chunks per tag "so a 10-million-event report stays fast", and
requires that one batch and many small chunks give the same alerts. This measures both.

Workload (numpy, in memory, no files): ``RUNS`` runs of equal length, each logging per step a
noisy training loss decaying as a power law, a warm-up + cosine learning rate and the total
gradient norm; a validation loss every ``EVAL_EVERY`` steps; gradient histograms of
``len(LAYERS)`` parameters every ``HIST_EVERY`` steps. One run diverges (its lr jumps x10 at
55 % of the run, the loss and gradients grow until they overflow to NaN, and it keeps logging
NaN), one overfits (validation loss turns up while training loss keeps falling); the rest are
healthy.

The live feed is timed on that shape (~3 points a step) and on a wider one, ``--tags-per-step``
scalars a step (default 20: the same three plus per-layer gradient norms ``grad_norm/<layer>``, as a
run that logs 20 scalars every step; the validation loss at its cadence on top): issue 14's "per
20-point feed" measured as one feed of 20 points, not extrapolated from 3.

Feeds, each into a fresh ``Engine()`` in its own child process:

* one batch per run: what ``tbmon report`` (``analyze()``) does;
* ``--chunk``-point chunks per run, runs interleaved poll by poll: what ``tbmon watch`` feeds
  while runs are written;
* one training step at a time, on a smaller workload of the same shape (``--step-events``):
  the worst case of a live watcher; its one-batch feed is timed too, for the same-run ratio.

The alerts, as ``(run, kind, tag, step, severity)``, must be identical across the feeds of one
workload (asserted). Only the ``feed`` calls are timed (building chunks is the reader's work).
"events/s" counts scalar + histogram points. Peak memory is the child's peak RSS during the
feed (VmHWM, reset once the workload is built) and how far it rose above the workload.

Anchor, same run: tbmon's own reader, ``tbmon.monitor.read()``, on bench/read.py's cached
2 M-scalar + 4 k-histogram log (built on first use), then ``analyze()`` on that ``ReadResult``:
what a ``tbmon report`` spends analysing compared with reading.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.proc_status import status_mb  # noqa: E402
from bench.read import OUT, generate  # noqa: E402  (the anchor corpus: same generator and cache)
from tbmon.analyzers import AnalyzerConfig, Engine, analyze  # noqa: E402
from tbmon.analyzers.alerts import Alert  # noqa: E402
from tbmon.analyzers.registry import available_rules  # noqa: E402
from tbmon.analyzers.series import HistogramSeries, RunBatch, ScalarSeries  # noqa: E402
from tests.scenarios.replay import split, step_bounds  # noqa: E402  (how the quality replay cuts runs)

RUNS = 8
EVAL_EVERY = 100
HIST_EVERY = 200
LAYERS = (  # (parameter, element count, its gradient norm relative to the total norm)
    ("embed.weight", 3_276_800, 0.4), ("blocks.0.attn.weight", 1_048_576, 0.6),
    ("blocks.0.attn.bias", 1_024, 0.9), ("blocks.0.mlp.weight", 4_194_304, 0.5),
    ("blocks.1.attn.weight", 1_048_576, 0.7), ("blocks.1.mlp.weight", 4_194_304, 0.6),
    ("head.weight", 3_276_800, 1.0), ("head.bias", 32_000, 1.2),
)
BUCKETS = np.linspace(-4.0, 4.0, 31)[1:]  # right edges, in units of the RMS


# -- workload ------------------------------------------------------------------------------


def _bucket_profile() -> np.ndarray:
    """Share of a normal sample per bucket (the last bucket takes the right tail)."""
    sample = np.random.default_rng(1).normal(size=200_000)
    counts = np.histogram(sample, bins=np.concatenate([[-np.inf], BUCKETS[:-1], [np.inf]]))[0]
    return counts / counts.sum()


def run_batch(name: str, steps: int, kind: str, rng: np.random.Generator, tags_per_step: int = 3) -> RunBatch:
    """One run's whole stream: ``kind`` is "healthy", "diverges" or "overfits"; ``tags_per_step - 3``
    per-layer gradient norms are logged beside the loss, learning rate and total norm."""
    step = np.arange(steps, dtype=np.int64)
    t = step / steps
    decay = (1.0 + 2000.0 * t) ** -0.5  # power law: fast at first, slow for most of the run
    clean = 0.1 + 2.2 * decay
    loss = clean * (1.0 + rng.normal(0.0, 0.06, steps))
    warm = max(steps // 50, 1)
    lr = 3e-4 * np.minimum((step + 1) / warm, 0.5 * (1.0 + np.cos(np.pi * t)))
    gnorm = (0.3 + 2.0 * decay) * rng.lognormal(0.0, 0.25, steps)
    evals = step[EVAL_EVERY - 1 :: EVAL_EVERY]
    val = 1.08 * clean[evals] * (1.0 + rng.normal(0.0, 0.01, evals.size))
    if kind == "diverges":
        onset = int(0.55 * steps)
        growth = np.exp(np.clip((step - onset) / 150.0, 0.0, 40.0))
        lr[onset:] *= 10.0
        loss, gnorm = loss * growth, gnorm * growth
        loss[growth > 1e12], gnorm[growth > 1e12] = np.nan, np.nan  # overflowed
        val = val * growth[evals]
        val[growth[evals] > 1e12] = np.nan
    elif kind == "overfits":
        val = val + 0.8 * np.clip(t[evals] - 0.35, 0.0, None)
    is_eval = np.zeros(steps, dtype=np.int64)
    is_eval[evals] = 1
    is_hist = (step % HIST_EVERY == 0).astype(np.int64)
    layers = max(tags_per_step - 3, 0)
    per_step = 3 + layers + is_eval + len(LAYERS) * is_hist  # loss, lr, grad norm, [layer norms], [val], [hists]
    base = np.cumsum(per_step) - per_step  # seq of each step's first point: arrival order
    wall = 1_763_900_000.0 + 0.12 * step

    def scalar(tag: str, at: np.ndarray, offset: np.ndarray | int, value: np.ndarray) -> ScalarSeries:
        return ScalarSeries(tag, base[at] + offset, step[at], wall[at], value)

    # Per-layer norms: a fixed share of the total each (squares summing to about its square), jittered.
    shares = np.sqrt(rng.dirichlet(np.ones(layers))) if layers else np.zeros(0)
    per_layer = tuple(
        scalar(f"grad_norm/layers.{k}.weight", step, 3 + k, share * gnorm * rng.lognormal(0.0, 0.1, steps))
        for k, share in enumerate(shares)
    )
    scalars = (
        scalar("train/loss", step, 0, loss), scalar("train/learning_rate", step, 1, lr),
        scalar("train/grad_norm", step, 2, gnorm), *per_layer, scalar("val/loss", evals, 3 + layers, val),
    )
    at = step[is_hist == 1]
    profile = _bucket_profile()
    histograms = []
    for k, (param, size, scale) in enumerate(LAYERS):
        rms = scale * gnorm[at] / np.sqrt(size)
        limits = rms[:, None] * BUCKETS[None, :]
        counts = np.broadcast_to(profile * size, limits.shape)
        histograms.append(HistogramSeries(
            tag=f"grad/{param}", seq=base[at] + 3 + layers + is_eval[at] + k, step=at, wall_time=wall[at],
            min=-4.5 * rms, max=4.5 * rms, num=np.full(at.size, float(size)),
            sum=size * rms * rng.normal(0.0, 1e-3, at.size), sum_squares=size * rms**2,
            bucket_limits=tuple(limits), bucket_counts=tuple(counts),
        ))
    return RunBatch(run=name, scalars=scalars, histograms=tuple(histograms))


def workload(events: int, seed: int = 0, tags_per_step: int = 3) -> list[RunBatch]:
    """``RUNS`` runs holding about ``events`` scalar events together at 3 tags a step (a wider
    ``tags_per_step`` keeps the same steps: more points per step, not fewer steps)."""
    steps = max(round(events / RUNS / (3 + 1 / EVAL_EVERY)), 2 * HIST_EVERY)
    rng = np.random.default_rng(seed)
    kinds = ["healthy"] * RUNS
    kinds[1], kinds[2] = "diverges", "overfits"
    return [run_batch(f"sweep/run{k}_{kind}", steps, kind, rng, tags_per_step) for k, kind in enumerate(kinds)]


def points(batches: Iterable[RunBatch]) -> tuple[int, int]:
    """(scalar points, histogram points)."""
    batches = list(batches)
    return (sum(len(s) for b in batches for s in b.scalars), sum(len(h) for b in batches for h in b.histograms))


# -- chunking: what a watcher's polls deliver ----------------------------------------------------


def every_n_points(size: int) -> Callable[[RunBatch], np.ndarray]:
    def bounds(batch: RunBatch) -> np.ndarray:
        end = sum(points([batch]))  # seq runs 0..end-1 in a generated run
        return np.append(np.arange(0, end, size), end)

    return bounds


def polls(batches: list[RunBatch], bounds: Callable[[RunBatch], np.ndarray]) -> Iterator[RunBatch]:
    """Every run's chunks, one of each run per poll, as ``tbmon watch`` interleaves them."""
    streams = [split(b, bounds(b)) for b in batches]
    for poll in itertools.zip_longest(*streams):
        yield from (c for c in poll if c is not None)


# -- measuring, each feed in a fresh child process --------------------------------------------


class Phase:
    """Wall and CPU time of a phase; RSS at its start and its peak RSS (Linux).

    The peak is reset at the start (VmHWM, through ``/proc/self/clear_refs``), so building the
    workload does not count. Each phase runs in a fresh process: memory an earlier phase freed
    but kept would hide this one's growth.
    """

    def __enter__(self) -> Phase:
        Path("/proc/self/clear_refs").write_text("5")
        self.rss_mb = status_mb("VmRSS")
        self.t, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall, self.cpu = time.perf_counter() - self.t, time.process_time() - self.c
        self.peak_mb = status_mb("VmHWM")

    def figures(self) -> dict[str, float]:
        return {"wall": self.wall, "cpu": self.cpu, "rss_mb": self.rss_mb, "peak_mb": self.peak_mb}


def feed(batches: Iterable[RunBatch], rule: str | None = None) -> dict[str, Any]:
    """Feed a fresh engine (all rules, or only ``rule``); only its ``feed`` calls are timed."""
    engine = Engine(AnalyzerConfig.from_mapping({"enable": [rule]}) if rule else None)
    alerts: list[Alert] = []
    wall = cpu = 0.0
    n = 0
    with Phase() as phase:
        for batch in batches:
            t, c = time.perf_counter(), time.process_time()
            alerts += engine.feed(batch)
            wall += time.perf_counter() - t
            cpu += time.process_time() - c
            n += 1
    return {**phase.figures(), "wall": wall, "cpu": cpu, "feeds": n,
            "alerts": sorted([a.run, a.kind, a.tag, a.step, a.severity] for a in alerts)}


def anchor_log(read_events: int) -> Path:
    """bench/read.py's log of ``read_events`` scalar events (4 histograms every 100 steps), built if missing."""
    logdir = OUT / f"read_{read_events}"
    path = logdir / "events.out.tfevents.1763900000.bench"
    if not path.exists():
        t = time.perf_counter()
        generate(path, read_events, 100)
        print(f"generated {path} in {time.perf_counter() - t:.1f} s", flush=True)
    return logdir


def child(case: str, events: int, chunk: int, tags_per_step: int = 3) -> dict[str, Any]:
    """One measurement: ``case`` is batch / chunks / steps (over ``workload(events)``) or anchor."""
    if case == "anchor":
        from tbmon.monitor import read

        with Phase() as r:
            result = read(str(anchor_log(events)))
        with Phase() as a:
            alerts = analyze(result)
        return {"read": r.figures(), "analyze": a.figures(), "points": sum(points(result.batches)),
                "alerts": len(alerts)}
    runs = workload(events, tags_per_step=tags_per_step)
    scalars, hists = points(runs)
    case, _, rule = case.partition(":")  # "steps:divergence": that rule alone
    bounds = {"batch": None, "chunks": every_n_points(chunk), "steps": step_bounds}[case]
    return {**feed(runs if bounds is None else polls(runs, bounds), rule or None), "points": scalars + hists,
            "workload": f"{len(runs)} runs x {len(runs[0].scalars[0]):,} steps = {scalars:,} scalar + {hists:,} "
                        "histogram points"}


def run_child(case: str, events: int, chunk: int = 0, tags_per_step: int = 3) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", case, str(events), str(chunk), str(tags_per_step)],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# -- reporting -----------------------------------------------------------------------------------


def show(label: str, r: dict[str, Any]) -> None:
    print(
        f"  {label:20s} {r['feeds']:>7,} feeds {r['wall']:7.2f} s (cpu {r['cpu']:6.2f} s) "
        f"{r['points'] / r['wall']:11,.0f} events/s {r['wall'] / r['feeds'] * 1e6:9.0f} us/feed  "
        f"peak RSS {r['peak_mb']:5.0f} MB ({r['peak_mb'] - r['rss_mb']:+4.0f} MB over the workload)",
        flush=True,
    )


def compare(events: int, cases: list[tuple[str, str]], chunk: int, tags_per_step: int = 3) -> list[dict[str, Any]]:
    """Feed ``workload(events)`` each way; assert the alerts agree. Returns each feed's figures."""
    results = []
    for label, case in cases:
        results.append((label, run_child(case, events, chunk, tags_per_step)))
        if len(results) == 1:
            print(f"workload: {results[0][1]['workload']}")
        show(*results[-1])
    (first, a), *others = results
    for label, b in others:
        assert b["alerts"] == a["alerts"], (
            f"alerts differ between {first!r} and {label!r}:\n"
            f"  only in {first!r}: {[x for x in a['alerts'] if x not in b['alerts']]}\n"
            f"  only in {label!r}: {[x for x in b['alerts'] if x not in a['alerts']]}"
        )
    kinds = collections.Counter(f"{kind} ({severity})" for _, kind, _, _, severity in a["alerts"])
    print(f"  alerts identical across {', '.join(label for label, _ in results)}: {len(a['alerts'])} "
          f"(run, kind, tag, step, severity): " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    return [r for _, r in results]


def live_figures(batch: dict[str, Any], steps: dict[str, Any]) -> None:
    """A step at a time against one batch: CPU per feed, per 20 points, and the per-point ratio (issue 14)."""
    per_feed = steps["cpu"] / steps["feeds"]
    points_per_feed = steps["points"] / steps["feeds"]
    per_point_batch = batch["cpu"] / batch["points"]
    print(f"  a step at a time: {per_feed * 1e6:.0f} us CPU per feed of {points_per_feed:.1f} points "
          f"({per_feed / points_per_feed * 20 * 1e3:.2f} ms per 20 points); per point "
          f"{per_feed / points_per_feed / per_point_batch:.0f}x the CPU of the one-batch feed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000, help="scalar events in the main workload")
    ap.add_argument("--chunk", type=int, default=1_000, help="points per chunk in the watch-sized feed")
    ap.add_argument("--step-events", type=int, default=100_000, help="scalar events fed a step at a time")
    ap.add_argument("--read-events", type=int, default=2_000_000, help="scalar events in bench/read.py's log")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the anchor read + analyze (median kept)")
    ap.add_argument("--steps-only", action="store_true", help="only the step-at-a-time feed against one batch (quick)")
    ap.add_argument("--by-rule", action="store_true", help="also a step at a time with each rule alone: CPU per feed")
    ap.add_argument("--tags-per-step", type=int, default=20, help="the live feed again with this many scalars a "
                    "step (the loss, lr, total norm and per-layer grad norms; 0 or 3: only the 3-tag shape)")
    ap.add_argument("--child", nargs=4, metavar=("CASE", "EVENTS", "CHUNK", "TAGS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), int(args.child[2]), int(args.child[3]))))
        return
    print(f"rules: {', '.join(available_rules())}")
    for tags in [3] + ([args.tags_per_step] if args.tags_per_step > 3 else []):
        print(f"live feed, {tags} scalar tags a step:")
        live_figures(*compare(args.step_events, [("one batch per run", "batch"), ("a step at a time", "steps")],
                              args.chunk, tags))
        if args.by_rule:
            for rule in available_rules():
                r = run_child(f"steps:{rule}", args.step_events, tags_per_step=tags)
                print(f"    {rule:20s} alone (with the engine): {r['cpu'] / r['feeds'] * 1e6:5.0f} us CPU per feed")
    if args.steps_only:
        return
    whole = compare(args.events, [("one batch per run", "batch"), (f"{args.chunk:,}-point chunks", "chunks")],
                    args.chunk)[0]

    anchor_log(args.read_events)  # built once, outside the timed children
    runs = sorted((run_child("anchor", args.read_events) for _ in range(args.repeat)),
                  key=lambda r: r["read"]["wall"])
    mid = runs[len(runs) // 2]
    read_, analyze_, n = mid["read"], mid["analyze"], mid["points"]
    print(f"anchor: bench/read.py's log, {n:,} points, run with the median read() time of {args.repeat}")
    print(f"  {'tbmon.monitor.read()':20s} {read_['wall']:7.2f} s (cpu {read_['cpu']:6.2f} s) "
          f"{n / read_['wall']:11,.0f} events/s  peak RSS {read_['peak_mb']:5.0f} MB")
    print(f"  {'analyze(ReadResult)':20s} {analyze_['wall']:7.2f} s (cpu {analyze_['cpu']:6.2f} s) "
          f"{n / analyze_['wall']:11,.0f} events/s  peak RSS {analyze_['peak_mb']:5.0f} MB "
          f"({analyze_['peak_mb'] - analyze_['rss_mb']:+.0f} MB over the ReadResult), {mid['alerts']} alerts")
    print(
        f"analysis costs {100 * analyze_['wall'] / read_['wall']:.0f}% of the read time "
        f"({100 * analyze_['cpu'] / read_['cpu']:.0f}% in CPU time): read/analyze = "
        f"{read_['wall'] / analyze_['wall']:.1f}x"
    )
    rate, read_rate = whole["points"] / whole["wall"], n / read_["wall"]
    print(f"Engine.feed, one batch per run, {whole['points']:,} points: {rate:,.0f} events/s = "
          f"{rate / read_rate:.2f}x read()'s events/s on the anchor log")


if __name__ == "__main__":
    main()
