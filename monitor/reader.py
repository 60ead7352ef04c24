"""Read a whole logdir: runs, their event files, restarts. One code path for `watch` and `report`.

:class:`LogdirReader` is incremental: every :meth:`LogdirReader.poll` returns only what is new,
as one :class:`~tbmon.analyzers.series.RunBatch` per run whose ``seq`` numbers continue where
the previous poll stopped. :func:`read` is a single full poll of a fresh reader plus the pandas
frames (built when first used), so `tbmon report` and `tbmon watch` feed the analyzers the very same stream.

Every event file of a run is read (in file-name order, which is creation-time order), not only
the newest as TensorBoard's default loader does.

Restarts. A run that resumes from a checkpoint writes steps it already wrote. The batches keep
the raw arrival-order stream (the analyzers reset a tag when its step goes back). The frames of
:func:`read` drop superseded points (the rule is in :mod:`tbmon.monitor.frames`), using the
run-wide ``SessionLog.START`` markers this reader records. A marker is placed at the start of
the chunk that carries it (the file layer reports markers per chunk; writers put them first in
a new file). A file that is rewritten (shrunk or replaced) is read again from its start; its
re-read points supersede the old ones by the same rule. :attr:`RunInfo.restarts` lists where a
run went back, whatever the cause.
"""

from __future__ import annotations

import functools
import math
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from tbmon.analyzers.series import HistogramSeries, RunBatch, ScalarSeries
from tbmon.monitor.discovery import RunDir, file_order_key, is_event_file_name, make_run_dir, named_run_dir
from tbmon.monitor.event_file import REPEATABLE_KINDS, EventFileReader, FileChunk, ReadProblem, histogram_buckets
from tbmon.monitor.frames import frames, join_histograms, join_scalars, wide_scalars
from tbmon.monitor.storage import Logdir, open_logdir

if TYPE_CHECKING:
    import pandas as pd

READ_CHUNK_BYTES = 16 << 20
"""Bytes per read call on a long file: bounds the decoded arrays held at once and sets how
often ``progress`` is called (a 1 GB log reports ~60 times)."""

MAX_LISTED_RESTARTS = 1000
"""Step regressions listed per run. A log whose steps jump back and forth all the time (steps
that are not a training clock) would otherwise grow one object per point; beyond this the run
is flagged ``restarts_truncated``. Session-start markers are always kept: they drive purging."""

STATE_VERSION = 1


@dataclass(frozen=True)
class Restart:
    """A point where a run went back in steps (resumed from a checkpoint, or a rewritten file).

    ``cause``: ``session_start`` (a SessionLog.START marker, e.g. torch ``purge_step``),
    ``step_regression`` (a tag's step went back with no marker; ``tag`` names it) or
    ``rewritten`` (the file was replaced or shrank and is read again from its start).
    ``seq`` is the run's arrival position where it took effect.
    """

    step: int
    previous_step: int
    file: str
    wall_time: float | None
    cause: str
    seq: int
    tag: str | None = None


@dataclass(frozen=True)
class FileInfo:
    """One event file of a run, with the counters of its reader."""

    path: str
    size: int | None  # None once the file is gone
    records: int
    bytes_read: int
    problems: dict[str, int]


@dataclass
class RunInfo:
    """Cumulative facts about one run (for status lines and the report's run table)."""

    run: str
    experiment_dir: str | None
    role: str | None
    files: list[FileInfo]
    first_step: int | None
    last_step: int | None
    first_wall_time: float | None
    last_wall_time: float | None
    scalar_tags: list[str]
    histogram_tags: list[str]
    restarts: list[Restart]
    restarts_truncated: bool = False
    points: int = 0


@dataclass
class PollResult:
    """What one :meth:`LogdirReader.poll` found that is new."""

    batches: list[RunBatch] = field(default_factory=list)
    problems: list[ReadProblem] = field(default_factory=list)
    new_runs: list[str] = field(default_factory=list)
    removed_runs: list[str] = field(default_factory=list)


