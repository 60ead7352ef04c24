"""Read throughput and peak memory: tbmon's reader vs tbparse vs TensorBoard vs the byte floor.

    python bench/read.py                 # ~2,000,000 scalar events + 4,000 histograms
    python bench/read.py --events 200000 # quicker, scaled down
    python bench/read.py --events 200000 --hist-every 1 --methods floor,tbmon_file  # histogram-heavy
    python bench/read.py --tail 2000     # live tail: cost of read_new() per appended record
    python bench/read.py --shape tf2 --events 500000   # TF2 tensor scalars (tf.summary / Keras)
    python bench/read.py --methods tbmon_file,rustboard  # against TensorBoard's Rust data server

The log is generated once and cached under ``bench/out/`` (gitignored). Its records are
serialised with tensorboardX's protobuf classes and framed exactly as tensorboardX's
``add_scalar``/``add_histogram`` write them (histograms built by tensorboardX's own
``summary.histogram`` with its default bins), so TensorBoard and tbparse read it as usual.
``--shape tf2`` writes every scalar as TF2's C++ writer does (``tf.summary.scalar``, Keras): a
DT_FLOAT shape-[] ``TensorProto`` in ``tensor_content``, with the ``scalars`` plugin metadata
on every event (TensorFlow itself is not installed).

``rustboard`` is TensorBoard's Rust data server driven over gRPC until every point is in the
client (``bench/rustboard.py``); its CPU time is the server's plus the client's.

Every method runs in its own subprocess and reports its own peak RSS (VmHWM).
"events/s" counts scalar points + histogram points returned, over the in-process read time
(wall clock). On a shared machine the CPU-time ratio is printed too: it is less sensitive to
other processes competing for the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.proc_status import status_mb  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
SCALAR_TAGS = 20
HIST_TAGS = 4


def _record(event) -> bytes:
    """One TFRecord, framed as tensorboardX writes it."""
    return frame(event.SerializeToString())


def frame(data: bytes) -> bytes:
    """TFRecord framing of one serialised event: length, its masked CRC, data, its masked CRC."""
    from tbmon.monitor.records import masked_crc

    head = len(data).to_bytes(8, "little")
    return b"".join((head, masked_crc(head).to_bytes(4, "little"), data, masked_crc(data).to_bytes(4, "little")))


def _tf2_event(tag: str, value: float, step: int, wall: float) -> bytes:
    """An event as TF2's C++ writer stores ``tf.summary.scalar``: tensor_content + metadata
    (tensorboard's own protos: tensorboardX's lack ``SummaryMetadata.data_class``)."""
    import numpy as np
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2

    tensor = tensor_pb2.TensorProto(dtype=1, tensor_content=np.float32(value).tobytes())
    tensor.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto())
    v = summary_pb2.Summary.Value(tag=tag, tensor=tensor)
    v.metadata.plugin_data.plugin_name = "scalars"
    v.metadata.data_class = summary_pb2.DATA_CLASS_SCALAR  # as tensorboard's scalar summary sets it
    return _record(event_pb2.Event(wall_time=wall, step=step, summary=summary_pb2.Summary(value=[v])))


def generate(path: Path, events: int, hist_every: int, shape: str = "simple") -> None:
    """Write ``events`` scalar events (20 tags per step) plus 4 histograms every ``hist_every`` steps."""
    import numpy as np
    from tensorboardX.proto import event_pb2, summary_pb2
    from tensorboardX.summary import histogram

    # tensorboardX's default 'tensorflow' bins (SummaryWriter.default_bins): ~1.5k edges
    edges = 1e-12 * 1.1 ** np.arange(int(np.ceil(np.log(1e32) / np.log(1.1))))
    bins = np.concatenate([-edges[::-1], [0.0], edges]).tolist()
    rng = np.random.default_rng(0)
    tags = [f"train/metric_{i:02d}" if i else "train/loss" for i in range(SCALAR_TAGS)]
    steps = max(events // SCALAR_TAGS, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    t0 = 1_763_900_000.0
    with open(tmp, "wb") as f:
        f.write(_record(event_pb2.Event(wall_time=t0, file_version="brain.Event:2")))
        out = []
        for step in range(steps):
            wall = t0 + step * 0.05
            vals = rng.normal(size=SCALAR_TAGS).astype(np.float32) + 1.0 / (1 + step)
            for tag, v in zip(tags, vals.tolist()):
                if shape == "tf2":
                    out.append(_tf2_event(tag, v, step, wall))
                    continue
                s = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=v)])
                out.append(_record(event_pb2.Event(wall_time=wall, step=step, summary=s)))
            if step % hist_every == 0:
                for h in range(HIST_TAGS):
                    summ = histogram(f"grad/layer{h}", rng.normal(scale=10.0 ** -h, size=1000), bins)
                    out.append(_record(event_pb2.Event(wall_time=wall, step=step, summary=summ)))
            if len(out) > 50_000:
                f.write(b"".join(out))
                out.clear()
        f.write(b"".join(out))
    os.replace(tmp, path)


# -- methods, each run in a child process ----------------------------------------------


def m_floor(logdir: Path) -> int:
    with open(next(logdir.iterdir()), "rb", buffering=0) as f:
        while f.read(4 << 20):
            pass
    return 0


def m_tbmon_file(logdir: Path, **options: str) -> int:
    from tbmon.monitor.event_file import EventFileReader

    chunk = EventFileReader(next(logdir.iterdir()), **options).read_new()
    return sum(len(s) for s in chunk.scalars) + sum(len(h) for h in chunk.histograms)


def m_tbmon_read(logdir: Path, **options: str) -> int:
    from tbmon.monitor import read

    result = read(str(logdir), **options)
    return len(result.scalars) + len(result.histograms)


def m_tbmon_imports(logdir: Path) -> int:
    """No read: the peak RSS of the interpreter with what ``read()`` imports (pandas too), the
    baseline under the ``tbmon_read`` rows' peaks."""
    import pandas  # noqa: F401

    from tbmon.monitor import read  # noqa: F401

    return 0


