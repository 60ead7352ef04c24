"""`tbmon watch LOGDIR...`: follow runs live and print alerts as they happen.

The pieces: ``follow.Follower`` turns file events into ``LogdirReader.poll`` results; a
``WatchSession`` feeds each batch to one analyzer ``Engine`` per logdir, drops alerts already
raised (also in earlier sessions, via ``state``), checkpoints new ones as owed to every sink,
then hands them to the output and to the notifiers; the ``delivery`` ledger retries what a sink
could not take and re-delivers on restart what no sink confirmed. Outputs: a Rich dashboard,
plain lines, or JSON lines.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import IO, Any

from tbmon.analyzers import Engine
from tbmon.analyzers.alerts import Alert
from tbmon.analyzers.config import AnalyzerConfig
from tbmon.analyzers.incidents import Assignment, Incident, IncidentTracker, canonical_order
from tbmon.analyzers.series import RunBatch
from tbmon.analyzers.signals import GRAD_NORM, TRAIN_LOSS, VAL_LOSS, SignalMatcher
from tbmon.monitor.alert_lines import (
    alert_record,
    json_line,
    plain_line,
    problem_record,
    run_record,
    status_record,
    summary_record,
)
from tbmon.monitor.config import load_config
from tbmon.monitor.dashboard import Board, Classifier
from tbmon.monitor.dashboard_file import DashboardFile
from tbmon.monitor.delivery import OUTPUT, AlertId, DeliveryLedger, Outcome, sink_id
from tbmon.monitor.delivery_journal import DeliveryJournal
from tbmon.monitor.discovery import run_name
from tbmon.monitor.exit_codes import BAD_INPUT, UsageError, exit_code_for
from tbmon.monitor.follow import DEFAULT_POLL_INTERVAL, REMOTE_POLL_INTERVAL, SAFETY_RESCAN, Follower
from tbmon.monitor.gone_runs import GoneRuns
from tbmon.monitor.line_stream import LineStream
from tbmon.monitor.liveness import Liveness
from tbmon.monitor.logdir_args import add_logdir_arguments, check_watchable, logdir_specs, nothing_to_judge
from tbmon.monitor.notify import WEBHOOK_ENV, CommandNotifier, WebhookNotifier, webhook_urls
from tbmon.monitor.output_format import choose_format
from tbmon.monitor.reader import LogdirReader, PollResult
from tbmon.monitor.report_formats import fmt_span
from tbmon.monitor.sanitize import rich_text
from tbmon.monitor.state import (
    WatchState,
    default_state_path,
    load_state,
    remove_stale_temp_files,
    save_state,
)
from tbmon.monitor.state_lock import StateBusy, StateLock
from tbmon.monitor.storage import open_logdir
from tbmon.monitor.tag_hints import MissingSignalHints
from tbmon.monitor.wording import plural

HELP = "follow runs live and print alerts as they happen"
DESCRIPTION = """\
Follow every run under LOGDIR live (new runs, new event files, appended records; inotify, or
polling with --poll) and print alerts within half a second of the writer's flush.

Formats: rich (live dashboard; default on a terminal), plain (one line per alert; default
otherwise), jsonl (one JSON object per line: "type": "alert" lines carry the contract alert
fields; "problem", "run", "status" and a closing "summary" line may appear too).

A run that grew while watched and then writes nothing for --stall-after seconds (or 10x its usual
gap between new points, if longer) gets one "stalled" info alert: the job hung, was killed, or
finished; its files cannot tell which.

A LOGDIR that does not exist yet is waited for; a regular file is refused (exit 2).
LOGDIRs may be named as TensorBoard's --logdir_spec (name:DIR). A run with a training loss but no
validation loss or gradient signal gets one hint with its tags and the config line that maps them.

Alerts of one run that describe one problem (same run, causally linked kinds, overlapping steps,
e.g. a loss blow-up and the exploding gradients behind it) form one incident: every alert is
shown and kept in jsonl with its "incident" id, webhooks and --on-alert commands get only the
alert that opens an incident and those that raise its severity.