@dataclass
class ReadResult:
    """Everything under a logdir, read once (superseded points: :mod:`tbmon.monitor.frames`).

    ``scalars`` and ``histograms`` are the pandas frames, built (and pandas imported) when first
    asked for: `tbmon report` summarises from ``batches`` and never needs them (issue 14).
    ``markers``: per run, ``(seq, step)`` of the session starts that supersede earlier points.
    """

    logdir: str
    batches: list[RunBatch]
    runs: list[RunInfo]
    problems: list[ReadProblem]
    markers: dict[str, tuple[np.ndarray, np.ndarray]]
    buckets: bool = True  # the batches hold histogram buckets (``histograms="full"``)
    pivot: bool = False  # ``scalars`` is the wide frame

    @functools.cached_property
    def _frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        scalars, histograms = frames(self.batches, self.markers, buckets=self.buckets)
        return (wide_scalars(scalars) if self.pivot else scalars), histograms

    @property
    def scalars(self) -> pd.DataFrame:
        return self._frames[0]

    @property
    def histograms(self) -> pd.DataFrame:
        return self._frames[1]


class _TagState:
    """Per (kind, tag) of a run: the newest point, enough to see the step go back."""

    __slots__ = ("last_step", "last_seq")

    def __init__(self, last_step: int, last_seq: int) -> None:
        self.last_step = last_step
        self.last_seq = last_seq


def _feed_order(run: _RunState) -> tuple[str, int]:
    """Runs in name order, a Keras validation run first among its experiment's: divergence reads the
    validation level beside the train sibling's epoch loss (``RunView.sibling_validation``), and a
    report's one batch per run would otherwise bring the whole training history before it."""
    if run.role == "validation" and run.experiment_dir is not None:
        return ("" if run.experiment_dir == "." else run.experiment_dir + "/", 0)
    return (run.run, 1)