def m_tbparse(logdir: Path) -> int:
    """Scalars, TF2 tensors (where tbparse puts ``tf.summary`` scalars) and histograms."""
    from tbparse import SummaryReader

    reader = SummaryReader(str(logdir))
    return len(reader.scalars) + len(reader.tensors) + len(reader.histograms)


def m_accumulator(logdir: Path) -> int:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(next(logdir.iterdir())), size_guidance={k: 0 for k in ("scalars", "histograms", "tensors", "images", "audio", "compressedHistograms")})
    ea.Reload()
    tags = ea.Tags()
    return sum(len(ea.Scalars(t)) for t in tags["scalars"]) + sum(len(ea.Histograms(t)) for t in tags["histograms"]) + sum(
        len(ea.Tensors(t)) for t in tags["tensors"]  # TF2 tensor scalars land here
    )


METHODS = {
    "floor": m_floor,
    "tbmon_file": lambda logdir: m_tbmon_file(logdir, histograms="full"),
    "tbmon_file_summary": lambda logdir: m_tbmon_file(logdir, histograms="summary"),
    "tbmon_read": lambda logdir: m_tbmon_read(logdir, histograms="summary"),
    "tbmon_read_full": lambda logdir: m_tbmon_read(logdir, histograms="full"),
    "tbmon_imports": m_tbmon_imports,
    # another tbmon version (--base): its defaults, no options it may not know
    "base_file": m_tbmon_file,
    "base_read": m_tbmon_read,
    "tbparse": m_tbparse,
    "accumulator": m_accumulator,
}


def child(method: str, logdir: Path) -> None:
    if method == "rustboard":  # charges the server process's CPU too
        from bench.rustboard import read_logdir

        print(json.dumps(read_logdir(logdir)))
        return
    t, cpu = time.perf_counter(), time.process_time()
    count = METHODS[method](logdir)
    seconds, cpu_seconds = time.perf_counter() - t, time.process_time() - cpu
    # this process's own peak RSS (a fresh address space since exec)
    print(json.dumps({"seconds": seconds, "cpu": cpu_seconds, "count": count, "peak_mb": status_mb("VmHWM")}))


def run_child(method: str, logdir: Path, timeout: float, base: Path | None = None) -> dict:
    start = time.perf_counter()
    env = dict(os.environ)
    if method.startswith("base_"):
        if base is None:
            return {"method": method, "error": "needs --base"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(base), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", method, str(logdir)], stdout=subprocess.PIPE, text=True, env=env
    )
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    out = proc.stdout.read()
    proc.wait()
    timer.cancel()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        why = f"timed out after {timeout:.0f} s" if wall >= timeout else f"exit {proc.returncode}"
        return {"method": method, "error": why}
    res = json.loads(out.strip().splitlines()[-1])
    res.update(method=method, wall=wall)
    return res


def tail_latency(appends: int) -> None:
    """Cost of one ``read_new()`` after a writer appended one scalar record (a live tail).

    Appends tensorboardX-layout records one at a time to a fresh file and times the call
    that picks each up, plus an idle call (nothing new) after it.
    """
    import statistics
    import tempfile

    from tensorboardX.proto import event_pb2, summary_pb2

    from tbmon.monitor.event_file import EventFileReader
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.out.tfevents.1.tail"
        path.write_bytes(_record(event_pb2.Event(wall_time=1.0, file_version="brain.Event:2")))
        reader = EventFileReader(path)
        reader.read_new()
        new, idle = [], []
        for step in range(appends):
            s = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="train/loss", simple_value=1.0)])
            with open(path, "ab") as f:
                f.write(_record(event_pb2.Event(wall_time=1.0 + step, step=step, summary=s)))
            t = time.perf_counter()
            assert reader.read_new().records == 1
            new.append(time.perf_counter() - t)
            t = time.perf_counter()
            reader.read_new()
            idle.append(time.perf_counter() - t)
    q = statistics.quantiles(new, n=100)
    print(
        f"tail: read_new() after a 1-record append: median {statistics.median(new) * 1e6:.0f} us, "
        f"p99 {q[98] * 1e6:.0f} us; idle call: median {statistics.median(idle) * 1e6:.0f} us "
        f"({appends} appends)"
    )


