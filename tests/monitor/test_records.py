"""Framing and fault tolerance of the event-file reader, on real writer output.

Files are written by tensorboardX (the writer our users' shim uses); defects are then
injected byte by byte, the way crashes, torn writes and bad copies produce them.
"""

from __future__ import annotations

import os
import struct
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorboardX import SummaryWriter
from tensorboardX.proto import event_pb2, summary_pb2

from tbmon.monitor.event_file import EventFileReader
from tbmon.monitor.records import masked_crc


# -- helpers shared with test_event_file.py --------------------------------------------


def frame(data: bytes) -> bytes:
    """One TFRecord around ``data`` (the writer's framing, with a native crc32c)."""
    head = struct.pack("<Q", len(data))
    return head + struct.pack("<I", masked_crc(head)) + data + struct.pack("<I", masked_crc(data))


def event_record(step: int, wall_time: float = 1.0, **values: float) -> bytes:
    summary = summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=t, simple_value=v) for t, v in values.items()]
    )
    return frame(event_pb2.Event(step=step, wall_time=wall_time, summary=summary).SerializeToString())


def version_record() -> bytes:
    return frame(event_pb2.Event(wall_time=1.0, file_version="brain.Event:2").SerializeToString())


def tbx_file(directory: Path, steps: int = 50, tags: tuple[str, ...] = ("loss", "acc")) -> Path:
    """A real tensorboardX event file: ``steps`` steps of each tag, value = step + tag index/10."""
    w = SummaryWriter(str(directory))
    for step in range(steps):
        for i, tag in enumerate(tags):
            w.add_scalar(tag, step + i / 10, step)
    w.close()
    (path,) = directory.glob("events.out.tfevents.*")
    return path


def points(chunks) -> list[tuple[int, str, int, float]]:
    """(seq, tag, step, value) of every scalar point in a sequence of chunks, seq-ordered."""
    pts = [
        (int(q), s.tag, int(st_), float(v))
        for c in chunks
        for s in c.scalars
        for q, st_, v in zip(s.seq, s.step, s.value)
    ]
    return sorted(pts)


def record_offsets(data: bytes) -> list[int]:
    offs, p = [], 0
    while p < len(data):
        offs.append(p)
        p += 16 + struct.unpack_from("<Q", data, p)[0]
    return offs


# -- truncation and growth -------------------------------------------------------------


def test_truncated_tail_then_appended_yields_each_record_exactly_once(tmp_path: Path) -> None:
    full = tbx_file(tmp_path / "w").read_bytes()
    path = tmp_path / "events.out.tfevents.1.cut"
    cut = len(full) // 2 + 7  # mid-record
    path.write_bytes(full[:cut])
    reader = EventFileReader(path)
    first = reader.read_new()
    assert not first.problems
    assert reader.offset < cut  # stopped at the start of the partial record
    with open(path, "ab") as f:
        f.write(full[cut:])
    second = reader.read_new()
    assert not second.problems
    got = points([first, second])
    whole = points([EventFileReader(tbx_file(tmp_path / "w2")).read_new()])
    assert [(t, s, v) for _, t, s, v in got] == [(t, s, v) for _, t, s, v in whole]
    assert [q for q, *_ in got] == list(range(len(got)))
    assert reader.offset == len(full)


def test_partial_header_is_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "events.out.tfevents.1.x"
    data = version_record() + event_record(1, loss=2.0)
    path.write_bytes(data[:-len(event_record(1, loss=2.0)) + 5])
    reader = EventFileReader(path)
    c = reader.read_new()
    assert c.problems == [] and c.scalars == [] and c.records == 1
    path.write_bytes(data)
    c = reader.read_new()
    assert [(s.tag, s.value.tolist()) for s in c.scalars] == [("loss", [2.0])]


# -- corruption ------------------------------------------------------------------------


def test_flipped_payload_byte_skips_exactly_that_record(tmp_path: Path) -> None:
    data = bytearray(tbx_file(tmp_path / "w", steps=40).read_bytes())
    offs = record_offsets(bytes(data))
    victim = offs[30]
    data[victim + 12 + 3] ^= 0xFF
    path = tmp_path / "events.out.tfevents.1.bad"
    path.write_bytes(bytes(data))
    reader = EventFileReader(path)
    chunk = reader.read_new()
    assert [(p.kind, p.offset) for p in chunk.problems] == [("bad_data_crc", victim)]
    assert chunk.records == len(offs) - 1
    assert sum(len(s) for s in chunk.scalars) == 80 - 1
    assert reader.read_new().problems == []  # reported once
    assert reader.health.problems == {"bad_data_crc": 1}