class _RunState:
    """Everything the reader remembers about one run between polls (no data points)."""

    def __init__(self, run_dir: RunDir) -> None:
        self.run = run_dir.run
        self.experiment_dir = run_dir.experiment_dir
        self.role = run_dir.role
        self.files: dict[str, EventFileReader] = {}
        self.next_seq = 0
        self.tags: dict[tuple[str, str], _TagState] = {}
        self.first_step: int | None = None
        self.first_wall: float | None = None
        self.last_wall: float | None = None
        self.points = 0
        self.restarts: list[Restart] = []
        self.restarts_truncated = False
        self._info: RunInfo | None = None  # rebuilt only after the run changed (status lines poll it)

    # -- the incremental bookkeeping every chunk goes through ---------------------------
    def ingest(self, chunk: FileChunk, path: str) -> tuple[list[ScalarSeries], list[HistogramSeries]]:
        """Renumber the chunk's per-file seq into run seq, update state, note restarts."""
        if chunk.bytes or chunk.problems or chunk.rewound:
            self._info = None
        series: list[Any] = [*chunk.scalars, *chunk.histograms]
        base = self.next_seq
        if series:
            lo = min(int(s.seq[0]) for s in series)
            hi = max(int(s.seq[-1]) for s in series)
            series = [replace(s, seq=s.seq - lo + base) for s in series]
            self.next_seq = base + hi - lo + 1
        scalars, histograms = series[: len(chunk.scalars)], series[len(chunk.scalars) :]
        first_wall = _first_wall_time(series)
        if chunk.rewound and series:
            self._went_back(min(int(s.step.min()) for s in series), path, first_wall, "rewritten", base)
        for step in chunk.session_starts:
            if self._went_back(step, path, first_wall, "session_start", base):
                for state in self.tags.values():
                    state.last_step = min(state.last_step, step - 1)
        tagged = [("scalar", s) for s in scalars] + [("histogram", h) for h in histograms]
        self._note_regressions(tagged, path)
        for kind, s in tagged:
            self._update(kind, s)
        return scalars, histograms

    def _note_regressions(self, tagged: list[tuple[str, Any]], path: str) -> None:
        """Record where a tag's step went back, in arrival order, unless a restart already
        recorded since the tag's previous point explains it. Vectorised: Python only runs
        for actual regressions, and stops once the listing is full."""
        found = []
        for k, (kind, s) in enumerate(tagged):
            state = self.tags.get((kind, s.tag))
            step = s.step
            prev = np.empty_like(step)
            prev[1:] = step[:-1]
            prev[0] = step[0] if state is None else state.last_step
            idx = np.flatnonzero(step < prev)
            if idx.size:
                first_prev_seq = state.last_seq if state is not None else -1
                prev_seq = np.where(idx == 0, first_prev_seq, s.seq[idx - 1])
                found.append((s.seq[idx], step[idx], prev[idx], prev_seq, idx, np.full(idx.size, k)))
        if not found or self.restarts_truncated:
            return
        seq, step, prev, prev_seq, idx, which = (np.concatenate(c) for c in zip(*found))
        for j in np.argsort(seq, kind="stable").tolist():
            if self.restarts_truncated:
                return
            if not self._explained(int(step[j]), int(prev_seq[j])):
                s = tagged[int(which[j])][1]
                self._add_restart(
                    Restart(int(step[j]), int(prev[j]), path, _wall(s.wall_time[idx[j]]), "step_regression",
                            int(seq[j]), s.tag)
                )

    def _update(self, kind: str, s: ScalarSeries | HistogramSeries) -> None:
        """Fold one series into the run's cumulative facts."""
        key = (kind, s.tag)
        state = self.tags.get(key)
        if state is None:
            self.tags[key] = _TagState(int(s.step[-1]), int(s.seq[-1]))
        else:
            state.last_step, state.last_seq = int(s.step[-1]), int(s.seq[-1])
        lo = int(s.step.min())
        self.first_step = lo if self.first_step is None else min(self.first_step, lo)
        self.points += len(s)
        walls = s.wall_time[np.isfinite(s.wall_time)]
        if walls.size:
            w_lo, w_hi = float(walls.min()), float(walls.max())
            self.first_wall = w_lo if self.first_wall is None else min(self.first_wall, w_lo)
            self.last_wall = w_hi if self.last_wall is None else max(self.last_wall, w_hi)

    def last_step(self) -> int | None:
        return max((t.last_step for t in self.tags.values()), default=None)

    def _went_back(self, step: int, path: str, wall: float | None, cause: str, seq: int) -> bool:
        """Record a restart to ``step`` if the run already holds data at or after it."""
        last = self.last_step()
        if last is None or step > last:
            return False
        self._add_restart(Restart(int(step), int(last), path, wall, cause, seq), always=cause == "session_start")
        return True

    def _explained(self, step: int, since_seq: int) -> bool:
        """A tag going back to ``step`` is part of a restart recorded after its previous point."""
        for r in reversed(self.restarts):
            if r.seq <= since_seq:
                return False
            if r.step <= step:
                return True
        return False

    def _add_restart(self, restart: Restart, *, always: bool = False) -> None:
        if always or len(self.restarts) < MAX_LISTED_RESTARTS:
            self.restarts.append(restart)
        else:
            self.restarts_truncated = True

    def purge_markers(self) -> tuple[np.ndarray, np.ndarray]:
        return purge_markers(self.restarts)

    def changed(self) -> None:
        self._info = None

    def info(self) -> RunInfo:
        if self._info is None:
            self._info = self._build_info()
        return self._info

    def _build_info(self) -> RunInfo:
        # Snapshots (list() of a dict is atomic under the GIL): `runs` may be read by a status
        # thread while another thread polls.
        tags = list(self.tags.items())
        files = []
        for path, reader in sorted(list(self.files.items()), key=lambda kv: file_order_key(kv[0])):
            h = reader.health
            files.append(FileInfo(path, reader.size(), h.records, h.bytes_read, dict(h.problems)))
        return RunInfo(
            run=self.run,
            experiment_dir=self.experiment_dir,
            role=self.role,
            files=files,
            first_step=self.first_step,
            last_step=max((s.last_step for _, s in tags), default=None),
            first_wall_time=self.first_wall,
            last_wall_time=self.last_wall,
            scalar_tags=sorted(t for (k, t), _ in tags if k == "scalar"),
            histogram_tags=sorted(t for (k, t), _ in tags if k == "histogram"),
            restarts=list(self.restarts),
            restarts_truncated=self.restarts_truncated,
            points=self.points,
        )

    # -- persistence ----------------------------------------------------------------------
    def state_dict(self, logdir: Logdir) -> dict:
        return {
            "next_seq": self.next_seq,
            "tags": [[k, t, s.last_step, s.last_seq] for (k, t), s in self.tags.items()],
            "first_step": self.first_step,
            "first_wall": self.first_wall,
            "last_wall": self.last_wall,
            "points": self.points,
            "restarts": [
                [r.step, r.previous_step, logdir.relpath(r.file), r.wall_time, r.cause, r.seq, r.tag]
                for r in self.restarts
            ],
            "restarts_truncated": self.restarts_truncated,
        }

    def load_state_dict(self, state: dict, logdir: Logdir) -> None:
        self.next_seq = int(state["next_seq"])
        self.tags = {(k, t): _TagState(int(step), int(seq)) for k, t, step, seq in state["tags"]}
        self.first_step = state["first_step"]
        self.first_wall = state["first_wall"]
        self.last_wall = state["last_wall"]
        self.points = int(state["points"])
        self.restarts = [
            Restart(int(step), int(prev), logdir.join(rel), wall, cause, int(seq), tag)
            for step, prev, rel, wall, cause, seq, tag in state["restarts"]
        ]
        self.restarts_truncated = bool(state["restarts_truncated"])


