"""Fuzz targets for the record framer and the decoder (issue 15). Not part of the test run.

    python bench/fuzz_reader.py framer --seconds 600     # coverage-guided with atheris if installed
    python bench/fuzz_reader.py decoder --seconds 600 --driver random   # plain random mutation
    python bench/fuzz_reader.py framer --replay FILE     # rerun one saved input, traceback shown

Targets (each input runs in bounded time and memory; libFuzzer: -timeout=10 s per input,
-rss_limit_mb=3072; the random driver times every input and flags any over 10 s as a hang):

- ``framer``: the input is an event file; its first 4 bytes pick a block size and 3 cut
  points. It is read whole by a fresh ``EventFileReader``, and separately written in 4
  appended pieces with a read after each and a JSON state round trip (a restarted watcher)
  after the second. A crash is any exception. A mismatch is a piecewise result (points,
  histograms, problems) that differs from the whole read *of a file the whole read found
  clean* (no problem, no unread tail): a follower must never lose or invent a record of an
  undamaged file. On damaged files
  the two may legitimately differ (a damaged byte 0 is judged on the bytes present so far);
  those differences are counted and printed, not raised.
- ``decoder``: the input is a list of record payloads. One ``EventDecoder`` decodes them as one
  block, each repeated 32 times so the vectorised fast path runs; another decodes the same
  records one at a time through upb. Both results must be identical (NaN-aware), and for every
  record the zero-copy big-histogram parser accepts, its result must equal upb's.

Seeds: records and files written by tensorboardX (scalars, histograms, text, purge_step
session starts, TF2 tensor scalars and histograms built from tensorboardX's protos, long and
non-ASCII tags) and the start of each file in /work/shared/real-logs. Crashing inputs are
saved under ``bench/out/fuzz/<target>/``.
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import random
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).resolve().parent / "out" / "fuzz"
REAL_LOGS = Path("/work/shared/real-logs")
MAX_LEN = 1 << 16
HANG_SECONDS = 10.0
_BLOCKS = (64, 200, 4096, 4 << 20)


class Mismatch(AssertionError):
    """Two ways of reading the same bytes disagree."""


def _import_targets(instrument: bool) -> None:
    global EventFileReader, EventDecoder, decode_mod, np
    if instrument:
        import atheris

        with atheris.instrument_imports(include=["tbmon"]):
            from tbmon.monitor import decode as decode_mod
            from tbmon.monitor.event_file import EventFileReader
    else:
        from tbmon.monitor import decode as decode_mod
        from tbmon.monitor.event_file import EventFileReader
    import numpy as np

    EventDecoder = decode_mod.EventDecoder


# -- framer ---------------------------------------------------------------------------------


class FramerTarget:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tbmon-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
        self.path = self.dir / "events.out.tfevents.1.fuzz"
        atexit.register(self.close)
        self.damaged_points = 0  # damaged files whose points differ piecewise
        self.damaged_problems = 0  # ... whose points agree and only the problems listed differ
        self.runs = 0

    def __call__(self, data: bytes) -> None:
        self.runs += 1
        if len(data) < 4:
            return
        block = _BLOCKS[data[0] % len(_BLOCKS)]
        body = data[4:]
        cuts = sorted(int(len(body) * b / 255) for b in data[1:4])
        self.path.write_bytes(body)
        whole = _read_through(EventFileReader(self.path, block_bytes=block), final=True)
        self.path.write_bytes(b"")
        reader = EventFileReader(self.path, block_bytes=block)
        pieces = _Result()
        done = 0
        for i, cut in enumerate([*cuts, len(body)]):
            with open(self.path, "ab") as handle:
                handle.write(body[done:cut])
            done = cut
            _read_through(reader, pieces, final=cut == len(body))
            if i == 1:  # a restarted watcher: resume from the saved state
                state = json.loads(json.dumps(reader.state_dict()))
                reader = EventFileReader(self.path, block_bytes=block)
                reader.load_state_dict(state)
        if pieces != whole:
            if not whole.problems:
                raise Mismatch(f"clean file read in pieces differs:\nwhole  {whole}\npieces {pieces}")
            if sorted(pieces.points, key=repr) == sorted(whole.points, key=repr):
                self.damaged_problems += 1
                return
            self.damaged_points += 1
            if self.damaged_points <= 20:  # kept for a look: bench/out/fuzz/framer/damaged-*
                OUT.joinpath("framer").mkdir(parents=True, exist_ok=True)
                OUT.joinpath("framer", f"damaged-{os.getpid()}-{self.damaged_points:02d}").write_bytes(data)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def summary(self) -> str:
        return (f"damaged files whose points differ piecewise: {self.damaged_points}; "
                f"whose points agree but whose problem lists differ: {self.damaged_problems}")


class _Result:
    def __init__(self) -> None:
        self.points: list[tuple] = []
        self.problems: list[str] = []

    def key(self) -> tuple:
        return (sorted(self.points, key=repr), sorted(self.problems))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Result) and self.key() == other.key()

    def __repr__(self) -> str:
        return f"{len(self.points)} points, problems {sorted(self.problems)}"


def _read_through(reader, out: _Result | None = None, *, final: bool = False) -> _Result:
    """Read until nothing more comes; every value as a comparable tuple (NaN as a string).
    ``final``: the file is complete, so an unread tail is a problem (as in ``tbmon report``)."""
    out = _Result() if out is None else out
    for _ in range(10_000):
        chunk = reader.read_new()
        out.problems += [p.kind for p in chunk.problems if p.kind != "rewritten"]
        for s in chunk.scalars:
            out.points += [("s", s.tag, int(st), _f(w), _f(v)) for st, w, v in zip(s.step, s.wall_time, s.value)]
        for h in chunk.histograms:
            for i in range(len(h)):
                out.points.append(("h", h.tag, int(h.step[i]), _f(h.num[i]), h.bucket_limits[i].tobytes(), h.bucket_counts[i].tobytes()))
        if not chunk.bytes and not chunk.problems:
            if final and (tail := reader.unread_tail()) is not None:
                out.problems.append(tail.kind)
            return out
    raise Mismatch("reader made no final progress after 10,000 calls")


def _f(x: float) -> object:
    x = float(x)
    return repr(x) if math.isnan(x) else x


# -- decoder --------------------------------------------------------------------------------


class DecoderTarget:
    def __init__(self) -> None:
        self.runs = 0
        self.big_checked = 0

    def __call__(self, data: bytes) -> None:
        self.runs += 1
        payloads = _split(data)
        if not payloads:
            return
        fast = _decode(EventDecoder(), payloads * 32, one_block=True)
        slow = _decode(EventDecoder(), payloads * 32, one_block=False)
        if fast != slow:
            raise Mismatch(f"fast path {fast[:3]}... != upb path {slow[:3]}...")
        for p in payloads:
            big = decode_mod._big_histogram(memoryview(p))
            if big is None:
                continue
            self.big_checked += 1
            ref = _upb_histogram(p)
            if ref is None or not _same_histogram(big, ref):
                raise Mismatch(f"big-histogram parser {big} != upb {ref}")

    def summary(self) -> str:
        return f"records the big-histogram parser accepted and matched upb on: {self.big_checked}"


def _split(data: bytes) -> list[bytes]:
    """Length-prefixed payloads: 2-byte little-endian length, then that many bytes."""
    out, pos = [], 0
    while pos + 2 <= len(data) and len(out) < 64:
        (n,) = struct.unpack_from("<H", data, pos)
        out.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return out


def _decode(decoder, payloads: list[bytes], *, one_block: bool) -> list[tuple]:
    """Decode as the reader does: payloads located inside a buffer of framed records."""
    buf = b"".join(bytes(12) + p + bytes(4) for p in payloads)
    lengths = np.array([len(p) for p in payloads], dtype=np.int64)
    starts = (np.concatenate([[0], np.cumsum(lengths + 16)[:-1]]) + 12).astype(np.int64)
    blocks = [(starts, lengths)] if one_block else [(starts[i : i + 1], lengths[i : i + 1]) for i in range(len(payloads))]
    rows: list[tuple] = []
    seq = 0
    for s, n in blocks:
        d = decoder.decode(buf, s, n, seq)
        seq += d.n_values
        tags = decoder.tags
        rows += [("s", int(q), tags[t], int(st), _f(w), _f(v)) for q, t, st, w, v in zip(
            d.scalar_seq, d.scalar_tag, d.scalar_step, d.scalar_wall_time, d.scalar_value)]
        rows += [("h", h.seq, tags[h.tag_id], h.step, _f(h.wall_time), _f(h.num), _f(h.sum),
                  h.bucket_limits.tobytes(), h.bucket_counts.tobytes()) for h in d.histograms]
        rows += [("start", x) for x in d.session_starts]
        rows += [("bad", int(s[r])) for r, _ in d.bad_proto]
    return sorted(rows, key=repr)


def _upb_histogram(payload: bytes):
    try:
        ev = decode_mod._Event.FromString(payload)
    except Exception:
        return None
    if ev.WhichOneof("what") != "summary" or len(ev.summary.value) != 1:
        return None
    v = ev.summary.value[0]
    if v.WhichOneof("value") != "histo":
        return None
    return v.tag, ev.step, ev.wall_time, decode_mod._from_histogram_proto(v.histo, True)


def _same_histogram(big, ref) -> bool:
    tag, point = big
    rtag, step, wall, rp = ref
    fields = ("min", "max", "num", "sum", "sum_squares")
    return (
        tag == rtag and point.step == step and _f(point.wall_time) == _f(wall)
        and all(_f(getattr(point, f)) == _f(getattr(rp, f)) for f in fields)
        and point.bucket_limits.tobytes() == rp.bucket_limits.tobytes()
        and point.bucket_counts.tobytes() == rp.bucket_counts.tobytes()
    )


# -- seeds ----------------------------------------------------------------------------------


def seed_files(directory: Path) -> list[bytes]:
    """Small event files written by tensorboardX, plus the head of each real-world file."""
    import numpy as np
    from tensorboardX import SummaryWriter

    seeds = []
    for i, kind in enumerate(("scalars", "histograms", "text", "purge", "tags")):
        d = directory / f"w{i}"
        w = SummaryWriter(str(d), purge_step=3 if kind == "purge" else None)
        for step in range(6):
            if kind == "histograms":
                w.add_histogram("grad/w", np.random.default_rng(step).normal(size=50), step)
            elif kind == "text":
                w.add_text("notes", "t" * 300, step)
            elif kind == "tags":
                w.add_scalar("café/λoss", float(step), step)
                w.add_scalar("x" * 130, float("nan"), -step)
            w.add_scalar("loss", 1.0 / (step + 1), step)
        w.close()
        seeds += [p.read_bytes() for p in d.iterdir()]
    if REAL_LOGS.exists():
        seeds += [p.read_bytes()[: MAX_LEN - 4] for p in sorted(REAL_LOGS.rglob("*tfevents*")) if p.is_file()]
    return [bytes([k, 40, 128, 220]) + s[: MAX_LEN - 4] for k, s in enumerate(seeds)]


def seed_records(files: list[bytes]) -> list[bytes]:
    """The decoder's seeds: the records of the seed files, a few per input, plus TF2 tensors."""
    from tensorboardX.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2

    payloads = []
    for f in files:
        data, pos = f[4:], 0
        while pos + 12 <= len(data):
            (n,) = struct.unpack_from("<Q", data, pos)
            if pos + 16 + n > len(data) or n > 60000:
                break
            payloads.append(data[pos + 12 : pos + 12 + n])
            pos += 16 + n
    for plugin, rows in (("scalars", [0.5]), ("histograms", [0.0, 1.0, 3.0, 1.0, 2.0, 5.0])):
        dims = [] if plugin == "scalars" else [tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in (2, 3)]
        t = tensor_pb2.TensorProto(dtype=2, tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=dims),
                                   tensor_content=struct.pack(f"<{len(rows)}d", *rows))
        v = summary_pb2.Summary.Value(tag=f"tf2/{plugin}", tensor=t)
        v.metadata.plugin_data.plugin_name = plugin
        payloads.append(event_pb2.Event(step=7, wall_time=1.5, summary=summary_pb2.Summary(value=[v])).SerializeToString())
    rng = random.Random(0)
    groups = [payloads[i : i + 4] for i in range(0, len(payloads), 4)] + [rng.sample(payloads, 5) for _ in range(20)]
    groups += [[p] for p in payloads if b"grad/w" in p]  # histograms alone: the big-record parser's seeds
    return [b"".join(struct.pack("<H", len(p)) + p for p in g) for g in groups if sum(map(len, g)) < MAX_LEN]