def test_flipped_length_byte_resyncs_and_reads_the_rest(tmp_path: Path) -> None:
    data = bytearray(tbx_file(tmp_path / "w", steps=40).read_bytes())
    offs = record_offsets(bytes(data))
    victim = offs[20]
    data[victim + 1] ^= 0x40  # length becomes ~16 KiB: its CRC no longer matches
    path = tmp_path / "events.out.tfevents.1.badlen"
    path.write_bytes(bytes(data))
    chunk = EventFileReader(path).read_new()
    assert [(p.kind, p.offset, p.skipped_bytes) for p in chunk.problems] == [
        ("bad_length_crc", victim, offs[21] - victim)
    ]
    assert chunk.records == len(offs) - 1
    assert chunk.bytes == len(data)


@pytest.mark.parametrize("valid_crc", [True, False])
def test_absurd_length_does_not_allocate_and_resyncs(tmp_path: Path, valid_crc: bool) -> None:
    data = bytearray(tbx_file(tmp_path / "w", steps=40).read_bytes())
    offs = record_offsets(bytes(data))
    victim = offs[10]
    head = struct.pack("<Q", 2**60)
    crc = masked_crc(head) if valid_crc else 0x12345678
    data[victim : victim + 12] = head + struct.pack("<I", crc)
    path = tmp_path / "events.out.tfevents.1.huge"
    path.write_bytes(bytes(data))
    tracemalloc.start()
    chunk = EventFileReader(path).read_new()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 50 << 20
    kind = "too_large" if valid_crc else "bad_length_crc"
    assert [(p.kind, p.offset, p.skipped_bytes) for p in chunk.problems] == [
        (kind, victim, offs[11] - victim)
    ]
    assert chunk.records == len(offs) - 1


def test_zero_filled_tail_waits_then_reads_when_filled(tmp_path: Path) -> None:
    """A torn write (size grew, bytes not there yet) must not be declared lost."""
    recs = [version_record()] + [event_record(i, loss=float(i)) for i in range(5)]
    data = b"".join(recs)
    tail = len(recs[-1]) + len(recs[-2])
    path = tmp_path / "events.out.tfevents.1.torn"
    path.write_bytes(data[:-tail] + bytes(tail))
    reader = EventFileReader(path)
    c1 = reader.read_new()
    assert c1.problems == [] and reader.offset == len(data) - tail
    assert reader.read_new().problems == []  # still waiting, still silent
    path.write_bytes(data)
    c2 = reader.read_new()
    assert c2.problems == []
    assert [p[3] for p in points([c1, c2])] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_zero_region_followed_by_records_is_skipped_and_reported(tmp_path: Path) -> None:
    before = version_record() + event_record(1, loss=1.0)
    after = event_record(2, loss=2.0) + event_record(3, loss=3.0)
    path = tmp_path / "events.out.tfevents.1.holes"
    path.write_bytes(before + bytes(100))
    reader = EventFileReader(path)
    c1 = reader.read_new()
    assert c1.problems == []
    with open(path, "ab") as f:
        f.write(after)
    c2 = reader.read_new()
    assert [(p.kind, p.offset, p.skipped_bytes) for p in c2.problems] == [
        ("bad_length_crc", len(before), 100)
    ]
    assert [p[3] for p in points([c1, c2])] == [1.0, 2.0, 3.0]


def test_valid_crc_but_not_an_event_is_bad_proto(tmp_path: Path) -> None:
    path = tmp_path / "events.out.tfevents.1.proto"
    garbage = frame(b"\xff\xff\xff")  # truncated varint: not a protobuf message
    path.write_bytes(version_record() + event_record(1, loss=1.0) + garbage + event_record(2, loss=2.0))
    chunk = EventFileReader(path).read_new()
    assert [p.kind for p in chunk.problems] == ["bad_proto"]
    assert [p[3] for p in points([chunk])] == [1.0, 2.0]


# -- file lifecycle --------------------------------------------------------------------


def test_empty_file_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "events.out.tfevents.1.empty"
    path.write_bytes(b"")
    reader = EventFileReader(path)
    c = reader.read_new()
    assert (c.records, c.bytes, c.problems, c.scalars) == (0, 0, [], [])
    assert reader.health.is_event_file is None