State (read offsets, analyzer state, alerts already raised, the dashboard's last values) is saved
so a restarted watcher resumes at once, repeats no alert it delivered and shows the dashboard it
showed: by default in the user cache dir, keyed by the logdirs. One watcher per state file: a
second one exits naming the first. Alerts are delivered at least once: an output, webhook or
command that fails (full disk, endpoint down) keeps its alerts and retries them, also after a restart.
Ctrl-C or SIGTERM prints a summary; the exit code follows --fail-on. --once exits 2 when a LOGDIR
has no event files, or none readable (a CI gate must not pass when nothing could be read).

Webhook URLs carry their secret, and arguments are visible to every local user in `ps`:
prefer the environment variable TBMON_WEBHOOK_URL or --notify-webhook-file FILE. A URL with
user:password@ is sent with HTTP basic auth.

examples:
  tbmon watch logs/
  tbmon watch logs/ --format jsonl --output alerts.jsonl --notify-webhook-file ~/.tbmon-webhook
  tbmon watch /nfs/logs --poll 1          # network filesystems deliver no file events
  tbmon watch s3://bucket/runs            # object storage: polled every 5 s (pip install 'tbmon[s3]')
  tbmon watch logs/ --once --fail-on warning   # CI: scan, analyze, exit
"""

FORMAT_BY_EXTENSION = {".jsonl": "jsonl", ".ndjson": "jsonl"}

STALLED = "stalled"
"""The alert kind of a run gone quiet (watch only: it needs the clock; docs/watch.md)."""

SAVE_RETRY = 5.0
"""Seconds between attempts to write a state file that could not be written (full disk, bad directory)."""

SAVE_EVERY = 5.0
"""Seconds between checkpoints while data flows (alerts are checkpointed at once). Losing 5 s of
offsets on a crash only means re-reading them; the alert keys make that harmless."""

NOTIFY_GRACE = 5.0
"""Seconds at exit for pending webhook/command deliveries before giving up on them."""

STALL_AFTER = 600.0
"""Default --stall-after: 10 minutes, twice the longest default flush interval (tensorboardX and
torch flush every 120 s; a run that flushes that way is judged at 10 x 120 s = 20 minutes)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_logdir_arguments(parser, "directory tree(s) holding event files, or URLs: s3://bucket/prefix, gs://…, az://… (polled)")
    parser.add_argument(
        "--format", "-f", choices=("rich", "plain", "jsonl"),
        help="output format (see above; an --output ending in .jsonl/.ndjson means jsonl)",
    )  # fmt: skip
    parser.add_argument(
        "--poll",
        type=float,
        metavar="SECONDS",
        help=(
            "poll every SECONDS instead of using file events (NFS, SSHFS, container volumes); "
            f"URL logdirs are always polled, by default every {REMOTE_POLL_INTERVAL:g} s"
        ),
    )
    parser.add_argument("--once", action="store_true", help="read what is there, analyze, print, exit")
    parser.add_argument(
        "--stall-after",
        type=float,
        default=STALL_AFTER,
        metavar="SECONDS",
        help=f"report a run that grew while watched and then wrote nothing this long (default {STALL_AFTER:.0f}; 0: never)",
    )
    parser.add_argument("--state", metavar="PATH", help="state file (default: in the user cache dir, per logdirs)")
    parser.add_argument("--no-state", action="store_true", help="neither read nor write a state file")
    parser.add_argument(
        "--notify-webhook",
        action="append",
        default=[],
        metavar="URL",
        help=(
            "POST each page as JSON (Slack-compatible 'text' field + alert and incident fields): an incident's "
            "first alert, or one that raises its severity; its other alerts are updates, not sent. Repeatable. "
            f"Visible in `ps`: prefer {WEBHOOK_ENV} or --notify-webhook-file"
        ),
    )
    parser.add_argument(
        "--notify-webhook-file",
        action="append",
        default=[],
        metavar="FILE",
        help=(
            "read webhook URLs from FILE (one per line, # comments), so the secret stays out of the process "
            f"list; the environment variable {WEBHOOK_ENV} (URLs separated by spaces) works the same way"
        ),
    )
    parser.add_argument(
        "--on-alert",
        action="append",
        default=[],
        metavar="CMD",
        help="run shell command CMD per page (as for webhooks), alert JSON on stdin, $TBMON_INCIDENT set; repeatable",
    )


@dataclass
class WatchOptions:
    logdirs: list[str]
    fmt: str
    config: AnalyzerConfig
    fail_on: str = "critical"
    output: str | None = None
    poll: float | None = None
    once: bool = False
    stall_after: float = STALL_AFTER
    state_path: Path | None = None
    webhooks: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # logdir -> the name given as name:DIR
    webhook_in_arguments: bool = False


def run(args: argparse.Namespace) -> int:
    specs = logdir_specs(args)
    for spec in specs:
        check_watchable(spec.path)
    stores = [open_logdir(spec.path) for spec in specs]  # a remote one without its backend: exit 2 now
    logdirs = [store.root for store in stores]
    fmt = choose_format(args.format, args.output, FORMAT_BY_EXTENSION, "")
    if args.poll is not None and not args.poll > 0:
        raise UsageError("--poll needs a positive number of seconds")
    if not args.stall_after >= 0:
        raise UsageError("--stall-after needs a number of seconds (0 turns it off)")
    try:
        webhooks = webhook_urls(args.notify_webhook, args.notify_webhook_file, dict(os.environ))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.once:
        missing = [store.root for store in stores if not store.present()]
        if missing:
            raise UsageError(f"no such directory: {missing[0]}")
    state_path = None if args.no_state else Path(args.state) if args.state else default_state_path(logdirs)
    interactive = args.output is None and sys.stdout.isatty()
    options = WatchOptions(
        logdirs=logdirs,
        fmt=fmt or ("rich" if interactive else "plain"),
        config=load_config(args.config),
        fail_on=args.fail_on,
        output=args.output,
        poll=args.poll,
        once=args.once,
        stall_after=args.stall_after,
        state_path=state_path,
        webhooks=webhooks,
        commands=list(args.on_alert),
        names={path: spec.name for path, spec in zip(logdirs, specs) if spec.name},
        webhook_in_arguments=bool(args.notify_webhook),
    )
    return watch(options).exit_code()


def watch(options: WatchOptions, stop: threading.Event | None = None) -> WatchSession:
    """Follow ``options.logdirs`` until ``stop`` is set, SIGINT/SIGTERM, or (``once``) one scan."""
    stop = stop or threading.Event()
    lock = StateLock(options.state_path) if options.state_path is not None else None
    sink = _make_sink(options)
    try:
        if lock is not None:
            _lock_state(lock, sink)
        session = WatchSession(options, sink)
        follower = Follower(
            options.logdirs,
            session.make_reader,
            session.handle,
            session.notice,
            poll_interval=DEFAULT_POLL_INTERVAL if options.once and options.poll is None else options.poll,
            on_tick=session.check_liveness if options.stall_after > 0 else None,
            tick_every=min(options.stall_after / 4, SAFETY_RESCAN) if options.stall_after > 0 else SAFETY_RESCAN,
        )
        session.follower = follower
        sink.start(session)
        try:
            if options.once:
                follower.start()
                session.after_cycle()
                session.judge_once()
            else:
                _in_background_until_stopped(lambda: _follow(follower, session, stop), stop)
        finally:
            follower.close()
            session.close()
            sink.close(session.summary())
        return session
    finally:
        sink.release()
        if lock is not None:
            lock.release()


def _lock_state(lock: StateLock, sink: Sink) -> None:
    """One watcher per state file (else both would deliver every alert); clear what a kill left."""
    try:
        lock.acquire()
    except StateBusy as busy:
        raise UsageError(
            f"state file {lock.state_path} is in use by another tbmon watch ({busy}); stop that one, "
            "or give this one its own --state PATH (or --no-state)"
        ) from None
    except OSError as exc:
        sink.emit(status_record(f"cannot lock {lock.path} ({exc.strerror or exc}); going on without the lock"))
        return
    stale = remove_stale_temp_files(lock.state_path)
    if stale:
        sink.emit(status_record(f"removed {stale} temp file(s) left by a watcher killed while saving its state"))


def _follow(follower: Follower, session: WatchSession, stop: threading.Event) -> None:
    def wake_on_stop() -> None:  # whoever sets `stop` (signal, demo, test) need not know the follower
        stop.wait()
        follower.wake()

    threading.Thread(target=wake_on_stop, name="tbmon-stop", daemon=True).start()
    follower.start()
    session.after_cycle()
    session.notice(f"following {', '.join(follower.logdirs)} with {follower.backend}")
    follower.run(stop)
    follower.scan()  # what the writers flushed on their way out
    session.after_cycle()


def _in_background_until_stopped(work: Callable[[], None], stop: threading.Event) -> None:
    """Run ``work`` on a thread; the main thread only waits and turns SIGINT/SIGTERM into ``stop``.

    A signal handler must not take locks the interrupted code may hold, so the work (which
    takes them) lives on another thread and the handler only sets events. A second signal
    while shutting down (e.g. a long catch-up scan) quits at once.
    """
    failure: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the main thread below
            failure.append(exc)
            stop.set()

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    worker = threading.Thread(target=target, name="tbmon-follow", daemon=True)
    on_main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)} if on_main else {}
    try:
        worker.start()
        worker.join()  # interruptible: handlers run while the main thread blocks here
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if failure:
        raise failure[0]


