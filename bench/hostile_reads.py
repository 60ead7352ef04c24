"""Costs that file contents choose (issue 15, item 9), each against an anchor in the same run.

    python bench/hostile_reads.py                     # 100,000 tags, 20 MB tag, 200 MB histogram
    python bench/hostile_reads.py --tags 20000 --tag-mb 2 --hist-mb 50   # quicker
    python bench/hostile_reads.py --hist-mb 500       # the issue's 500 MB record (needs ~2 GB free)

- many tags: one file of N scalar records over N distinct tags (tensorboardX ``add_scalar``),
  read by ``EventFileReader`` and by ``tbmon.monitor.read``; anchor: the same number of records
  over 20 tags. Printed: CPU seconds and the ratio.
- huge tag: tensorboardX writes a 20 MB tag (plus a normal loss) into a run; ``tbmon watch
  --once`` saves its state file. Printed: state file bytes, and the tag length tbmon keeps;
  anchor: the same run without the long tag.
- huge histogram: one ``HistogramProto`` record of the given size (framed exactly as
  tensorboardX frames it; the payload is assembled with numpy because building it through the
  protobuf API needs several times its size; the bench checks it against upb's serialisation
  of a small one). Printed: peak RSS growth of the read in its own process (VmHWM), as a
  multiple of the record size; anchor: the same record decoded by upb (the path every other
  record takes).

Files are generated under ``bench/out/hostile/`` (gitignored) and reused.
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).resolve().parent / "out" / "hostile"


def many_tags(n_tags: int, n_records: int) -> Path:
    from tensorboardX import SummaryWriter

    directory = OUT / f"tags-{n_tags}-{n_records}" / "run"
    if directory.exists() and any(directory.iterdir()):
        return directory
    directory.mkdir(parents=True)
    writer = SummaryWriter(str(directory), max_queue=100_000, flush_secs=3600)
    for i in range(n_records):
        writer.add_scalar(f"metric/{i % n_tags:06d}", float(i), i // n_tags, walltime=1.7e9 + i)
    writer.close()
    return directory


_READ_TAGS = """
import sys, time, json
from pathlib import Path
from tbmon.monitor.event_file import EventFileReader
from tbmon.monitor import read
(path,) = Path(sys.argv[1]).iterdir()
t = time.process_time()
reader = EventFileReader(path)
tags = set()
while (chunk := reader.read_new(max_bytes=1 << 20)).bytes:
    tags.update(s.tag for s in chunk.scalars)
file_cpu = time.process_time() - t
t = time.process_time()
result = read(sys.argv[1])
print(json.dumps({"tags": len(tags), "file_cpu": file_cpu, "read_cpu": time.process_time() - t,
                  "points": len(result.scalars)}))
