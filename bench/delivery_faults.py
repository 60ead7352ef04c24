"""Alerts lost and repeated when `tbmon watch` is killed or its output disk is full (issue 15).

Three scenarios, each with real `tbmon watch` processes on real files (the helpers of
tests/faults/test_delivery_faults.py):

- ``queued``: 6 diverged runs, a slow ``--on-alert`` command; SIGKILL once the command got the
  first alert; restart; count alerts that never reached the command / the output.
- ``devfull``: ``-o /dev/full`` (ENOSPC) and an ``--on-alert`` command, 8 alerts; count those
  that never reached the command, and whether the watcher is still running.
- ``loop``: a writer diverges 2 runs per round while the watcher is SIGKILLed after a random
  0.3-2 s and restarted, ``--rounds`` times; then one clean run; count lost and repeated alerts
  per sink and leftover temp files of interrupted saves.

Run it against another tree to compare (e.g. the code before the fix, exported to
``/tmp/old/tbmon/{monitor,analyzers}`` with an empty ``tbmon/__init__.py``)::

    python bench/delivery_faults.py                              # this tree
    PYTHONPATH=/tmp/old python bench/delivery_faults.py          # the other one
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.faults.test_delivery_faults import CLI, NAN, alert_runs, diverged_runs  # noqa: E402
from tests.monitor.test_watch_e2e import Writer  # noqa: E402


def watch(*args: str, err: Path) -> subprocess.Popen[bytes]:
    with open(err, "ab") as stderr:
        return subprocess.Popen([*CLI, "watch", "--format", "jsonl", *args], stdout=subprocess.DEVNULL, stderr=stderr)


def settle(condition: Callable[[], Any], seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not condition():
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


def queued(work: Path) -> dict[str, int]:
    logdir, got, out = work / "logs", work / "got", work / "out"
    runs = [f"r{i}" for i in range(6)]
    diverged_runs(logdir, runs)
    args = ("--state", str(work / "s.json"), "-o", str(out), "--on-alert", f"cat >> {got}; echo >> {got}; sleep 0.5", str(logdir))
    first = watch(*args, err=work / "err")
    settle(lambda: alert_runs(got), 60)
    first.kill()
    first.wait()
    again = watch(*args, err=work / "err")
    settle(lambda: set(alert_runs(got)) == set(runs), 20)
    stop(again)
    return {"alerts": len(runs), "lost_command": len(set(runs) - set(alert_runs(got))),
            "lost_output": len(set(runs) - set(alert_runs(out)))}


def devfull(work: Path) -> dict[str, int]:
    logdir, got = work / "logs", work / "got"
    runs = [f"e{i}" for i in range(8)]
    diverged_runs(logdir, runs)
    proc = watch("--no-state", "-o", "/dev/full", "--on-alert", f"cat >> {got}; echo >> {got}", str(logdir), err=work / "err")
    settle(lambda: set(alert_runs(got)) == set(runs) or proc.poll() is not None, 30)
    time.sleep(2)
    alive = proc.poll() is None
    stop(proc)
    return {"alerts": len(runs), "lost_command": len(set(runs) - set(alert_runs(got))), "still_watching": int(alive)}


def loop(work: Path, rounds: int) -> dict[str, int]:
    logdir, got, out = work / "logs", work / "got", work / "out"
    args = ("--state", str(work / "s.json"), "-o", str(out), "--on-alert", f"cat >> {got}; echo >> {got}; sleep 0.2", str(logdir))
    writer, rng, runs = Writer(logdir), random.Random(1), []
    try:
        for round_ in range(rounds):
            proc = watch(*args, err=work / "err")
            for _ in range(2):
                runs.append(f"run{len(runs)}")
                writer.losses(runs[-1], [1.0, 0.9, NAN])
            time.sleep(rng.uniform(0.3, 2.0) if round_ else 3.0)
            proc.kill()
            proc.wait()
    finally:
        writer.close()
    last = watch(*args, err=work / "err")
    settle(lambda: set(alert_runs(out)) >= set(runs) and set(alert_runs(got)) >= set(runs), 30)
    stop(last)
    printed, commanded = alert_runs(out), alert_runs(got)
    return {"kills": rounds, "alerts": len(runs), "lost_output": len(set(runs) - set(printed)),
            "lost_command": len(set(runs) - set(commanded)), "repeats_output": len(printed) - len(set(printed)),
            "repeats_command": len(commanded) - len(set(commanded)), "temp_files_left": len(list(work.glob(".s.json.*.tmp")))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=40, help="SIGKILLs in the loop scenario")
    args = parser.parse_args()
    print("queued:", queued(Path(tempfile.mkdtemp(prefix="tbmon-faults-"))))
    print("devfull:", devfull(Path(tempfile.mkdtemp(prefix="tbmon-faults-"))))
    print("loop:", loop(Path(tempfile.mkdtemp(prefix="tbmon-faults-")), args.rounds))


if __name__ == "__main__":
    main()