class WatchSession:
    """Analysis and bookkeeping of one watch: engines, alerts already raised, deliveries, checkpoints.

    The follower thread calls ``handle``/``check_liveness``/``after_cycle``; a delivery thread
    retries failed deliveries and checkpoints confirmed ones. ``_lock`` keeps them apart (a
    checkpoint reads the engines, which ``handle`` feeds).
    """

    def __init__(self, options: WatchOptions, sink: Sink) -> None:
        self.options = options
        self.sink = sink
        self.follower: Follower | None = None
        self.engines: dict[str, Engine] = {}
        self.alerts: dict[str, list[Alert]] = {d: [] for d in options.logdirs}
        self.new_alerts = 0
        self._raised: dict[AlertId, Alert] = {}
        self.incidents = {d: IncidentTracker() for d in options.logdirs}  # per logdir: two may hold a run `exp1`
        self._assigned: dict[AlertId, Assignment] = {}
        self._resumed: dict[str, ResumedReader] = {}  # logdirs read on from the checkpoint, until it proves bad
        self._problems_seen: set[tuple[Any, ...]] = set()
        self._lock = threading.RLock()
        self._dirty = False
        self._last_save = time.monotonic()
        self._save_failed = False
        self._journal = DeliveryJournal(options.state_path) if options.state_path is not None else None
        self._notifiers = {sink_id("webhook", url): WebhookNotifier(url, self.notice) for url in options.webhooks}
        self._notifiers.update({sink_id("command", cmd): CommandNotifier(cmd, self.notice) for cmd in options.commands})
        self.ledger = DeliveryLedger([OUTPUT, *self._notifiers])
        if options.webhook_in_arguments:
            self.notice(f"--notify-webhook URLs are visible to every local user in `ps`; pass them in {WEBHOOK_ENV} "
                        "or --notify-webhook-file instead")
        self._state = self._load_state()
        self.liveness = Liveness(options.stall_after)
        self.gone_runs = GoneRuns(SAVE_EVERY)  # removed runs whose analyzer state is still held
        # Per logdir: two logdirs may both hold a run called `exp1`.
        self.hints = {d: MissingSignalHints(options.config.patterns) for d in options.logdirs}
        self.unreadable: list[str] = []  # --once: why a logdir had nothing to judge (exit 2)
        self._closing = False
        self._courier = threading.Thread(target=self._delivery_loop, name="tbmon-delivery", daemon=True)
        self._courier.start()

    # -- follower callbacks -----------------------------------------------------------------
    def make_reader(self, logdir: str) -> LogdirReader | ResumedReader:
        """The reader (and engine) of ``logdir``, resumed from the checkpoint when there is one."""
        reader = LogdirReader(logdir, check_crc=True)
        engine = Engine(self.options.config)
        self.engines[logdir] = engine
        if self._state is None or logdir not in self._state.readers:
            return reader
        try:
            reader.load_state_dict(self._state.readers[logdir])
            engine.load_state_dict(self._state.engines[logdir])
        except Exception as exc:  # noqa: BLE001 - any bad checkpoint means: start this logdir fresh
            return self._fresh_start(logdir, exc)
        self._resumed[logdir] = ResumedReader(reader, partial(self._fresh_start, logdir))
        self.sink.resumed(logdir, reader, self._state.dashboard.get(logdir, {}))
        return self._resumed[logdir]

    def _fresh_start(self, logdir: str, exc: Exception) -> LogdirReader:
        """A new reader and engine for ``logdir`` (its checkpoint is damaged), to read it from the start.

        Alerts raised before stay known, so the re-read repeats none of them."""
        with self._lock:
            self.notice(f"saved state for {logdir} unusable ({type(exc).__name__}); rereading it from the start")
            self._resumed.pop(logdir, None)
            self.engines[logdir] = Engine(self.options.config)
        return LogdirReader(logdir, check_crc=True)

    def handle(self, logdir: str, result: PollResult) -> None:
        """One poll result: problems once each, run changes, then every batch through the engine."""
        with self._lock:
            self._handle(logdir, result)

    def _handle(self, logdir: str, result: PollResult) -> None:
        removed = set(result.removed_runs)
        for problem in result.problems:
            if problem.kind == "deleted":  # rotation or clean-up, not damage: a notice, not a read problem
                if run_name(logdir, os.path.dirname(problem.path)) not in removed:  # else "run removed" says it
                    self.notice(f"event file deleted: {problem.path}")
                continue
            key = (logdir, problem.path, problem.kind, problem.offset)
            if key not in self._problems_seen:
                self._problems_seen.add(key)
                self.sink.emit(problem_record(problem, logdir))
        for run in result.new_runs:
            self.sink.emit(run_record(logdir, run, "new"))
        for run in result.removed_runs:
            self.sink.emit(run_record(logdir, run, "removed"))
            self.liveness.forget(logdir, run)
            self.gone_runs.add(logdir, run)
        engine = self.engines[logdir]
        fresh: list[Alert] = []
        for batch in result.batches:
            if batch.is_empty():
                continue
            self._dirty = True
            self.sink.observe(logdir, batch)
            try:
                fresh += [alert for alert in engine.feed(batch) if self._remember(logdir, alert)]
            except Exception as exc:
                resumed = self._resumed.get(logdir)
                if resumed is None:
                    raise  # not a damaged checkpoint: a bug, for the CLI's one-line error
                self._publish(logdir, fresh)  # remembered already: the re-read would not raise them again
                self._handle(logdir, resumed.restart(exc))
                return
        now = time.monotonic()
        for job, (step, wall) in _newest_points(result.batches).items():
            self.liveness.arrived(logdir, job, step, wall, now)
        self._publish(logdir, fresh)
        if result.batches and self.follower is not None and logdir in self.follower.readers:
            self._hint(logdir, final=False)
        self.after_cycle()

    def _hint(self, logdir: str, *, final: bool) -> None:
        """Once per run: a training loss but nothing the overfitting and gradient rules can use."""
        where = f"{self.options.names.get(logdir, logdir)}: " if len(self.options.logdirs) > 1 else ""
        for hint in self.hints[logdir].new_hints(self.follower.readers[logdir].runs.values(), final=final):
            self.notice(where + hint)

    def judge_once(self) -> None:
        """``--once`` is a CI gate: hints for every run, and a logdir with nothing readable fails it."""
        for logdir, reader in self.follower.readers.items():
            self._hint(logdir, final=True)
            reason = nothing_to_judge(logdir, list(reader.runs.values()))
            if reason:
                self.unreadable.append(reason)
                self.notice(reason)

    def check_liveness(self) -> None:
        """Report runs that grew while watched and went quiet (called on the follower thread)."""
        with self._lock:
            self._check_liveness()

    def _check_liveness(self) -> None:
        for quiet in self.liveness.newly_quiet(time.monotonic()):
            every = "under a second" if quiet.usual_gap < 1 else f"~{fmt_span(quiet.usual_gap)}"
            alert = Alert(
                run=quiet.run, kind=STALLED, severity="info", step=quiet.last_step, wall_time=quiet.last_wall, tag="",
                message=(f"{quiet.run} has written nothing for {fmt_span(quiet.quiet_seconds)} (new points came every "
                         f"{every} before; last step {quiet.last_step}): the job finished, hung or was killed; if it "
                         "should still be running, check its process"),
                evidence={"quiet_seconds": round(quiet.quiet_seconds, 1), "usual_gap_seconds": round(quiet.usual_gap, 1)},
            )
            self._publish(quiet.logdir, [alert] if self._remember(quiet.logdir, alert) else [])
        self.after_cycle()

    def _publish(self, logdir: str, fresh: list[Alert]) -> None:
        """Group ``fresh`` alerts into incidents, checkpoint them as owed, then deliver them (and anything due).

        The output owes every alert; notifiers only the pages (an alert that opens an incident or
        raises its severity; ``analyzers.incidents``). Owed first: a watcher killed after the
        checkpoint re-delivers on restart; one killed before it re-raises the alert from the
        files. Either way it is not lost.
        """
        if not fresh:
            return
        for alert in canonical_order(fresh):  # the order `report` groups in, whatever the chunking
            alert_id = (logdir, alert.key())
            self.alerts.setdefault(logdir, []).append(alert)  # in grouping order: a restart replays it
            self._assigned[alert_id] = assignment = self.incidents[logdir].add(alert)
            self.ledger.expect(alert_id, None if assignment.pages else [OUTPUT])
        self._save()
        self._deliver(self.ledger.take_due())

    def _deliver(self, due: list[tuple[AlertId, str]]) -> None:
        """Hand each due alert to its sink; the output answers at once, notifiers through a callback."""
        for alert_id, sink in due:
            logdir, alert = alert_id[0], self._raised[alert_id]
            assignment = self._assigned[alert_id]
            record = {**alert_record(alert, logdir), **assignment.fields()}
            if logdir in self.options.names:
                record["logdir_name"] = self.options.names[logdir]
            if sink == OUTPUT:
                shown = self.sink.alert(logdir, alert, record, self._incident(logdir, assignment))
                self._settled(alert_id, sink, Outcome(shown))
            elif not self._notifiers[sink].submit(record, partial(self._settled, alert_id, sink)):
                self.ledger.failed(alert_id, sink)

    def _settled(self, alert_id: AlertId, sink: str, outcome: Outcome) -> None:
        """A sink's answer (notifier threads too): journal a settled delivery at once, schedule a retry otherwise."""
        if not outcome.settled:
            self.ledger.failed(alert_id, sink, outcome.retry_after)
            return
        self.ledger.done(alert_id, sink)
        if self._journal is not None:
            self._journal.record(alert_id, sink)

    def _delivery_loop(self) -> None:
        """Retry failed deliveries when due, and a state file that could not be written."""
        while not self._closing:
            save_in = max(self._last_save + SAVE_RETRY - time.monotonic(), 0.0) if self._save_failed else None
            waits = [w for w in (self.ledger.next_due_in(), save_in) if w is not None]
            self.ledger.wait_for_change(min(waits) if waits else None)
            if self._closing:
                return
            with self._lock:
                self._deliver(self.ledger.take_due())
                if self._save_failed and time.monotonic() - self._last_save >= SAVE_RETRY:
                    self._save()

    def notice(self, message: str) -> None:
        self.sink.emit(status_record(message))

    def _incident(self, logdir: str, assignment: Assignment) -> Incident:
        """A copy of the incident as it stands (the dashboard renders it on another thread)."""
        incident = self.incidents[logdir].by_id[assignment.incident]
        return replace(incident, kinds=dict(incident.kinds))

    # -- alerts and state -------------------------------------------------------------------
    def _remember(self, logdir: str, alert: Alert) -> bool:
        """Record ``alert``; False when it was raised before (in this session or an earlier one)."""
        key = (logdir, alert.key())
        if key in self._raised:
            return False
        self._raised[key] = alert
        self.new_alerts += 1
        return True

    def after_cycle(self) -> None:
        """Checkpoint every ``SAVE_EVERY`` s while data flows (new alerts are saved at once, in ``handle``)."""
        with self._lock:
            self.sink.refresh(self)
            self.gone_runs.prune(self.engines, time.monotonic())
            if self._dirty and time.monotonic() - self._last_save >= SAVE_EVERY:
                self._save()

    def _load_state(self) -> WatchState | None:
        path = self.options.state_path
        if path is None:
            return None
        state, problem = load_state(path, self.options.logdirs)
        if problem:
            self.notice(problem)
        if state is None:
            return None
        confirmed = self._journal.read() if self._journal is not None else set()
        owed = 0
        for logdir, records in state.alerts.items():
            for record in records:
                pending = set(record.pop("pending", []))
                alert = Alert(**record)  # the schema checked every field
                alert_id = (logdir, alert.key())
                pending = {sink for sink in pending if (alert_id, sink) not in confirmed}
                self._raised[alert_id] = alert
                self.alerts.setdefault(logdir, []).append(alert)
                tracker = self.incidents.setdefault(logdir, IncidentTracker())
                self._assigned[alert_id] = assignment = tracker.add(alert)  # saved in grouping order: same ids
                if self.sink.restored_alert(logdir, alert, self._incident(logdir, assignment)):
                    pending.discard(OUTPUT)
                self.ledger.restore(alert_id, pending)
                owed += bool(self.ledger.pending(alert_id))
        if owed:
            self.notice(f"delivering {owed} alert(s) that no output or notifier confirmed before the last stop")
        return state

    def _save(self) -> None:
        """Checkpoint now; a failure is said once and retried every ``SAVE_RETRY`` s until it works."""
        self._last_save = time.monotonic()
        self._dirty = False
        path = self.options.state_path
        if path is None or self.follower is None:
            return
        state = WatchState(logdirs=list(self.options.logdirs))
        for logdir, reader in self.follower.readers.items():
            state.readers[logdir] = reader.state_dict()
            state.engines[logdir] = self.engines[logdir].state_dict()
        state.alerts = {
            d: [{**a.to_dict(), "pending": self.ledger.pending((d, a.key()))} for a in alerts]
            for d, alerts in self.alerts.items()
            if alerts
        }
        state.dashboard = self.sink.dashboard_state()
        try:
            save_state(path, state)
        except (OSError, TypeError, ValueError) as exc:
            self._dirty = True
            if not self._save_failed:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                self.notice(f"cannot save state to {path}: {reason}; retrying every {SAVE_RETRY:g} s, watching on")
            self._save_failed = True
            self.ledger.poke()  # the delivery thread schedules the retry
            return
        if self._journal is not None:
            self._journal.clear()  # the checkpoint holds every confirmation journaled so far
        if self._save_failed:
            self.notice(f"state saved to {path} again")
        self._save_failed = False

    def close(self) -> None:
        """Stop retrying, give notifiers their grace period, then checkpoint what they confirmed."""
        self._closing = True
        self.ledger.poke()
        self._courier.join()
        with self._lock:
            self._deliver(self.ledger.take_due())
        for notifier in self._notifiers.values():
            notifier.close(NOTIFY_GRACE)
        with self._lock:
            self._save()
        if self._journal is not None:
            self._journal.close()

    def all_alerts(self) -> list[Alert]:
        return [a for alerts in self.alerts.values() for a in alerts]

    def runs(self) -> int:
        readers = self.follower.readers.values() if self.follower else ()
        return sum(len(reader.runs) for reader in readers)

    def files(self) -> int:
        readers = self.follower.readers.values() if self.follower else ()
        return sum(len(info.files) for reader in readers for info in reader.runs.values())

    def exit_code(self) -> int:
        return BAD_INPUT if self.unreadable else exit_code_for(self.all_alerts(), self.options.fail_on)

    def summary(self) -> dict[str, Any]:
        incidents = sum(len(tracker.by_id) for tracker in self.incidents.values())
        return summary_record(
            self.runs(), self.all_alerts(), self.new_alerts, self.exit_code(), len(self._problems_seen), incidents
        )