def _median_run(method: str, logdir: Path, args: argparse.Namespace) -> dict:
    """Runs that finish in under ``--long`` seconds are repeated (``--repeat``) and the median
    run by CPU time is kept: a few seconds on a shared machine are easily disturbed by one
    neighbour, while minute-long anchor runs average such noise out on their own."""
    runs = [run_child(method, logdir, args.timeout, args.base)]
    while len(runs) < args.repeat and "error" not in runs[-1] and runs[-1]["wall"] < args.long:
        runs.append(run_child(method, logdir, args.timeout, args.base))
    runs.sort(key=lambda r: r.get("cpu", float("inf")))  # CPU time: what other load disturbs least
    best = dict(runs[len(runs) // 2])
    best["runs"] = len(runs)
    best["cpus"] = [r["cpu"] for r in runs if "cpu" in r]
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2_000_000, help="scalar events to generate")
    ap.add_argument("--hist-every", type=int, default=100, help="steps between histogram events (4 tags)")
    ap.add_argument("--methods", default="floor,tbmon_file,tbmon_read,tbparse,accumulator,rustboard")
    ap.add_argument("--shape", choices=("simple", "tf2"), default="simple", help="scalar encoding: simple_value (tensorboardX, torch) or TF2 tensor_content")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per method")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each method shorter than --long seconds (median kept)")
    ap.add_argument("--base", type=Path, help="directory holding a tbmon/ package of another version (e.g. the main branch, git archive'd): methods base_file, base_read run it")
    ap.add_argument("--long", type=float, default=10.0, help="a method whose run takes longer is not repeated")
    ap.add_argument("--tail", type=int, metavar="N", help="instead: time read_new() over N single-record appends")
    ap.add_argument("--child", nargs=2, metavar=("METHOD", "LOGDIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    if args.tail:
        tail_latency(args.tail)
        return
    logdir = OUT / f"read_{args.events}" if args.hist_every == 100 else OUT / f"read_{args.events}_h{args.hist_every}"
    if args.shape != "simple":
        logdir = logdir.with_name(f"{logdir.name}_{args.shape}")
    path = logdir / "events.out.tfevents.1763900000.bench"
    if not path.exists():
        t = time.perf_counter()
        generate(path, args.events, args.hist_every, args.shape)
        print(f"generated {path} in {time.perf_counter() - t:.1f} s")
    size_mb = path.stat().st_size / 1e6
    print(f"log: {path} ({size_mb:.1f} MB)")
    rows = []
    for method in args.methods.split(","):
        if method == "tbmon_read":
            try:
                from tbmon.monitor import read  # noqa: F401  (provided by the logdir layer)
            except ImportError:
                print("tbmon_read: skipped (tbmon.monitor.read not available)")
                continue
        rows.append(_median_run(method, logdir, args))
        print(_fmt(rows[-1], size_mb), flush=True)
    by = {r["method"]: r for r in rows if "error" not in r}
    for mine in ("tbmon_file", "tbmon_file_summary", "tbmon_read", "tbmon_read_full"):
        for anchor in ("tbparse", "accumulator", "rustboard", "base_file" if "file" in mine else "base_read"):
            if mine in by and anchor in by:
                a, b = by[mine], by[anchor]
                print(
                    f"{mine} vs {anchor}: {b['seconds'] / a['seconds']:.1f}x faster "
                    f"({b['cpu'] / a['cpu']:.1f}x in CPU time), "
                    f"{a['peak_mb'] / b['peak_mb']:.2f}x the peak memory"
                )
        if mine in by:
            above = f", {(by[mine]['peak_mb'] - by['tbmon_imports']['peak_mb']) / size_mb:.2f}x above the imports' baseline" if "tbmon_imports" in by and mine.startswith("tbmon_read") else ""
            print(f"{mine} peak memory: {by[mine]['peak_mb'] / size_mb:.2f}x the file size{above}")


def _fmt(r: dict, size_mb: float) -> str:
    if "error" in r:
        return f"{r['method']:12s} {r['error']}"
    rate = f"{r['count'] / r['seconds']:12,.0f}" if r["count"] else f"{'-':>12s}"  # floor decodes nothing
    return (
        f"{r['method']:12s} {r['seconds']:7.2f} s (cpu {r['cpu']:6.2f} s, process {r['wall']:6.2f} s)  "
        f"{rate} events/s  {size_mb / r['seconds']:8.1f} MB/s  peak {r['peak_mb']:7.1f} MB  "
        f"({r['count']:,} points, median of {r['runs']} runs by CPU: {', '.join(f'{c:.2f}' for c in r['cpus'])} s)"
    )


if __name__ == "__main__":
    main()