@pytest.mark.parametrize("content", [b"this is a text file, not records\n" * 3, bytes(range(256))])
def test_non_event_file_is_reported_once(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "events.out.tfevents.1.txt"
    path.write_bytes(content)
    reader = EventFileReader(path)
    assert [p.kind for p in reader.read_new().problems] == ["not_event_file"]
    with open(path, "ab") as f:
        f.write(content)
    assert reader.read_new().problems == []
    assert reader.health.is_event_file is False


def test_tfrecord_of_non_events_is_not_an_event_file(tmp_path: Path) -> None:
    path = tmp_path / "events.out.tfevents.1.rec"
    path.write_bytes(frame(b"\xff\xff\xff") + frame(b"\x08\x01"))
    reader = EventFileReader(path)
    c = reader.read_new()
    assert [p.kind for p in c.problems] == ["not_event_file"]
    assert c.scalars == []


def test_shrunk_file_is_reread_from_start(tmp_path: Path) -> None:
    path = tmp_path / "events.out.tfevents.1.shrink"
    path.write_bytes(version_record() + b"".join(event_record(i, loss=float(i)) for i in range(10)))
    reader = EventFileReader(path)
    reader.read_new()
    path.write_bytes(version_record() + event_record(0, loss=7.0))  # same first record, shorter
    c = reader.read_new()
    assert c.rewound and [p.kind for p in c.problems] == ["rewritten"]
    assert [p[3] for p in points([c])] == [7.0]
    assert int(c.scalars[0].seq[0]) == 10  # seq keeps increasing across the rewind


def test_replaced_file_with_new_first_record_is_reread(tmp_path: Path) -> None:
    path = tmp_path / "events.out.tfevents.1.repl"
    first = b"".join([version_record()] + [event_record(i, loss=1.0) for i in range(3)])
    path.write_bytes(first)
    reader = EventFileReader(path)
    reader.read_new()
    other_version = frame(event_pb2.Event(wall_time=2.0, file_version="brain.Event:2").SerializeToString())
    tmp = tmp_path / "tmpfile"
    tmp.write_bytes(other_version + b"".join(event_record(i, loss=5.0) for i in range(5)))
    os.replace(tmp, path)  # rsync-style replacement, larger than before
    c = reader.read_new()
    assert c.rewound and [p.kind for p in c.problems] == ["rewritten"]
    assert [p[3] for p in points([c])] == [5.0] * 5


def test_replacement_with_same_prefix_continues(tmp_path: Path) -> None:
    """rsync without --inplace replaces a grown file: same prefix, new inode → no re-read."""
    recs = [version_record()] + [event_record(i, loss=float(i)) for i in range(6)]
    path = tmp_path / "events.out.tfevents.1.grow"
    path.write_bytes(b"".join(recs[:4]))
    reader = EventFileReader(path)
    reader.read_new()
    tmp = tmp_path / "tmpfile"
    tmp.write_bytes(b"".join(recs))
    os.replace(tmp, path)
    c = reader.read_new()
    assert not c.rewound and c.problems == []
    assert [p[3] for p in points([c])] == [3.0, 4.0, 5.0]


def test_deleted_and_unreadable_are_problems_not_exceptions(tmp_path: Path) -> None:
    path = tmp_path / "events.out.tfevents.1.del"
    path.write_bytes(version_record() + event_record(1, loss=1.0))
    reader = EventFileReader(path)
    reader.read_new()
    path.unlink()
    assert [p.kind for p in reader.read_new().problems] == ["deleted"]
    assert reader.read_new().problems == []  # once
    path.mkdir()  # something unreadable as a file now sits at the path
    assert [p.kind for p in reader.read_new().problems] == ["unreadable"]
    assert reader.read_new().problems == []
    path.rmdir()
    os.mkfifo(path)  # a FIFO must not block the reader
    assert [p.kind for p in EventFileReader(path).read_new().problems] == ["unreadable"]
    path.unlink()
    other = frame(event_pb2.Event(wall_time=9.0, file_version="brain.Event:2").SerializeToString())
    path.write_bytes(other + event_record(1, loss=2.0) + event_record(2, loss=3.0))
    c = reader.read_new()  # a new file under the old name: read from its start
    assert c.rewound and [p.kind for p in c.problems] == ["rewritten"]
    assert [p[3] for p in points([c])] == [2.0, 3.0]


# -- properties ------------------------------------------------------------------------

_SAMPLE: dict[str, bytes] = {}


def _sample_file() -> bytes:
    """A small file mixing tensorboardX scalars, multi-value events and a histogram."""
    if not _SAMPLE:
        recs = [version_record()]
        for i in range(30):
            recs.append(event_record(i, wall_time=1.0 + i, loss=float(i), acc=i / 3))
            recs.append(event_record(i, wall_time=1.0 + i, lr=0.1))
        h = summary_pb2.HistogramProto(min=0, max=1, num=2, sum=1, sum_squares=1, bucket_limit=[0.5, 1], bucket=[1, 1])
        ev = event_pb2.Event(step=3, summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="h", histo=h)]))
        recs.insert(7, frame(ev.SerializeToString()))
        _SAMPLE["data"] = b"".join(recs)
    return _SAMPLE["data"]


