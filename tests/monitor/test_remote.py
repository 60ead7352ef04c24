"""Remote logdirs (``s3://``) against a real S3-compatible server: moto's server mode, started
here on 127.0.0.1. Event files are written locally by tensorboardX and uploaded with boto3 (a
client other than the s3fs that tbmon reads with); tbmon finds the server and the credentials
in the usual AWS environment variables, as it would for AWS itself.

Nothing is mocked except, in one test, the absence of s3fs (it is installed here; the import is
blocked in that subprocess). gcsfs and adlfs are really absent from the dev install.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from moto.server import ThreadedMotoServer
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto import event_pb2, summary_pb2

import tbmon.monitor.remote as remote_module
from tbmon.monitor import read
from tbmon.monitor.reader import LogdirReader
from tests.monitor.test_watch_e2e import CLI, WAIT, Watcher, is_alert
from tests.test_packaging import _modules_loaded_by

_BUCKETS = itertools.count()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on loopback, and the AWS environment pointing at it (also for subprocesses)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}",
        "AWS_MAX_ATTEMPTS": "1",  # a stopped server fails fast (s3fs still retries on its own)
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    state = {"server": server, "host": host, "port": port}
    yield state  # type: ignore[misc]
    state["server"].stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


class Bucket:
    """A fresh bucket on the test server, written with boto3."""

    def __init__(self) -> None:
        import boto3

        self.name = f"tbmon-test-{next(_BUCKETS)}-{os.getpid()}"
        self.client = boto3.client("s3")
        self.client.create_bucket(Bucket=self.name)

    def url(self, prefix: str) -> str:
        return f"s3://{self.name}/{prefix}"

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=data)

    def upload(self, local: Path, prefix: str) -> int:
        """Every file under ``local`` to ``prefix/…`` (the layout a sync tool makes); the count."""
        files = [p for p in sorted(local.rglob("*")) if p.is_file()]
        for path in files:
            self.put(f"{prefix}/{path.relative_to(local).as_posix()}", path.read_bytes())
        return len(files)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.name, Key=key)


@pytest.fixture
def bucket(s3_endpoint) -> Bucket:
    return Bucket()


class GrowingFile:
    """A tensorboardX event file flushed record by record, as a training job writes it."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._writer = EventsWriter(str(directory / "events"), ".0")
        self.path = Path(self._writer._file_name)

    def losses(self, values: list[float], start: int = 0) -> bytes:
        for step, value in enumerate(values, start):
            summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="train/loss", simple_value=value)])
            self._writer.write_event(event_pb2.Event(wall_time=1.7e9 + step, step=step, summary=summary))
        self._writer.flush()
        return self.path.read_bytes()


