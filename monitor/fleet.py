"""Reports over many runs: a logdir cut into parts, each read and analyzed on its own, then merged.

A part is one run, or a Keras ``train``/``validation`` pair together with their parent run
(experiment-scope rules need both sides; alerts on the parent count for all three). Parts are
independent, so they can run in this process, in worker processes (``tbmon report --jobs``) or
on a Dask cluster (``--dask``, or a ``dask.distributed.Client`` here): the same functions run
on every backend and the merge sorts what comes back, so every backend prints the same report.

A worker holds one part's points at a time and sends back only its summaries and alerts, so
the parent's memory grows with the number of runs and tags, not with the number of events.
Figures (HTML, ``--plots``) are drawn by the workers in a second pass over only the runs that
get one, since a merged report keeps no points.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from tbmon.analyzers.alerts import Alert
from tbmon.analyzers.config import AnalyzerConfig
from tbmon.analyzers.signals import SignalMatcher
from tbmon.monitor.discovery import RunDir
from tbmon.monitor.event_file import ReadProblem
from tbmon.monitor.exit_codes import UsageError
from tbmon.monitor.reader import read, unreadable_dir_problem
from tbmon.monitor.storage import open_logdir
from tbmon.monitor.summary import LogdirReport, RunSummary, alert_order, build_report, summarize_experiments

if TYPE_CHECKING:
    from distributed import Client

    from tbmon.monitor.reader import RunInfo

PARALLEL_MIN_BYTES = 32 << 20
"""Below this much event data, ``jobs=None`` reads in this process: starting workers (about a
second of imports each on a busy machine) would cost more than they save."""

Progress = Callable[[int, int], None]
Drawing = Callable[[LogdirReport, RunSummary], Any]
"""What a worker draws per run (``plots.run_png``, ``html_charts.run_charts``); None = nothing to draw."""


@dataclass(frozen=True)
class Part:
    """Runs that are read and analyzed together. ``path`` is the logdir as its storage names it
    (an absolute path, a worker's cwd may differ; or a URL, read by the worker itself);
    ``logdir`` is the name the report prints."""

    logdir: str
    path: str
    runs: tuple[str, ...]
    files: tuple[str, ...]
    size: int


@dataclass(frozen=True)
class PartReport:
    """What a worker sends back: no points, only what the report prints."""

    runs: tuple[RunSummary, ...]
    alerts: tuple[Alert, ...]
    problems: tuple[ReadProblem, ...]
    infos: tuple[RunInfo, ...] = ()  # the reader's run facts: the report's hints and "nothing to judge"


@dataclass(frozen=True)
class Plan:
    """One logdir cut into parts, in run-name order, and the directories that could not be listed."""

    logdir: str
    parts: tuple[Part, ...]
    unreadable: tuple[ReadProblem, ...]


def plan(logdir: str | os.PathLike[str], name: str | None = None) -> Plan:
    """Find the runs of ``logdir`` (a path or a URL) and group them into parts; ``name`` is what the
    report calls it (default: ``logdir`` as given). Raises UsageError if it cannot be read."""
    store = open_logdir(logdir)
    name = os.fspath(logdir) if name is None else name
    store.check()
    found = store.discover()
    groups: dict[str, list[RunDir]] = {}
    for run_dir in found.runs:
        groups.setdefault(run_dir.experiment_dir if run_dir.role is not None else run_dir.run, []).append(run_dir)
    parts = []
    for members in groups.values():
        files = tuple(f for r in members for f in r.files)
        size = sum(store.size(f) or 0 for f in files)
        parts.append(Part(name, store.root, tuple(sorted(r.run for r in members)), files, size))
    parts.sort(key=lambda p: p.runs[0])
    unreadable = tuple(unreadable_dir_problem(d, found.reasons.get(d)) for d in sorted(found.unreadable_dirs))
    return Plan(name, tuple(parts), unreadable)


def report_part(
    part: Part,
    config: AnalyzerConfig,
    check_crc: bool = True,
    progress: Progress | None = None,
    analyzing: Callable[[], None] | None = None,
) -> PartReport:
    """Read, analyze and summarise one part (runs in a worker; ``progress`` and ``analyzing``,
    called between the read and the rules, only in-process)."""
    report = _part_report(part, config, check_crc, progress, analyzing)
    return PartReport(report.runs, report.alerts, report.problems, report.infos)


def draw_part(
    part: Part, config: AnalyzerConfig, check_crc: bool, runs: frozenset[str], make: Drawing
) -> list[tuple[str, Any]]:
    """``make``'s figure (a PNG, chart data) of each of the part's ``runs`` that has something to
    plot (runs in a worker)."""
    report = _part_report(part, config, check_crc)
    return [(r.run, got) for r in report.runs if r.run in runs and (got := make(report, r)) is not None]


def _part_report(
    part: Part,
    config: AnalyzerConfig,
    check_crc: bool,
    progress: Progress | None = None,
    analyzing: Callable[[], None] | None = None,
) -> LogdirReport:
    from tbmon.analyzers import analyze

    result = read(part.path, check_crc=check_crc, files=part.files, progress=progress, histograms="summary")
    if analyzing is not None:
        analyzing()
    return replace(build_report(result, analyze(result, config), config), logdir=part.logdir)


def merge(
    logdir: str, parts: Iterable[PartReport], unreadable: Sequence[ReadProblem], config: AnalyzerConfig
) -> LogdirReport:
    """One logdir's report from its parts' (in plan order): runs by name, alerts worst first."""
    parts = list(parts)
    runs = sorted((r for p in parts for r in p.runs), key=lambda r: r.run)
    infos = sorted((i for p in parts for i in p.infos), key=lambda i: i.run)
    alerts = sorted((a for p in parts for a in p.alerts), key=alert_order)
    return LogdirReport(
        logdir=logdir,
        runs=tuple(runs),
        experiments=tuple(summarize_experiments(runs, alerts)),
        alerts=tuple(alerts),
        problems=(*unreadable, *(q for p in parts for q in p.problems)),
        result=None,
        matcher=SignalMatcher(config.patterns),
        index=None,
        infos=tuple(infos),
    )


# -- backends -------------------------------------------------------------------------------


class Backend(AbstractContextManager):
    """Runs a function over argument tuples and yields ``(position, result)`` as each finishes."""

    def run(self, fn: Callable[..., Any], calls: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
        raise NotImplementedError

    def __exit__(self, *exc: object) -> None:
        return None


class InProcess(Backend):
    def run(self, fn: Callable[..., Any], calls: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
        for i, args in enumerate(calls):
            yield i, fn(*args)


class Processes(Backend):
    """A pool of ``jobs`` worker processes, started from a clean ``forkserver`` (the parent may
    run a progress-bar thread, which a plain fork would copy mid-lock)."""

    def __init__(self, jobs: int) -> None:
        import multiprocessing

        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__, "tbmon.analyzers"])  # (a report needs no pandas)
        self.jobs = jobs
        self.pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context)

    def run(self, fn: Callable[..., Any], calls: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
        futures = {self.pool.submit(fn, *args): i for i, args in enumerate(calls)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BrokenProcessPool:
            raise UsageError("a worker process died (out of memory?); try fewer --jobs") from None
        except BaseException:  # a failed part, or Ctrl-C: the rest is not wanted any more
            for future in futures:
                future.cancel()
            raise

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class Dask(Backend):
    """Tasks on a Dask cluster. Workers read the event files themselves: the logdir must be at the
    same path on every worker (a shared filesystem) or a URL they can reach (``s3://…``, with
    credentials in their environment), and tbmon installed there."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def run(self, fn: Callable[..., Any], calls: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
        from distributed import as_completed as dask_completed

        futures = [self.client.submit(fn, *args, pure=False) for args in calls]
        position = {f.key: i for i, f in enumerate(futures)}
        try:
            for future, result in dask_completed(futures, with_results=True):
                yield position[future.key], result
        except BaseException:
            self.client.cancel(futures)
            raise


def connect(address: str) -> Client:
    """A client of the Dask scheduler at ``address``; a clear error when there is none."""
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--dask needs dask.distributed: pip install 'tbmon[dask]'") from None
    try:
        return Client(address, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise UsageError(f"cannot reach the Dask scheduler at {address}: {exc}") from None


def backend_for(parts: Sequence[Part], jobs: int | None = None, client: Client | None = None) -> Backend:
    """Dask when given a client; else ``jobs`` processes (``None``: every core, but in this process
    when there is too little to read to repay starting workers)."""
    if client is not None:
        return Dask(client)
    if jobs is None:
        jobs = 1 if sum(p.size for p in parts) < PARALLEL_MIN_BYTES else cpu_count()
    jobs = min(jobs, len(parts))
    return Processes(jobs) if jobs > 1 else InProcess()


def cpu_count() -> int:
    """The cores this process may run on (a job scheduler's CPU set, not the whole machine)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# -- the whole job --------------------------------------------------------------------------


class Fleet(AbstractContextManager):
    """Reports of several logdirs on one backend: :meth:`reports`, then :meth:`draw` if figures
    are wanted (the same worker pool serves both)."""

    def __init__(
        self,
        logdirs: Sequence[str | os.PathLike[str]],
        config: AnalyzerConfig | None = None,
        *,
        jobs: int | None = None,
        client: Client | None = None,
        check_crc: bool = True,
        labels: Sequence[str] | None = None,
    ) -> None:
        self.config = config or AnalyzerConfig()
        self.check_crc = check_crc
        names = [None] * len(logdirs) if labels is None else list(labels)
        self.plans = [plan(logdir, name) for logdir, name in zip(logdirs, names, strict=True)]
        self.backend = backend_for([p for pl in self.plans for p in pl.parts], jobs, client)

    def __exit__(self, *exc: object) -> None:
        self.backend.__exit__(*exc)

    def reports(self, progress: Progress | None = None) -> list[LogdirReport]:
        """One report per logdir; ``progress(done, total)`` counts event-file bytes of finished parts."""
        results = self._run_parts([part for pl in self.plans for part in pl.parts], progress)
        out, start = [], 0
        for pl in self.plans:
            out.append(merge(pl.logdir, results[start : start + len(pl.parts)], pl.unreadable, self.config))
            start += len(pl.parts)
        return out

    def report(
        self, position: int, progress: Progress | None = None, analyzing: Callable[[], None] | None = None
    ) -> LogdirReport:
        """The report of the logdir at ``position``. In this process, ``analyzing()`` is called once its
        last part is read and the rules run (a progress bar's second phase); with workers, parts
        finish read and analyzed, and ``progress`` alone says how far it got."""
        pl = self.plans[position]
        results = self._run_parts(list(pl.parts), progress, analyzing)
        return merge(pl.logdir, results, pl.unreadable, self.config)

    def _run_parts(
        self, parts: list[Part], progress: Progress | None, analyzing: Callable[[], None] | None = None
    ) -> list[PartReport]:
        total, done = sum(p.size for p in parts), 0
        calls: list[tuple] = [(p, self.config, self.check_crc) for p in parts]
        if isinstance(self.backend, InProcess) and (progress is not None or analyzing is not None):
            # bytes as they are read, as read() does; the last part's rules are the "analyzing" phase
            calls = [
                (*call, None if progress is None else _shifted(progress, before, total),
                 analyzing if i == len(calls) - 1 else None)
                for i, (call, before) in enumerate(zip(calls, _starts(parts)))
            ]  # fmt: skip
        results: list[PartReport] = [PartReport((), (), ())] * len(parts)
        for i, result in self.backend.run(report_part, calls):
            results[i] = result
            done += parts[i].size
            if progress is not None and not (analyzing is not None and isinstance(self.backend, InProcess)):
                progress(done, total)
        return results

    def draw(self, wanted: Sequence[set[str]], make: Drawing) -> Iterator[tuple[int, str, Any]]:
        """``(logdir position, run, make(report, run))`` for the runs in ``wanted[i]`` that have curves,
        as the workers finish them (so ``--plots`` of 1,000 runs never holds 1,000 PNGs at once).
        ``make`` must be a module-level function: it travels to the workers by name."""
        calls, owner = [], []
        for i, (pl, runs) in enumerate(zip(self.plans, wanted, strict=True)):
            for part in pl.parts:
                mine = frozenset(runs.intersection(part.runs))
                if mine:
                    calls.append((part, self.config, self.check_crc, mine, make))
                    owner.append(i)
        for position, drawn in self.backend.run(draw_part, calls):
            for run, png in drawn:
                yield owner[position], run, png


def report_logdirs(
    logdirs: Sequence[str | os.PathLike[str]],
    config: AnalyzerConfig | None = None,
    *,
    jobs: int | None = None,
    client: Client | None = None,
    check_crc: bool = True,
) -> list[LogdirReport]:
    """A report per logdir (what ``tbmon report`` prints), spread over ``jobs`` processes
    (default: every core for a big logdir) or the Dask cluster of ``client``."""
    with Fleet(logdirs, config, jobs=jobs, client=client, check_crc=check_crc) as fleet:
        return fleet.reports()


def _starts(parts: Sequence[Part]) -> Iterator[int]:
    """Bytes of the parts before each one."""
    done = 0
    for part in parts:
        yield done
        done += part.size


def _shifted(progress: Progress, before: int, total: int) -> Progress:
    return lambda done, _part_total: progress(before + done, total)


__all__ = ["Backend", "Fleet", "Part", "PartReport", "Plan", "connect", "merge", "plan", "report_logdirs"]