def _summarise(chunks) -> tuple[list, list]:
    hist = sorted(
        (int(q), h.tag, int(s)) for c in chunks for h in c.histograms for q, s in zip(h.seq, h.step)
    )
    return points(chunks), hist


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12), block=st.sampled_from([64, 97, 4096, 1 << 20]))
def test_any_split_of_appends_equals_reading_whole(tmp_path: Path, cuts: list[int], block: int) -> None:
    data = _sample_file()
    path = tmp_path / "events.out.tfevents.split"
    path.write_bytes(data)
    whole = _summarise([EventFileReader(path).read_new()])
    path.write_bytes(b"")
    reader = EventFileReader(path, block_bytes=block)
    chunks = []
    written = 0
    for cut in sorted({c % (len(data) + 1) for c in cuts} | {len(data)}):
        with open(path, "ab") as f:
            f.write(data[written:cut])
        written = cut
        chunk = reader.read_new(max_bytes=None if cut % 2 else 300)
        assert chunk.problems == []
        chunks.append(chunk)
    while (c := reader.read_new(max_bytes=300)).records:
        chunks.append(c)
    assert _summarise(chunks) == whole
    assert reader.offset == len(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edits=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), min_size=1, max_size=8),
    chop=st.integers(min_value=0, max_value=200),
)
def test_random_corruption_never_raises_or_hangs(tmp_path: Path, edits, chop: int) -> None:
    original = _sample_file()
    data = bytearray(original)
    for pos, byte in edits:
        data[pos % len(data)] = byte
    data = bytes(data[: len(data) - chop])
    path = tmp_path / "events.out.tfevents.corrupt"
    path.write_bytes(data)
    reader = EventFileReader(path, block_bytes=256)
    chunks = [reader.read_new() for _ in range(3)]  # the test timeout catches any hang
    assert reader.offset <= len(data)
    got = Counter((t, s, v) for _, t, s, v in points(chunks))
    everything = Counter((t, s, v) for _, t, s, v in points([EventFileReader(_write(tmp_path / "events.out.tfevents.orig", original)).read_new()]))
    assert not got - everything  # nothing invented
    offs = record_offsets(original) + [len(original)]
    intact = [
        (a, b) for a, b in zip(offs, offs[1:]) if b <= len(data) and data[a:b] == original[a:b]
    ]
    if intact and intact[0][0] == 0:  # first record readable: every intact record is recovered
        want = Counter()
        for a, b in intact:
            ev = event_pb2.Event.FromString(original[a + 12 : b - 4])
            want.update((v.tag, ev.step, float(v.simple_value)) for v in ev.summary.value if v.HasField("simple_value"))
        assert not want - got


def test_valid_records_around_damage_are_all_recovered(tmp_path: Path) -> None:
    """Every record not touched by a corruption is read, for damage at each record in turn."""
    data = _sample_file()
    offs = record_offsets(data)
    total = points([EventFileReader(_write(tmp_path / "events.out.tfevents.ok", data)).read_new()])
    rng = np.random.default_rng(0)
    for i in range(1, len(offs) - 1):
        bad = bytearray(data)
        at = offs[i] + int(rng.integers(0, offs[i + 1] - offs[i]))
        bad[at] ^= 0x5A
        chunk = EventFileReader(_write(tmp_path / f"events.out.tfevents.{i}", bytes(bad))).read_new()
        assert len(chunk.problems) == 1
        got = {(t, s, v) for _, t, s, v in points([chunk])}
        lost = {(t, s, v) for _, t, s, v in total} - got
        assert len(lost) <= 2  # at most the values of the one damaged record


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_non_event_file_replaced_by_event_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "events.out.tfevents.1.later"
    path.write_bytes(b"not an event file at all, just text\n")
    reader = EventFileReader(path)
    assert [p.kind for p in reader.read_new().problems] == ["not_event_file"]
    path.write_bytes(version_record() + event_record(1, loss=4.0))
    c = reader.read_new()
    assert c.rewound and [p.kind for p in c.problems] == ["rewritten"]
    assert [p[3] for p in points([c])] == [4.0] and reader.health.is_event_file