# -- drivers --------------------------------------------------------------------------------


def run_atheris(target, seeds: list[bytes], seconds: int, out: Path) -> None:
    import atheris

    corpus = out / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(seeds):
        (corpus / f"seed-{i:03d}").write_bytes(s)
    args = [sys.argv[0], str(corpus), f"-max_total_time={seconds}", f"-timeout={int(HANG_SECONDS)}",
            "-rss_limit_mb=3072", f"-max_len={MAX_LEN}", f"-artifact_prefix={out}/", "-print_final_stats=1"]
    started = time.monotonic()

    def one(data: bytes) -> None:
        target(data)
        if time.monotonic() - started > seconds:  # libFuzzer may overrun on a slow input
            print(f"#done {target.runs} inputs in {time.monotonic() - started:.0f} s; {target.summary()}", flush=True)
            if hasattr(target, "close"):
                target.close()
            os._exit(0)

    atheris.Setup(args, one)
    atheris.Fuzz()


def run_random(target, seeds: list[bytes], seconds: int, out: Path, seed: int = 1) -> None:
    """Mutate seeds at random (bit flips, byte runs, cuts, splices, valid headers with wild
    lengths) for ``seconds``; an exception or an input slower than the hang limit stops it."""
    from tbmon.monitor.records import masked_crc

    rng = random.Random(seed)
    pool = list(seeds)
    started = time.monotonic()
    slowest = 0.0
    while time.monotonic() - started < seconds:
        data = bytearray(rng.choice(pool))
        for _ in range(rng.randint(1, 6)):
            op = rng.randrange(7)
            pos = rng.randrange(len(data) + 1)
            if op == 0 and data:
                data[min(pos, len(data) - 1)] ^= 1 << rng.randrange(8)
            elif op == 1:
                data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
            elif op == 2:
                del data[pos : pos + rng.randint(1, 64)]
            elif op == 3:
                data = data[:pos]
            elif op == 4:
                other = rng.choice(pool)
                data[pos:] = other[rng.randrange(len(other) + 1) :]
            elif op == 5:
                length = struct.pack("<Q", rng.choice([0, 1, 30, 2**20, 2**30, 2**31, rng.randrange(2**64)]))
                data[pos:pos] = length + struct.pack("<I", masked_crc(length))
            elif op == 6:
                data[pos:pos] = bytes(rng.randint(1, 4096))
        data = bytes(data[:MAX_LEN])
        t0 = time.monotonic()
        try:
            target(data)
        except BaseException:
            _save(out, data)
            raise
        took = time.monotonic() - t0
        if took > slowest:
            slowest = took
            out.mkdir(parents=True, exist_ok=True)
            (out / f"slowest-{os.getpid()}").write_bytes(data)
        if took > HANG_SECONDS:
            _save(out, data)
            raise SystemExit(f"hang: one input took {took:.1f} s")
        if rng.random() < 0.05 and len(pool) < 5000:
            pool.append(data)
    print(f"#done {target.runs} inputs in {time.monotonic() - started:.0f} s, slowest input {slowest * 1000:.0f} ms, "
          f"0 crashes, 0 hangs, 0 mismatches; {target.summary()}", flush=True)