class ResumedReader:
    """The reader of a logdir resumed from the checkpoint, ready to start over.

    A checkpoint can be damaged in ways its loaders accept (a list where a step belongs) and that
    only trip a later read or analysis, hours later perhaps. Then this logdir is read again from
    the start by a fresh reader and engine, once, instead of the watcher dying on every restart.
    """

    def __init__(self, reader: LogdirReader, fresh_start: Callable[[Exception], LogdirReader]) -> None:
        self.reader = reader
        self._fresh_start: Callable[[Exception], LogdirReader] | None = fresh_start

    def poll(self, paths: list[str] | None = None) -> PollResult:
        try:
            return self.reader.poll(paths) if paths is not None else self.reader.poll()
        except Exception as exc:
            if self._fresh_start is None:
                raise
            return self.restart(exc)

    def restart(self, exc: Exception) -> PollResult:
        """Replace the reader (and, through ``fresh_start``, the engine); everything read anew."""
        assert self._fresh_start is not None
        self.reader, self._fresh_start = self._fresh_start(exc), None
        return self.reader.poll()

    def __getattr__(self, name: str) -> Any:  # state_dict, runs, ...: the reader's
        return getattr(self.reader, name)


def _newest_points(batches: list[RunBatch]) -> dict[str, tuple[int, float]]:
    """Per job, its newest step and wall time in one poll: one arrival per run however many files it
    spans; a Keras train/validation pair is one job, named by its parent (as the analyzers do)."""
    newest: dict[str, tuple[int, float]] = {}
    for batch in batches:
        if not (series := (*batch.scalars, *batch.histograms)):
            continue
        job = batch.experiment_dir if batch.role is not None and batch.experiment_dir else batch.run
        step, wall = max(int(s.step.max()) for s in series), max(float(s.wall_time.max()) for s in series)
        before = newest.get(job, (step, wall))
        newest[job] = (max(before[0], step), max(before[1], wall))
    return newest