def test_bad_crc_record_at_eof_is_held_back_until_more_data(tmp_path: Path) -> None:
    recs = [version_record(), event_record(1, loss=1.0), event_record(2, loss=2.0)]
    bad = bytearray(recs[2])
    bad[14] ^= 0x01
    path = tmp_path / "events.out.tfevents.1.heldback"
    path.write_bytes(recs[0] + recs[1] + bytes(bad))
    reader = EventFileReader(path)
    c1 = reader.read_new()
    assert c1.problems == [] and reader.offset == len(recs[0]) + len(recs[1])
    with open(path, "ab") as f:
        f.write(event_record(3, loss=3.0))
    c2 = reader.read_new()
    assert [(p.kind, p.offset) for p in c2.problems] == [("bad_data_crc", reader.offset - len(recs[2]) - len(event_record(3, loss=3.0)))]
    assert [p[3] for p in points([c1, c2])] == [1.0, 3.0]


def test_check_crc_false_skips_only_the_data_crc(tmp_path: Path) -> None:
    data = bytearray(version_record() + event_record(1, loss=1.0) + event_record(2, loss=2.0))
    data[-1] ^= 0xFF  # last record's data CRC
    path = tmp_path / "events.out.tfevents.1.nocrc"
    path.write_bytes(bytes(data))
    c = EventFileReader(path, check_crc=False).read_new()
    assert c.problems == [] and [p[3] for p in points([c])] == [1.0, 2.0]


def test_max_bytes_bounds_each_chunk_and_loses_nothing(tmp_path: Path) -> None:
    path = tbx_file(tmp_path / "w", steps=300)
    reader = EventFileReader(path, block_bytes=1024)
    chunks = []
    while (c := reader.read_new(max_bytes=2000)).records:
        assert c.bytes <= 2000 + 1024
        chunks.append(c)
    assert len(chunks) > 5
    assert points(chunks) == points([EventFileReader(path).read_new()])


def test_damaged_first_record_of_an_event_file_is_not_mistaken_for_another_format(tmp_path: Path) -> None:
    data = bytearray(tbx_file(tmp_path / "w", steps=10).read_bytes())
    offs = record_offsets(bytes(data))
    data[2] ^= 0x10  # first record's length field
    path = tmp_path / "events.out.tfevents.1.head"
    path.write_bytes(bytes(data))
    reader = EventFileReader(path)
    chunk = reader.read_new()
    assert [(p.kind, p.offset, p.skipped_bytes) for p in chunk.problems] == [("bad_length_crc", 0, offs[1])]
    assert sum(len(s) for s in chunk.scalars) == 20 and reader.health.is_event_file


def test_vectorised_crc_equals_crc32c_for_every_short_length() -> None:
    import crc32c

    from tbmon.monitor.records import _crc_same_length

    rng = np.random.default_rng(5)
    for size in range(1, 257):
        msgs = rng.integers(0, 256, size=(3, size), dtype=np.uint8)
        buf = np.concatenate([np.zeros(7, np.uint8), msgs.ravel()])
        got = _crc_same_length(buf, 7 + size * np.arange(3), size)
        assert got.tolist() == [crc32c.crc32c(m.tobytes()) for m in msgs], size


@pytest.mark.parametrize("filler", ["zeros", "random", "sparse"])
def test_resync_across_megabytes_of_damage(tmp_path: Path, filler: str) -> None:
    """Large damaged regions (zero fill, noise, mostly-zero noise) are skipped, nothing after lost."""
    rng = np.random.default_rng(7)
    size = 3_000_000
    junk = {
        "zeros": np.zeros(size, np.uint8),
        "random": rng.integers(0, 256, size, dtype=np.uint8),
        "sparse": np.where(rng.random(size) < 0.1, rng.integers(1, 256, size), 0).astype(np.uint8),
    }[filler].tobytes()
    before = version_record() + event_record(1, loss=1.0)
    after = b"".join(event_record(i, loss=float(i)) for i in range(2, 50))
    path = tmp_path / "events.out.tfevents.1.mb"
    path.write_bytes(before + junk + after)
    chunk = EventFileReader(path).read_new()
    assert [(p.kind, p.offset, p.skipped_bytes) for p in chunk.problems] == [("bad_length_crc", len(before), size)]
    assert [p[3] for p in points([chunk])] == [float(i) for i in range(1, 50)]