def _save(out: Path, data: bytes) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"crash-{int(time.time())}"
    path.write_bytes(data)
    print(f"input saved to {path}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=("framer", "decoder"))
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--driver", choices=("atheris", "random"), default=None,
                        help="default: atheris if it is installed, else random")
    parser.add_argument("--replay", type=Path, help="run one saved input and show any traceback")
    parser.add_argument("--seed", type=int, default=1, help="random driver: the mutation sequence")
    args = parser.parse_args()
    driver = args.driver
    if driver is None:
        try:
            import atheris  # noqa: F401

            driver = "atheris"
        except ImportError:
            driver = "random"
    _import_targets(instrument=driver == "atheris" and args.replay is None)
    target = FramerTarget() if args.target == "framer" else DecoderTarget()
    if args.replay:
        target(args.replay.read_bytes())
        print(f"ok; {target.summary()}")
        return
    out = OUT / args.target
    with tempfile.TemporaryDirectory() as tmp:
        files = seed_files(Path(tmp))
    seeds = files if args.target == "framer" else seed_records(files)
    print(f"{args.target}: {len(seeds)} seeds, driver {driver}, {args.seconds} s", flush=True)
    if driver == "atheris":
        run_atheris(target, seeds, args.seconds, out)
    else:
        run_random(target, seeds, args.seconds, out, args.seed)


if __name__ == "__main__":
    main()