# -- outputs ------------------------------------------------------------------------------
class Sink:
    """Where records go. Plain and jsonl write lines; the rich sink feeds the dashboard."""

    def start(self, session: WatchSession) -> None:
        pass

    def emit(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def alert(self, logdir: str, alert: Alert, record: dict[str, Any], incident: Incident) -> bool:
        """Show ``alert`` (of ``incident``, as it stands); ``False`` when it could not be (kept and retried)."""
        self.emit(record)
        return True

    def observe(self, logdir: str, batch: RunBatch) -> None:
        pass

    def restored_alert(self, logdir: str, alert: Alert, incident: Incident) -> bool:
        """An alert from an earlier session; ``True`` when showing it here counts as delivering it."""
        return False

    def resumed(self, logdir: str, reader: LogdirReader, saved: dict[str, Any]) -> None:
        """``reader`` resumed from the state file; ``saved`` is what :meth:`dashboard_state` saved for ``logdir``."""

    def dashboard_state(self) -> dict[str, Any]:
        """What a restarted dashboard shows before new points arrive (only the dashboard keeps it)."""
        return {}

    def refresh(self, session: WatchSession) -> None:
        pass

    def close(self, summary: dict[str, Any]) -> None:
        self.emit(summary)

    def release(self) -> None:
        """Close what the sink opened (after ``close``, also when the watch never started)."""


class LineSink(Sink):
    """One line per record, written at once (the alert budget is half a second).

    ``plain``: alerts and the summary on ``out``; problems, runs and status on stderr, so
    ``tbmon watch logs/ > alerts.log`` keeps only alerts. ``jsonl``: everything on ``out``.
    A failing ``out`` (full disk, quota) is said once on stderr; its alerts report ``False`` so
    they are retried, the other sinks still get them, and watching goes on.
    """

    def __init__(self, out: LineStream, render: Callable[[dict[str, Any]], str], split_notices: bool) -> None:
        self._out = out
        self._render = render
        self._split = split_notices
        self._failing = False
        self._lost_notices = 0
        self._lock = threading.Lock()  # notifier threads report failures concurrently

    def emit(self, record: dict[str, Any]) -> None:
        self._write(record)  # a lost notice is counted and said; alerts go through ``alert``

    def alert(self, logdir: str, alert: Alert, record: dict[str, Any], incident: Incident) -> bool:
        return self._write(record)

    def close(self, summary: dict[str, Any]) -> None:
        if not self._write(summary):
            _to_stderr(plain_line(summary))

    def release(self) -> None:
        self._out.close()

    def _write(self, record: dict[str, Any]) -> bool:
        line = self._render(record)
        with self._lock:
            if self._split and record["type"] not in ("alert", "summary"):
                _to_stderr(line)
                return True
            try:
                self._out.write(line)
            except BrokenPipeError:
                raise  # `tbmon watch ... | head`: the reader is gone for good; exit (alerts stay owed in the state)
            except OSError as exc:
                if not self._failing:
                    _to_stderr(
                        f"tbmon: cannot write to {self._out.name}: {exc.strerror or exc}; its alerts are kept and "
                        "retried, webhooks and --on-alert commands still get them, watching goes on"
                    )
                self._failing = True
                self._lost_notices += record["type"] != "alert"
                return False
            if self._failing:
                self._failing = False
                lost = f" ({self._lost_notices} status lines were lost meanwhile)" if self._lost_notices else ""
                _to_stderr(f"tbmon: {self._out.name} is writable again{lost}")
                self._lost_notices = 0
            return True


def _to_stderr(line: str) -> None:
    """Notices for a person; if even stderr is gone, there is no one left to tell."""
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class RichSink(Sink):
    """The live dashboard; the summary is printed under it when it stops.

    Redrawn when something changed (at most ``REDRAW_HZ`` times a second) and every
    ``IDLE_REDRAW`` s for the run ages, not at a fixed rate: a 200-run table costs ~20 ms to
    lay out, which at Rich's default 4 Hz would keep an idle watcher at ~9 % of a core.
    """

    REDRAW_HZ = 4
    IDLE_REDRAW = 5.0

    def __init__(self, out: IO[str], board: Board) -> None:
        from rich.console import Console
        from rich.live import Live

        self._out = out
        self.board = board
        self._refreshed = 0.0
        self._changed = threading.Event()
        self._closed = threading.Event()
        self.console = Console(file=out)
        self.live = Live(
            console=self.console,
            auto_refresh=False,
            get_renderable=lambda: board.render(self.console.size.height, self.console.size.width),
        )
        self._painter = threading.Thread(target=self._paint, name="tbmon-dashboard", daemon=True)

    def _paint(self) -> None:
        while not self._closed.is_set():
            self._changed.wait(self.IDLE_REDRAW)
            self._changed.clear()
            self.live.refresh()
            self._closed.wait(1 / self.REDRAW_HZ)

    def start(self, session: WatchSession) -> None:
        self.live.start(refresh=True)
        self._painter.start()

    def emit(self, record: dict[str, Any]) -> None:
        kind = record["type"]
        if kind == "problem":
            self.board.problems += 1
            self.board.add_notice(plain_line(record), "red")
        elif kind == "run":
            if record["event"] == "new":
                self.board.add_run(record["logdir"], record["run"])
            else:
                self.board.remove_run(record["logdir"], record["run"])
        elif kind == "summary":
            self.console.print(rich_text(plain_line(record)))
        else:
            self.board.add_notice(record["message"])
        self._changed.set()

    def alert(self, logdir: str, alert: Alert, record: dict[str, Any], incident: Incident) -> bool:
        self.board.add_alert(logdir, alert, incident)
        self._changed.set()
        return True

    def observe(self, logdir: str, batch: RunBatch) -> None:
        self.board.observe(logdir, batch)
        self._changed.set()

    def restored_alert(self, logdir: str, alert: Alert, incident: Incident) -> bool:
        self.board.add_alert(logdir, alert, incident, replayed=True)
        return True

    def resumed(self, logdir: str, reader: LogdirReader, saved: dict[str, Any]) -> None:
        runs = [(info.run, info.last_step, info.last_wall_time) for info in reader.runs.values()]
        restored = self.board.resume(logdir, runs, saved)
        self.board.add_notice(f"resumed {plural(len(runs), 'run')} from the state file ({restored} with their last values)")
        self._changed.set()

    def dashboard_state(self) -> dict[str, Any]:
        return self.board.saved()

    def refresh(self, session: WatchSession) -> None:
        """Header counters, at most twice a second (counting files walks every run's info)."""
        now = time.monotonic()
        if now - self._refreshed < 0.5:
            return
        self._refreshed = now
        backend = session.follower.backend if session.follower is not None else self.board.backend
        files = session.files()
        if (backend, files) != (self.board.backend, self.board.files_tracked):
            self.board.backend, self.board.files_tracked = backend, files
            self._changed.set()

    def close(self, summary: dict[str, Any]) -> None:
        self._closed.set()
        self._changed.set()
        if self._painter.is_alive():
            self._painter.join()
        self.live.refresh()
        self.live.stop()
        self.emit(summary)
        if getattr(self._out, "failing", False):  # the -o file is still full: the summary goes where notices go
            _to_stderr(plain_line(summary))

    def release(self) -> None:
        if self._out is not sys.stdout:
            self._out.close()


def _make_sink(options: WatchOptions) -> Sink:
    """The sink for ``options.fmt`` on ``--output`` or stdout; ``UsageError`` if the output cannot be opened."""
    try:
        if options.fmt == "rich":
            out = DashboardFile(options.output, _to_stderr) if options.output else sys.stdout
            return RichSink(out, Board(options.logdirs, _dashboard_signals(options.config)))
        stream = LineStream.open(options.output) if options.output else LineStream.stdout()
    except OSError as exc:
        raise UsageError(f"cannot write --output {options.output}: {exc.strerror or exc}") from None
    return LineSink(stream, json_line if options.fmt == "jsonl" else plain_line, split_notices=options.fmt == "plain")


def _dashboard_signals(config: AnalyzerConfig) -> Classifier:
    """The dashboard's columns by the analyzers' own (configurable) tag patterns; whole-model norms only."""
    matcher = SignalMatcher(config.patterns)

    def classify(tag: str, role: str | None) -> str | None:
        match = matcher.classify(tag, histogram=False, role=role)
        if match is None or match.signal not in (TRAIN_LOSS, VAL_LOSS, GRAD_NORM):
            return None
        return None if match.signal == GRAD_NORM and match.param is not None else match.signal

    return classify