def _frame(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return frame.sort_values(["run", "tag", "step"])[columns].reset_index(drop=True)


def _steps(batches, run: str) -> list[int]:  # noqa: ANN001 - RunBatch list
    return [int(x) for b in batches if b.run == run for s in b.scalars for x in s.step]


def _local_logdir(root: Path, tb) -> Path:  # noqa: ANN001 - the tb fixture
    """Runs of every kind the reader distinguishes: scalars, histograms, a Keras pair, a NaN, a non-event file."""
    tb.scalars(root / "healthy", {"train/loss": [1.0 / (i + 1) for i in range(40)], "val/loss": [0.9] * 40})
    tb.histograms(root / "healthy", {"grad/w": [[0.1 * i, -0.2, 0.3] for i in range(5)]})
    tb.scalars(root / "keras" / "train", {"epoch_loss": [1.0, 0.8, 0.6]})
    tb.scalars(root / "keras" / "validation", {"epoch_loss": [1.1, 0.9, 0.8]})
    tb.scalars(root / "nan", {"train/loss": [1.0, 0.9, float("nan"), float("nan")]})
    (root / "healthy" / "notes.txt").write_text("not an event file")
    return root


def test_an_s3_logdir_reads_exactly_like_its_local_copy(tmp_path: Path, tb, bucket: Bucket) -> None:
    local = _local_logdir(tmp_path / "logs", tb)
    bucket.upload(local, "team/logs")
    remote = read(bucket.url("team/logs/"))  # a trailing slash, as users paste it
    here = read(local)
    assert [r.run for r in remote.runs] == [r.run for r in here.runs] == ["healthy", "keras/train", "keras/validation", "nan"]
    assert [(r.experiment_dir, r.role, r.points, r.last_step) for r in remote.runs] == [
        (r.experiment_dir, r.role, r.points, r.last_step) for r in here.runs
    ]
    columns = ["run", "tag", "step", "wall_time", "value"]
    pd.testing.assert_frame_equal(_frame(remote.scalars, columns), _frame(here.scalars, columns))
    columns = ["run", "tag", "step", "min", "max", "num", "sum", "sum_squares"]
    pd.testing.assert_frame_equal(_frame(remote.histograms, columns), _frame(here.histograms, columns))
    assert len(remote.histograms) == 5 and remote.scalars["value"].isna().sum() == 2
    (healthy,) = [r for r in remote.runs if r.run == "healthy"]
    assert all(f.path.startswith(f"s3://{bucket.name}/team/logs/healthy/events.out.tfevents") for f in healthy.files)
    assert [f.size for f in healthy.files] == [f.size for f in next(r for r in here.runs if r.run == "healthy").files]
    assert remote.problems == here.problems == []


def test_a_whole_bucket_is_a_logdir(tmp_path: Path, tb, bucket: Bucket) -> None:
    path = tb.scalars(tmp_path / "exp" / "train", {"epoch_loss": [1.0, 0.5]})
    bucket.put(f"exp/train/{path.name}", path.read_bytes())
    bucket.put("exp/train/.sync-tmp.tfevents.part", b"a half-uploaded temp copy")  # a hidden name: skipped
    (run,) = read(f"s3://{bucket.name}").runs
    assert (run.run, run.experiment_dir, run.role, run.points) == ("exp/train", "exp", "train", 2)
    assert [f.path for f in run.files] == [f"s3://{bucket.name}/exp/train/{path.name}"]


def test_an_object_rewritten_with_more_bytes_is_read_from_where_it_stopped(tmp_path: Path, bucket: Bucket) -> None:
    grow = GrowingFile(tmp_path / "run")
    key = f"logs/run/{grow.path.name}"
    first = grow.losses([1.0, 0.9, 0.8])
    bucket.put(key, first)
    reader = LogdirReader(bucket.url("logs"))
    assert _steps(reader.poll().batches, "run") == [0, 1, 2]
    requests, fetched = reader.store.requests, reader.store.bytes_fetched
    assert fetched == len(first)  # the head for the rewrite check came with the first read

    second = grow.losses([0.7, 0.6], start=3)
    bucket.put(key, second)  # S3 replaces the object whole: same start, more bytes
    polled = reader.poll()
    assert _steps(polled.batches, "run") == [3, 4] and polled.problems == []
    assert reader.runs["run"].restarts == []
    # only the new bytes, plus the 64-byte head that tells "grew" from "replaced"
    assert reader.store.bytes_fetched - fetched == len(second) - len(first) + 64
    assert reader.store.requests - requests == 3  # one listing, two ranged GETs

    requests, fetched = reader.store.requests, reader.store.bytes_fetched
    assert reader.poll().batches == []
    assert (reader.store.requests - requests, reader.store.bytes_fetched - fetched) == (1, 0)  # the listing only


def test_a_restarted_watcher_resumes_an_s3_logdir_from_its_state(tmp_path: Path, bucket: Bucket) -> None:
    grow = GrowingFile(tmp_path / "run")
    key = f"logs/run/{grow.path.name}"
    bucket.put(key, grow.losses([1.0, 0.9]))
    first = LogdirReader(bucket.url("logs"))
    first.poll()
    state = json.loads(json.dumps(first.state_dict()))  # through JSON, as the state file stores it
    assert list(state["runs"]["run"]["files"]) == [f"run/{grow.path.name}"]  # relative to the logdir

    resumed = LogdirReader(bucket.url("logs"))
    resumed.load_state_dict(state)
    assert resumed.poll().batches == []  # nothing re-read: only each object's head is checked
    assert resumed.store.bytes_fetched == 64
    bucket.put(key, grow.losses([0.8], start=2))
    assert _steps(resumed.poll().batches, "run") == [2]


def test_a_replaced_object_is_read_again_from_the_start(tmp_path: Path, bucket: Bucket, tb) -> None:
    old = tb.scalars(tmp_path / "a", {"train/loss": [5.0, 4.0]})
    new = tb.scalars(tmp_path / "b", {"train/loss": [3.0, 2.0, 1.0]}, wall_times=[1.8e9, 1.8e9 + 1, 1.8e9 + 2])
    key = "logs/run/events.out.tfevents.1.host"
    bucket.put(key, old.read_bytes())
    reader = LogdirReader(bucket.url("logs"))
    reader.poll()
    bucket.put(key, new.read_bytes())  # another file under the same key, with more bytes
    polled = reader.poll()
    assert [p.kind for p in polled.problems] == ["rewritten"]
    assert [float(v) for b in polled.batches for s in b.scalars for v in s.value] == [3.0, 2.0, 1.0]
    assert [r.cause for r in reader.runs["run"].restarts] == ["rewritten"]


def test_deleted_objects_remove_their_run(tmp_path: Path, bucket: Bucket, tb) -> None:
    keys = {}
    for run in ("a", "b"):
        path = tb.scalars(tmp_path / run, {"train/loss": [1.0]})
        keys[run] = f"logs/{run}/{path.name}"
        bucket.put(keys[run], path.read_bytes())
    reader = LogdirReader(bucket.url("logs"))
    assert sorted(reader.poll().new_runs) == ["a", "b"]
    bucket.delete(keys["a"])
    polled = reader.poll()
    assert polled.removed_runs == ["a"] and [p.kind for p in polled.problems] == ["deleted"]
    assert list(reader.runs) == ["b"]


def test_an_unreachable_store_is_backed_off_and_followed_again_once_back(
    tmp_path: Path, bucket: Bucket, tb, s3_endpoint, monkeypatch
) -> None:
    path = tb.scalars(tmp_path / "run", {"train/loss": [1.0, 0.5]})
    bucket.put(f"logs/run/{path.name}", path.read_bytes())
    reader = LogdirReader(bucket.url("logs"))
    reader.poll()
    monkeypatch.setattr(remote_module, "FIRST_BACKOFF", 1.0)
    s3_endpoint["server"].stop()
    try:
        down = reader.poll()
        (problem,) = down.problems  # one line for the store, none per object
        assert problem.kind == "unreadable" and problem.path == bucket.url("logs")
        assert "Could not connect" in problem.message and "retrying in 1 s" in problem.message
        assert down.removed_runs == [] and list(reader.runs) == ["run"]  # a failed listing deletes nothing
        requests = reader.store.requests
        assert reader.poll() == type(down)()  # within the backoff: no request, nothing repeated
        assert reader.store.requests == requests
    finally:
        server = ThreadedMotoServer(ip_address=s3_endpoint["host"], port=s3_endpoint["port"], verbose=False)
        server.start()
        s3_endpoint["server"] = server
    time.sleep(1.1)
    more = tb.scalars(tmp_path / "run", {"train/loss": [0.4]}, steps=[2])
    bucket.put(f"logs/run/{more.name}", more.read_bytes())
    back = reader.poll()
    assert back.problems == [] and _steps(back.batches, "run") == [2]


def test_local_logdirs_never_import_fsspec(tmp_path: Path, tb) -> None:
    tb.scalars(tmp_path / "run", {"train/loss": [1.0]})
    loaded = _modules_loaded_by(f"from tbmon.monitor import read; read({str(tmp_path)!r})")
    assert "tbmon.monitor.storage" in loaded
    assert not {m for m in loaded if m.split(".")[0] in ("fsspec", "s3fs", "botocore")}
    assert "tbmon.monitor.remote" not in loaded


def test_any_fsspec_scheme_works_through_the_same_code(tmp_path: Path) -> None:
    """fsspec's in-memory filesystem: another backend (sync, no ETag, its own path rules)."""
    import fsspec

    memory = fsspec.filesystem("memory")
    grow = GrowingFile(tmp_path / "run")
    target = f"/tbmon-mem-{os.getpid()}/logs/run/{grow.path.name}"
    memory.pipe(target, grow.losses([1.0, 0.9]))
    try:
        reader = LogdirReader(f"memory://tbmon-mem-{os.getpid()}/logs")
        assert _steps(reader.poll().batches, "run") == [0, 1]
        time.sleep(0.01)  # the memory store's version is its creation time
        memory.pipe(target, grow.losses([0.8], start=2))
        polled = reader.poll()
        assert _steps(polled.batches, "run") == [2] and polled.problems == []
    finally:
        memory.rm(f"/tbmon-mem-{os.getpid()}", recursive=True)


def _cli(*args: str, pre: str = "") -> subprocess.CompletedProcess:
    code = f"import sys\n{pre}\nfrom tbmon.monitor.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=WAIT)


def test_report_json_of_an_s3_logdir_matches_the_local_report(tmp_path: Path, tb, bucket: Bucket) -> None:
    local = _local_logdir(tmp_path / "logs", tb)
    bucket.upload(local, "logs")
    remote = subprocess.run([*CLI, "report", bucket.url("logs"), "--format", "json"], capture_output=True, text=True, timeout=WAIT)
    here = subprocess.run([*CLI, "report", str(local), "--format", "json"], capture_output=True, text=True, timeout=WAIT)
    assert remote.returncode == here.returncode == 1, remote.stderr  # the NaN run is critical
    # the same notes (e.g. a run without a validation loss) as for the local copy, nothing else
    assert remote.stderr.replace(bucket.url("logs"), "LOGDIR") == here.stderr.replace(str(local), "LOGDIR")
    got, want = json.loads(remote.stdout), json.loads(here.stdout)
    assert got["logdir"] == bucket.url("logs")

    def comparable(report: dict) -> str:
        text = json.dumps({k: v for k, v in report.items() if k not in ("logdir", "generated_at")}, sort_keys=True)
        return text.replace(bucket.url("logs"), "LOGDIR").replace(str(local), "LOGDIR")

    assert comparable(got) == comparable(want)
    assert any(a["run"] == "nan" and a["kind"] == "divergence" for a in got["alerts"])


def test_report_jobs_2_of_an_s3_logdir_prints_what_jobs_1_does(tmp_path: Path, tb, bucket: Bucket) -> None:
    """``--jobs``: the parts of a remote logdir are listed and read by the workers themselves."""
    from tbmon.monitor import fleet

    local = _local_logdir(tmp_path / "logs", tb)
    bucket.upload(local, "fleet/logs")
    url = bucket.url("fleet/logs")
    parts = fleet.plan(url).parts
    assert [p.runs for p in parts] == [("healthy",), ("keras/train", "keras/validation"), ("nan",)]
    assert all(f.startswith(f"{url}/") for p in parts for f in p.files) and all(p.size > 0 for p in parts)
    command = [*CLI, "report", url, "--format", "json", "--jobs"]
    done = [subprocess.run([*command, jobs], capture_output=True, text=True, timeout=WAIT) for jobs in ("1", "2")]
    assert [d.returncode for d in done] == [1, 1], done[1].stderr  # the NaN run is critical
    assert done[0].stdout == done[1].stdout and done[0].stderr == done[1].stderr
    report = json.loads(done[1].stdout)
    assert report["logdir"] == url
    assert [r["run"] for r in report["runs"]] == ["healthy", "keras/train", "keras/validation", "nan"]
    assert any(a["run"] == "nan" and a["kind"] == "divergence" for a in report["alerts"])


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["report", "gs://bucket/logs"], "tbmon: reading gs:// logdirs needs gcsfs: pip install 'tbmon[gcs]'"),
        (["watch", "az://container/logs"], "tbmon: reading az:// logdirs needs adlfs: pip install 'tbmon[azure]'"),
        (["report", "s3://bucket/logs"], "tbmon: reading s3:// logdirs needs s3fs: pip install 'tbmon[s3]'"),
        (["watch", "s3://bucket/logs"], "tbmon: reading s3:// logdirs needs s3fs: pip install 'tbmon[s3]'"),
    ],
)
def test_a_missing_backend_names_the_extra_to_install(command: list[str], message: str) -> None:
    block = "sys.modules['s3fs'] = None  # s3fs is installed in dev: make it missing" if "s3://" in command[1] else ""
    done = _cli(*command, pre=block)
    assert (done.returncode, done.stderr.strip()) == (2, message)