"""


def bench_tags(n_tags: int) -> None:
    many = many_tags(n_tags, n_tags)
    few = many_tags(20, n_tags)
    size = next(many.iterdir()).stat().st_size
    out = {}
    for name, directory in (("many", many), ("few", few)):
        run = subprocess.run([sys.executable, "-c", _READ_TAGS, str(directory)], capture_output=True, text=True, check=True)
        out[name] = json.loads(run.stdout)
    m, f = out["many"], out["few"]
    print(f"many tags: {n_tags:,} records, {m['tags']:,} tags, {size / 1e6:.1f} MB")
    print(f"  EventFileReader: {m['file_cpu']:.2f} s CPU vs {f['file_cpu']:.2f} s over 20 tags "
          f"(anchor, same records): {m['file_cpu'] / max(f['file_cpu'], 1e-9):.1f}x")
    print(f"  tbmon.monitor.read: {m['read_cpu']:.2f} s CPU vs {f['read_cpu']:.2f} s: "
          f"{m['read_cpu'] / max(f['read_cpu'], 1e-9):.1f}x")


def bench_long_tag(tag_mb: float) -> None:
    from tensorboardX import SummaryWriter

    sizes = {}
    for name, long_tag in (("long", "loss/" + "x" * int(tag_mb * 1e6)), ("anchor", None)):
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "logs" / "run"
            writer = SummaryWriter(str(run))
            for step in range(50):
                writer.add_scalar("loss", 1.0 / (step + 1), step)
                if long_tag:
                    writer.add_scalar(long_tag, float(step), step)
            writer.close()
            state = Path(tmp) / "state.json"
            t = time.monotonic()
            subprocess.run([sys.executable, "-m", "tbmon.monitor.cli", "watch", str(run.parent), "--once",
                            "--state", str(state), "--format", "jsonl"], capture_output=True, check=False)
            took = time.monotonic() - t
            t = time.monotonic()
            report = subprocess.run([sys.executable, "-m", "tbmon.monitor.cli", "report", str(run.parent),
                                     "--format", "json"], capture_output=True, text=True, check=False)
            report_s = time.monotonic() - t
            tags = json.loads(report.stdout)["runs"][0]["scalar_tags"]
            sizes[name] = (state.stat().st_size, took, report_s, max(map(len, tags)))
    (s, w, r, longest), (s0, w0, r0, _) = sizes["long"], sizes["anchor"]
    print(f"huge tag: {tag_mb:g} MB tag name, 50 points")
    print(f"  state file {s:,} bytes vs {s0:,} without it: {s / s0:.2f}x; longest tag kept {longest:,} chars")
    print(f"  watch --once {w:.2f} s vs {w0:.2f} s; report --format json {r:.2f} s vs {r0:.2f} s (wall, incl. start-up)")


def histogram_record(n: int) -> bytes:
    """An Event{wall_time, step, summary{value{tag, histo{min..sum_squares, limits, counts}}}}
    with n buckets, serialised field by field as protobuf does (packed doubles)."""
    import numpy as np

    def key(field: int, wire: int) -> bytes:
        return _varint(field << 3 | wire)

    def length_delimited(field: int, payload: bytes) -> bytes:
        return key(field, 2) + _varint(len(payload)) + payload

    limits = np.arange(1, n + 1, dtype="<f8").tobytes()
    counts = np.ones(n, dtype="<f8").tobytes()
    moments = b"".join(key(f, 1) + struct.pack("<d", v) for f, v in ((1, 1.0), (2, float(n)), (3, float(n)), (4, 1.0), (5, 1.0)))
    histo = moments + length_delimited(6, limits) + length_delimited(7, counts)
    value = length_delimited(1, b"grad/w") + length_delimited(5, histo)
    return key(1, 1) + struct.pack("<d", 1.7e9) + key(2, 0) + _varint(3) + length_delimited(5, length_delimited(1, value))


def _varint(x: int) -> bytes:
    out = bytearray()
    while True:
        byte, x = x & 0x7F, x >> 7
        out.append(byte | (0x80 if x else 0))
        if not x:
            return bytes(out)


def _check_layout() -> None:
    """The hand-assembled record equals upb's serialisation of the same message."""
    import numpy as np
    from tensorboardX.proto import event_pb2, summary_pb2

    n = 5
    h = summary_pb2.HistogramProto(min=1.0, max=float(n), num=float(n), sum=1.0, sum_squares=1.0,
                                   bucket_limit=np.arange(1, n + 1, dtype=float).tolist(), bucket=[1.0] * n)
    ev = event_pb2.Event(wall_time=1.7e9, step=3, summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="grad/w", histo=h)]))
    assert ev.SerializeToString() == histogram_record(n), "hand-built layout differs from protobuf's"


_READ_HIST = """
import sys
from tbmon.monitor import decode
from tbmon.monitor.event_file import EventFileReader
def hwm():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) * 1024
if sys.argv[2] == "upb":
    decode.BIG_RECORD_BYTES = 1 << 62  # the anchor: every record through upb
base = hwm()
chunk = EventFileReader(sys.argv[1]).read_new()
assert chunk.histograms[0].bucket_limits[0].size > 0 and not chunk.problems
print(hwm() - base)
"""


def bench_histogram(mb: float) -> None:
    from tbmon.monitor.records import masked_crc

    _check_layout()
    n = int(mb * 1e6 / 16)
    path = OUT / f"hist-{n}" / "events.out.tfevents.1.bench"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = histogram_record(n)
        header = struct.pack("<Q", len(payload))
        with open(path, "wb") as f:
            f.write(header + struct.pack("<I", masked_crc(header)) + payload + struct.pack("<I", masked_crc(payload)))
        del payload
    size = path.stat().st_size
    peaks = {}
    for how in ("tbmon", "upb"):
        run = subprocess.run([sys.executable, "-c", _READ_HIST, str(path), how], capture_output=True, text=True, check=True)
        peaks[how] = int(run.stdout)
    print(f"huge histogram: one {size / 1e6:.0f} MB record, {n:,} buckets")
    print(f"  peak RSS growth {peaks['tbmon'] / 1e6:.0f} MB = {peaks['tbmon'] / size:.2f}x the record; "
          f"upb path (anchor) {peaks['upb'] / 1e6:.0f} MB = {peaks['upb'] / size:.2f}x; ratio {peaks['tbmon'] / peaks['upb']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tags", type=int, default=100_000, help="distinct tags (= records) in the many-tags file")
    parser.add_argument("--tag-mb", type=float, default=20.0, help="length of the huge tag name in MB")
    parser.add_argument("--hist-mb", type=float, default=200.0, help="size of the huge histogram record in MB")
    parser.add_argument("--only", choices=("tags", "long_tag", "histogram"))
    args = parser.parse_args()
    if args.only in (None, "tags"):
        bench_tags(args.tags)
    if args.only in (None, "long_tag"):
        bench_long_tag(args.tag_mb)
    if args.only in (None, "histogram"):
        bench_histogram(args.hist_mb)


if __name__ == "__main__":
    main()