class _BatchBuilder:
    """Collects one poll's pieces of a run and joins them per tag into one RunBatch."""

    def __init__(self) -> None:
        self.scalars: dict[str, list[ScalarSeries]] = {}
        self.histograms: dict[str, list[HistogramSeries]] = {}
        self.session_starts: list[int] = []

    def add(self, scalars: list[ScalarSeries], histograms: list[HistogramSeries], starts: list[int]) -> None:
        for s in scalars:
            self.scalars.setdefault(s.tag, []).append(s)
        for h in histograms:
            self.histograms.setdefault(h.tag, []).append(h)
        self.session_starts.extend(starts)

    def build(self, run: _RunState) -> RunBatch:
        # Pop each tag's pieces as it is joined, so a big read holds one extra tag, not two copies.
        scalars = tuple(join_scalars(self.scalars.pop(tag)) for tag in sorted(self.scalars))
        histograms = tuple(join_histograms(self.histograms.pop(tag)) for tag in sorted(self.histograms))
        return RunBatch(
            run=run.run,
            scalars=scalars,
            histograms=histograms,
            experiment_dir=run.experiment_dir,
            role=run.role,
            session_starts=tuple(self.session_starts),
        )


class LogdirReader:
    """Incremental reader of every run under a logdir (see module docstring).

    ``poll()`` rescans the tree and reads every file; ``poll(paths)`` reads only those files
    (what inotify reported), discovering them if new, with no directory walk. A logdir that
    does not exist yet simply has no runs. Nothing on disk makes it raise: deleted or
    unreadable files and directories come back as problems, each reported once.

    ``logdir`` may be a URL (``s3://bucket/prefix``, :mod:`tbmon.monitor.storage`); such a
    logdir is only ever rescanned (object stores deliver no file events).

    ``histograms="summary"`` (default) keeps each histogram point's moments only (the buckets
    are most of a histogram log's bytes, and no rule uses them); ``"full"`` keeps every bucket.
    """

    def __init__(self, logdir: str | os.PathLike[str], *, check_crc: bool = True, histograms: str = "summary") -> None:
        histogram_buckets(histograms)  # a bad mode fails here, not at the first histogram
        self.store = open_logdir(logdir)
        self.logdir = self.store.root
        self.check_crc = check_crc
        self.histograms = histograms
        self._runs: dict[str, _RunState] = {}
        self._file_run: dict[str, str] = {}
        self._unreadable_dirs: set[str] = set()
        # poll / state_dict / load_state_dict exclude each other, so a checkpoint taken from
        # another thread never catches a poll half-way. `runs` needs no lock (snapshots).
        self._lock = threading.RLock()

    @property
    def runs(self) -> dict[str, RunInfo]:
        return {name: state.info() for name, state in sorted(list(self._runs.items()))}

    def poll(
        self, paths: Iterable[str | os.PathLike[str]] | None = None, *, files: Iterable[str] | None = None
    ) -> PollResult:
        """Read what is new: everything (a rescan), the local ``paths`` file events named, or only
        ``files`` as the logdir's listing names them (paths or URLs: one part of a logdir, on
        any storage; only their common directory is listed)."""
        with self._lock:
            return self._poll(paths, None, only_files=files)

    # -- discovery ----------------------------------------------------------------------
    def _poll(
        self,
        paths: Iterable[str | os.PathLike[str]] | None,
        progress: _Progress | None,
        only_runs: Callable[[str], bool] | None = None,
        *,
        only_files: Iterable[str] | None = None,
    ) -> PollResult:
        result = PollResult()
        if only_files is not None:  # a one-shot read of some files: list just their directory
            to_read = self._rescan_part(set(only_files), result)
        elif paths is None:
            to_read = self._rescan(result)
        else:
            to_read = self._locate(paths, result)
        if only_runs is not None:
            to_read = [p for p in to_read if only_runs(self._file_run[p])]
        if progress is not None:
            progress.total = sum(self._size(p) for p in to_read)
            progress.report()
        by_run: dict[str, list[str]] = {}
        for path in to_read:
            by_run.setdefault(self._file_run[path], []).append(path)
        for paths in by_run.values():
            paths.sort(key=file_order_key)
        order = sorted(by_run, key=lambda name: _feed_order(self._runs[name]))
        self.store.expect([(path, self._runs[name].files[path]) for name in order for path in by_run[name]])
        for name in order:
            run = self._runs[name]
            builder = _BatchBuilder()
            for path in by_run[name]:
                self._read_file(run, path, builder, result, progress)
            batch = builder.build(run)
            if not batch.is_empty():
                result.batches.append(batch)
            if not run.files:
                del self._runs[name]
                result.removed_runs.append(name)
        return result

    def _rescan(self, result: PollResult) -> list[str]:
        """Walk the tree once, add the new files; return every file to read."""
        found = self.store.discover()
        self._note_unreadable_dirs(found.unreadable_dirs, result, found.reasons)
        if self.store.remote and self.logdir in found.unreadable_dirs:
            return []  # the store cannot be listed: its objects cannot be read either; next poll retries
        for run_dir in found.runs:
            for path in run_dir.files:
                if path not in self._file_run:
                    self._add_file(run_dir, path, result)
        # Known files the walk did not see are read too: their reader reports them deleted,
        # or keeps reading them if only the walk could not reach them.
        return list(self._file_run)

    def _rescan_part(self, files: set[str], result: PollResult) -> list[str]:
        """Add and return the listed ``files``, listing only the directory that holds them all.
        A file not listed is left out. Local directories that cannot be listed are the caller's
        to report (it listed the whole logdir to choose the files); a store that cannot be listed
        is reported here, or the part's runs would vanish without a word."""
        if not files:
            return []
        start = _common_dir(files) if self.store.remote else os.path.commonpath([os.path.dirname(f) for f in files])
        found = self.store.discover(start=start)
        if self.store.remote:
            self._note_unreadable_dirs(found.unreadable_dirs, result, found.reasons)
        for run_dir in found.runs:
            for path in run_dir.files:
                if path in files and path not in self._file_run:
                    self._add_file(run_dir, path, result)
        return list(self._file_run)

    def _size(self, path: str) -> int:
        return self.store.size(path) or 0

    def _locate(self, paths: Iterable[str | os.PathLike[str]], result: PollResult) -> list[str]:
        """Map reported paths (local file events) to files to read, discovering new files and directories."""
        out: dict[str, None] = {}
        for raw in paths:
            path = os.path.abspath(os.fspath(raw))
            if path in self._file_run:
                out[path] = None
            elif not _inside(path, self.logdir):
                continue
            elif is_event_file_name(os.path.basename(path)) and os.path.isfile(path):
                run_dir = make_run_dir(self.logdir, os.path.dirname(path), [path])
                self._add_file(run_dir, path, result)
                out[path] = None
            elif os.path.isdir(path):
                found = self.store.discover(start=path)
                self._note_unreadable_dirs(found.unreadable_dirs, result, found.reasons, clear=False)
                for run_dir in found.runs:
                    for file in run_dir.files:
                        if file not in self._file_run:
                            self._add_file(run_dir, file, result)
                        out[file] = None
            elif not os.path.lexists(path):  # a vanished directory: its files report themselves deleted
                prefix = path + os.sep
                out.update((p, None) for p in self._file_run if p.startswith(prefix))
        return list(out)

    def _add_file(self, run_dir: RunDir, path: str, result: PollResult) -> None:
        run = self._runs.get(run_dir.run)
        if run is None:
            run = self._runs[run_dir.run] = _RunState(run_dir)
            result.new_runs.append(run_dir.run)
        run.changed()
        run.files[path] = EventFileReader(path, check_crc=self.check_crc, files=self.store, histograms=self.histograms)
        self._file_run[path] = run.run

    def _note_unreadable_dirs(
        self, dirs: Iterable[str], result: PollResult, reasons: dict[str, str], *, clear: bool = True
    ) -> None:
        dirs = set(dirs)
        for d in sorted(dirs - self._unreadable_dirs):
            result.problems.append(unreadable_dir_problem(d, reasons.get(d)))
        self._unreadable_dirs = dirs if clear else self._unreadable_dirs | dirs

    # -- reading ------------------------------------------------------------------------
    def _read_file(
        self, run: _RunState, path: str, builder: _BatchBuilder, result: PollResult, progress: _Progress | None
    ) -> None:
        reader = run.files[path]
        while True:
            chunk = reader.read_new(max_bytes=READ_CHUNK_BYTES)
            result.problems.extend(chunk.problems)
            scalars, histograms = run.ingest(chunk, path)
            builder.add(scalars, histograms, chunk.session_starts)
            if progress is not None:
                progress.advance(chunk.bytes)
            if any(p.kind == "deleted" for p in chunk.problems):
                run.changed()
                del run.files[path]
                del self._file_run[path]
                return
            if chunk.bytes < READ_CHUNK_BYTES:
                return

    def _with_file_total(self, problem: ReadProblem) -> ReadProblem:
        """A repeatable problem, listed once per file, with every occurrence in the file counted."""
        run = self._runs.get(self._file_run.get(problem.path, ""))
        file = run.files.get(problem.path) if run is not None else None
        if file is None or problem.kind not in REPEATABLE_KINDS:
            return problem
        return file.counted(problem.kind, final=True) or problem

    # -- persistence --------------------------------------------------------------------
    def state_dict(self) -> dict:
        """JSON-serialisable: offsets and bookkeeping, never data points."""
        with self._lock:
            return self._state_dict()

    def _state_dict(self) -> dict:
        return {
            "version": STATE_VERSION,
            "runs": {
                name: {
                    "files": {self.store.relpath(p): r.state_dict() for p, r in run.files.items()},
                    **run.state_dict(self.store),
                }
                for name, run in self._runs.items()
            },
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume from :meth:`state_dict`: known files continue at their offsets, no re-read."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported LogdirReader state version {state.get('version')!r}")
        with self._lock:
            self._load_state_dict(state)

    def _load_state_dict(self, state: dict) -> None:
        """Builds everything first, then swaps it in: a bad state leaves the reader unchanged."""
        runs: dict[str, _RunState] = {}
        file_run: dict[str, str] = {}
        for name, saved in state["runs"].items():
            files = [self.store.join(rel) for rel in saved["files"]]
            run_path = files[0].rpartition("/")[0] if files else self.store.join(name)
            run = _RunState(named_run_dir(name, run_path, files))
            run.load_state_dict(saved, self.store)
            for path, reader_state in zip(files, saved["files"].values()):
                reader = EventFileReader(path, check_crc=self.check_crc, files=self.store, histograms=self.histograms)
                reader.load_state_dict(reader_state)
                run.files[path] = reader
                file_run[path] = name
            runs[name] = run
        self._runs, self._file_run = runs, file_run