def test_bad_remote_logdirs_exit_2_with_one_line(bucket: Bucket) -> None:
    unknown = _cli("report", "nosuchscheme://x/y")
    assert unknown.returncode == 2 and unknown.stderr.startswith("tbmon: cannot open logdir 'nosuchscheme://x/y'")
    missing = _cli("report", "s3://no-such-bucket-here/logs")
    assert missing.returncode == 2
    assert missing.stderr.strip() == "tbmon: logdir 's3://no-such-bucket-here/logs' does not exist (no bucket, or no objects under that prefix)"
    once = _cli("watch", "--once", bucket.url("empty"))
    assert (once.returncode, once.stderr.strip()) == (2, f"tbmon: no such directory: {bucket.url('empty')}")
    for done in (unknown, missing, once):
        assert "Traceback" not in done.stderr


def test_watch_follows_an_s3_prefix_from_before_it_exists_to_a_nan(tmp_path: Path, bucket: Bucket) -> None:
    url = bucket.url("live")
    watcher = Watcher(url, "--poll", "0.5", "--no-state")
    try:
        watcher.wait_for(lambda r: r["type"] == "status" and r["message"] == f"waiting for {url} to appear")
        grow = GrowingFile(tmp_path / "exp1")
        key = f"live/exp1/{grow.path.name}"
        bucket.put(key, grow.losses([1.0, 0.8, 0.6]))
        watcher.wait_for(lambda r: r["type"] == "run" and r["run"] == "exp1" and r["event"] == "new")
        bucket.put(key, grow.losses([float("nan")], start=3))  # the sync tool uploads the grown file again
        alert = watcher.wait_for(is_alert("exp1"))
        code = watcher.stop()
    finally:
        watcher.kill()
    assert alert["step"] == 3 and alert["severity"] == "critical"
    assert code == 1 and "Traceback" not in watcher.stderr
    assert [r for r in watcher.records if r["type"] == "problem"] == []  # re-uploads are growth, not rewrites
    assert any(r["type"] == "status" and r["message"] == f"following {url} with polling" for r in watcher.records)


