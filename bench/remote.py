"""Remote logdirs: reading 1,000 runs from an S3-compatible server vs the same files on local disk.

    python bench/remote.py                  # 1,000 runs x 2,000 scalar events (2 M events)
    python bench/remote.py --runs 200       # quicker

moto's S3 server runs as its own process on 127.0.0.1 (so it does not share the reader's GIL);
the runs are uploaded with boto3, and tbmon reads them with s3fs, credentials and endpoint from
the usual AWS environment variables. Each measurement runs in a fresh child process:

- ``local``: ``tbmon.monitor.read`` of the local copy (the anchor);
- ``s3``: the same read of ``s3://bench/fleet`` (one listing, ranged GETs fetched ahead
  concurrently in windows, ``READ_AHEAD_RANGES`` at a time);
- ``s3_serial``: the same with the read-ahead window set to one range, i.e. one GET after the
  other, what a reader without read-ahead does;
- ``poll_idle``: a watcher's poll of the 1,000 unchanged runs after its catch-up (what
  ``tbmon watch s3://…`` does every 5 s): seconds, requests and bytes per poll.

Loopback has almost no latency; against a real store each GET costs 10-50 ms more, so the
serial/concurrent ratio printed here is a lower bound of the gain there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.proc_status import status_mb  # noqa: E402
from bench.read import generate  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "remote"
BUCKET = "bench"
SOURCES = 10  # distinct files, cycled over the runs (generation is not what is measured)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(port: int) -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


def prepare(runs: int, events: int) -> Path:
    """``runs`` run directories, each one event file of ``events`` scalars (20 tags), cached."""
    logdir = OUT / f"fleet-{runs}x{events}"
    if logdir.is_dir():
        return logdir
    sources = []
    for i in range(SOURCES):
        path = OUT / "sources" / f"{events}" / f"events.out.tfevents.1763900000.bench.{i}"
        if not path.exists():
            generate(path, events, hist_every=10**9)  # scalars only (one histogram set at step 0)
        sources.append(path)
    tmp = logdir.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for r in range(runs):
        (tmp / f"run{r:04d}").mkdir(parents=True)
        os.link(sources[r % SOURCES], tmp / f"run{r:04d}" / sources[r % SOURCES].name)
    tmp.rename(logdir)
    return logdir


def upload(logdir: Path, env: dict[str, str]) -> None:
    import boto3

    os.environ.update(env)
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    files = [p for p in logdir.rglob("*") if p.is_file()]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: client.put_object(Bucket=BUCKET, Key=f"fleet/{p.relative_to(logdir).as_posix()}", Body=p.read_bytes()), files))


# -- measurements, each in a child process -------------------------------------------


def child(method: str, logdir: str) -> None:
    import tbmon.monitor.remote as remote
    from tbmon.monitor import read
    from tbmon.monitor.reader import LogdirReader

    if method == "s3_serial":
        remote.READ_AHEAD_RANGES = 1
    stats: dict[str, float] = {}
    t, cpu = time.perf_counter(), time.process_time()
    if method == "poll_idle":
        reader = LogdirReader(logdir)
        reader.poll()
        requests, fetched = reader.store.requests, reader.store.bytes_fetched
        t, cpu = time.perf_counter(), time.process_time()
        polls = 5
        for _ in range(polls):
            assert not reader.poll().batches
        seconds = (time.perf_counter() - t) / polls
        stats = {"requests": (reader.store.requests - requests) / polls, "bytes": (reader.store.bytes_fetched - fetched) / polls}
        count = len(reader.runs)
    else:
        # what `tbmon report` does; the store it opens is kept to read its request counters
        import tbmon.monitor.reader as reader_module
        from tbmon.monitor.storage import open_logdir

        stores = []
        reader_module.open_logdir = lambda path: stores.append(open_logdir(path)) or stores[-1]
        result = read(logdir)
        seconds = time.perf_counter() - t
        count = len(result.scalars) + len(result.histograms)
        stats = {"requests": getattr(stores[0], "requests", 0), "bytes": getattr(stores[0], "bytes_fetched", 0)}
    print(json.dumps({"seconds": seconds, "cpu": time.process_time() - cpu, "count": count,
                      "peak_mb": status_mb("VmHWM"), **stats}))


def run_child(method: str, logdir: str, env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", method, logdir], env=env, capture_output=True,
                          text=True, timeout=1800)
    if done.returncode:
        raise SystemExit(f"{method} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--events", type=int, default=2000, help="scalar events per run")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "LOGDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    logdir = prepare(args.runs, args.events)
    port = _free_port()
    env = _env(port)
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("moto server did not start") from None
                time.sleep(0.2)
        t = time.perf_counter()
        upload(logdir, env)
        print(f"{args.runs} runs x {args.events} scalar events uploaded in {time.perf_counter() - t:.1f} s "
              f"({sum(p.stat().st_size for p in logdir.rglob('*') if p.is_file()) / 1e6:.0f} MB)")
        url = f"s3://{BUCKET}/fleet"
        results = {
            "local": run_child("local", str(logdir), env),
            "s3": run_child("s3", url, env),
            "s3_serial": run_child("s3_serial", url, env),
            "poll_idle": run_child("poll_idle", url, env),
        }
    finally:
        server.terminate()
        server.wait(30)
    print(f"{'method':<10} {'seconds':>8} {'cpu s':>7} {'events':>10} {'requests':>9} {'MB fetched':>10} {'peak MB':>8}")
    for name, r in results.items():
        print(f"{name:<10} {r['seconds']:>8.2f} {r['cpu']:>7.2f} {r['count']:>10} {r.get('requests', 0):>9.0f} "
              f"{r.get('bytes', 0) / 1e6:>10.1f} {r['peak_mb']:>8.0f}")
    local, s3, serial = results["local"]["seconds"], results["s3"]["seconds"], results["s3_serial"]["seconds"]
    print(f"s3 / local: {s3 / local:.2f}x the time; s3 without read-ahead / with: {serial / s3:.2f}x")
    print(f"idle poll of {args.runs} runs: {results['poll_idle']['seconds'] * 1000:.0f} ms, "
          f"{results['poll_idle']['requests']:.0f} request(s), {results['poll_idle']['bytes']:.0f} bytes")


if __name__ == "__main__":
    main()