# -- one-shot read ----------------------------------------------------------------------


class _Progress:
    """Forwards byte counts to the caller's ``progress(done, total)``."""

    def __init__(self, callback: Callable[[int, int], None]) -> None:
        self.callback = callback
        self.done = 0
        self.total = 0

    def advance(self, n: int) -> None:
        self.done += n
        self.report()

    def report(self) -> None:
        self.callback(self.done, max(self.total, self.done))


def read(
    logdir: str | os.PathLike[str],
    *,
    check_crc: bool = True,
    progress: Callable[[int, int], None] | None = None,
    runs: str | None = None,
    tags: str | None = None,
    pivot: bool = False,
    files: Iterable[str] | None = None,
    histograms: str = "full",
) -> ReadResult:
    """Read every run under ``logdir`` (a path or a URL) once. Raises :class:`UsageError` if it cannot be read.

    ``runs`` / ``tags``: regular expressions searched (case-insensitive, anywhere in the name, as
    TensorBoard's filter boxes) in run names and tags; only matching runs are read at all, and
    only matching tags are kept (frames, batches, ``RunInfo`` tags), so ``analyze(result)``
    judges just those. ``pivot=True``: ``scalars`` is a wide frame as tbparse's ``pivot=True``
    gives, columns ``run, step, <tag>...``; ``histograms`` stay long.

    ``files``: read only these event files (as the logdir's listing names them: absolute paths,
    or URLs), e.g. one part of a logdir that ``tbmon.monitor.fleet`` spreads over processes;
    runs keep their names, and ``runs``/``tags`` filter within them. Only the part's own
    directory is listed, and directories that cannot be listed are left to whoever chose the files.

    ``histograms``: ``"full"`` (default, the contract's columns) keeps every bucket
    (``bucket_limits``/``bucket_counts``); ``"summary"`` keeps each histogram point's min, max, num,
    sum and sum_squares only (bucket columns ``None``), all that the rules and plots use, in memory a
    few times smaller than the file: ``report``, ``watch`` and ``analyze(path)`` read that way.
    """
    keep_run, keep_tag = _name_filter(runs, "runs"), _name_filter(tags, "tags")
    root = os.fspath(logdir)
    reader = LogdirReader(root, check_crc=check_crc, histograms=histograms)
    reader.store.check()
    polled = reader._poll(None, None if progress is None else _Progress(progress), keep_run, only_files=files)
    polled.problems = [reader._with_file_total(p) for p in polled.problems]
    chosen = {name: run for name, run in reader._runs.items() if keep_run is None or keep_run(name)}
    for run in chosen.values():  # the writers are done, as far as a one-shot read knows
        polled.problems += [p for f in run.files.values() if (p := f.unread_tail()) is not None]
    batches = polled.batches if keep_tag is None else [_only_tags(b, keep_tag) for b in polled.batches]
    markers = {name: run.purge_markers() for name, run in chosen.items()}
    infos = [run.info() for _, run in sorted(chosen.items())]
    if keep_tag is not None:
        infos = [replace(info, scalar_tags=[t for t in info.scalar_tags if keep_tag(t)],
                         histogram_tags=[t for t in info.histogram_tags if keep_tag(t)]) for info in infos]
    return ReadResult(logdir=root, batches=batches, runs=infos, problems=polled.problems, markers=markers,
                      buckets=histogram_buckets(histograms), pivot=pivot)