def test_watch_state_of_an_s3_logdir_repeats_no_alert(tmp_path: Path, bucket: Bucket) -> None:
    grow = GrowingFile(tmp_path / "exp1")
    key = f"logs/exp1/{grow.path.name}"
    bucket.put(key, grow.losses([1.0, float("nan")]))
    state = tmp_path / "state.json"
    command = [*CLI, "watch", "--once", "--format", "jsonl", "--state", str(state), bucket.url("logs")]
    first = subprocess.run(command, capture_output=True, text=True, timeout=WAIT)
    bucket.put(key, grow.losses([0.5], start=2))  # grew while no one watched
    again = subprocess.run(command, capture_output=True, text=True, timeout=WAIT)
    assert first.returncode == again.returncode == 1, again.stderr
    records = [[json.loads(line) for line in done.stdout.splitlines()] for done in (first, again)]
    assert [r["kind"] for r in records[0] if r["type"] == "alert"] == ["divergence"]
    assert [r for r in records[1] if r["type"] in ("alert", "problem")] == []
    assert records[1][-1]["alerts_total"] == 1
    saved = json.loads(state.read_text())
    assert saved["logdirs"] == [bucket.url("logs")]
    assert saved["readers"][bucket.url("logs")]["runs"]["exp1"]["files"][f"exp1/{grow.path.name}"]["framer"]["offset"] == len(
        grow.path.read_bytes()
    )


@pytest.mark.slow
def test_report_of_1000_runs_on_s3(tmp_path: Path, bucket: Bucket, tb) -> None:
    """1,000 runs in one prefix: one listing, ranged GETs fetched ahead concurrently (bench/remote.py times it)."""
    sources = [tb.scalars(tmp_path / f"src{i}", {"train/loss": [1.0 / (i + 1 + s) for s in range(20)]}) for i in range(10)]
    for i in range(1000):
        path = sources[i % 10]
        bucket.put(f"fleet/run{i:04d}/{path.name}", path.read_bytes())
    started = time.monotonic()
    result = read(bucket.url("fleet"))
    elapsed = time.monotonic() - started
    assert len(result.runs) == 1000 and result.problems == []
    assert len(result.scalars) == 1000 * 20
    assert result.scalars.groupby("run")["value"].first().tolist()[:3] == pytest.approx([1.0, 0.5, 1 / 3])
    assert elapsed < 120, elapsed  # a generous bound for a loaded CI machine; bench/remote.py measures it