def _name_filter(pattern: str | None, what: str) -> Callable[[str], bool] | None:
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"{what}={pattern!r} is not a valid regular expression: {exc}") from None
    return lambda name: compiled.search(name) is not None


def _only_tags(batch: RunBatch, keep: Callable[[str], bool]) -> RunBatch:
    return replace(
        batch,
        scalars=tuple(s for s in batch.scalars if keep(s.tag)),
        histograms=tuple(h for h in batch.histograms if keep(h.tag)),
    )


# -- small helpers ------------------------------------------------------------------------


def _common_dir(paths: Iterable[str]) -> str:
    """The deepest directory holding every URL (of one logdir)."""
    split = [p.split("/")[:-1] for p in paths]
    common = split[0]
    for parts in split[1:]:
        n = 0
        while n < min(len(common), len(parts)) and common[n] == parts[n]:
            n += 1
        common = common[:n]
    return "/".join(common) or "/"


def purge_markers(restarts: Iterable[Restart]) -> tuple[np.ndarray, np.ndarray]:
    """(seq, step) of the session-start markers that supersede earlier data run-wide."""
    marks = [(r.seq, r.step) for r in restarts if r.cause == "session_start"]
    arr = np.array(marks, dtype=np.int64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def unreadable_dir_problem(path: str, reason: str | None = None) -> ReadProblem:
    """The problem for a directory (or a store prefix) that could not be listed."""
    return ReadProblem(path, 0, "unreadable", reason or "cannot list this directory (permission denied?)")



def _first_wall_time(series: list[Any]) -> float | None:
    if not series:
        return None
    first = min(series, key=lambda s: int(s.seq[0]))
    return _wall(first.wall_time[0])


def _wall(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)




__all__ = ["FileInfo", "LogdirReader", "PollResult", "ReadResult", "Restart", "RunInfo", "read"]
