"""Anchor: TensorBoard's Rust data server (RustBoard) reading a logdir until every point is in a client.

    python bench/rustboard.py LOGDIR            # one timed read, JSON on stdout
    python bench/rustboard.py LOGDIR --rounds 3

The server binary ships in the ``tensorboard-data-server`` wheel. It is started as TensorBoard
starts it, on the logdir, with ``--reload once`` (one load cycle), ``--port 0 --port-file``,
``--samples-per-plugin scalars=all,histograms=all`` (no reservoir downsampling: every point is
kept, as tbmon keeps them) and ``-v`` (its "Finished load cycle" log line says when the load is
done). A gRPC client then does what TensorBoard's frontend does: ``ListRuns``, ``ListScalars`` +
``ReadScalars`` (scalars plugin: ``simple_value`` and TF2 tensor scalars alike) and
``ListTensors`` + ``ReadTensors`` (histograms plugin: RustBoard turns ``HistogramProto`` and TF2
``[k,3]`` tensors into ``[k,3]`` tensors), each with a downsample larger than any series.

Charged: wall time from the server's start to the last point decoded in the client; CPU time of
the server process (``/proc/<pid>/stat`` utime+stime, which sums all its threads, read before it
is stopped) plus this client process; peak RSS of the server (VmHWM) and of the client.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.proc_status import status_mb  # noqa: E402

_ALL_POINTS = 1 << 30  # downsample target larger than any series: nothing is dropped
_LOAD_DONE = "Finished load cycle"


def server_binary() -> str:
    import tensorboard_data_server

    path = tensorboard_data_server.server_binary()
    if path is None:
        raise SystemExit("tensorboard-data-server has no binary for this platform")
    return path


def _proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a whole process (all its threads), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _read_all(port: int) -> tuple[int, int]:
    """Every scalar and histogram point of every run, as TensorBoard's frontend asks for them."""
    import grpc
    from tensorboard.data.proto import data_provider_pb2 as pb
    from tensorboard.data.proto import data_provider_pb2_grpc as rpc

    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        stub = rpc.TensorBoardDataProviderStub(channel)
        stub.ListRuns(pb.ListRunsRequest())
        scalars = stub.ReadScalars(
            pb.ReadScalarsRequest(
                plugin_filter=pb.PluginFilter(plugin_name="scalars"),
                downsample=pb.Downsample(num_points=_ALL_POINTS),
            )
        )
        stub.ListScalars(pb.ListScalarsRequest(plugin_filter=pb.PluginFilter(plugin_name="scalars")))
        n_scalars = sum(len(tag.data.value) for run in scalars.runs for tag in run.tags)
        hist_filter = pb.PluginFilter(plugin_name="histograms")
        stub.ListTensors(pb.ListTensorsRequest(plugin_filter=hist_filter))
        tensors = stub.ReadTensors(
            pb.ReadTensorsRequest(plugin_filter=hist_filter, downsample=pb.Downsample(num_points=_ALL_POINTS))
        )
        n_hist = sum(len(tag.data.value) for run in tensors.runs for tag in run.tags)
    return n_scalars, n_hist


def read_logdir(logdir: Path, timeout: float = 600.0) -> dict:
    """One timed RustBoard read of ``logdir``; see the module doc for what is charged."""
    client_cpu = time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        start = time.perf_counter()
        server = subprocess.Popen(
            [
                server_binary(), "--logdir", str(logdir), "--reload", "once", "--port", "0",
                "--port-file", str(port_file), "--samples-per-plugin", "scalars=all,histograms=all",
                "--host", "127.0.0.1", "-v",
            ],
            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )
        try:
            load_s = _wait_for_load(server, start + timeout)
            port = int(port_file.read_text())
            n_scalars, n_hist = _read_all(port)
            seconds = time.perf_counter() - start
            server_cpu = _proc_cpu_seconds(server.pid)
            server_peak = _proc_peak_mb(server.pid)
        finally:
            server.kill()
            server.wait()
    client = time.process_time() - client_cpu
    return {
        "seconds": seconds, "cpu": server_cpu + client, "server_cpu": server_cpu, "client_cpu": client,
        "load_seconds": load_s, "count": n_scalars + n_hist, "scalars": n_scalars, "histograms": n_hist,
        "peak_mb": server_peak, "client_peak_mb": status_mb("VmHWM"),
    }


def _wait_for_load(server: subprocess.Popen, deadline: float) -> float:
    """Block until the server logs the end of its one load cycle; its elapsed time."""
    start = time.perf_counter()
    assert server.stderr is not None
    for line in server.stderr:
        if _LOAD_DONE in line:
            return time.perf_counter() - start
        if time.perf_counter() > deadline:
            break
    raise RuntimeError(f"RustBoard did not finish loading (exit {server.poll()})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logdir", type=Path)
    ap.add_argument("--rounds", type=int, default=1, help="timed reads, each with a fresh server")
    args = ap.parse_args()
    for _ in range(args.rounds):
        print(json.dumps(read_logdir(args.logdir)), flush=True)


if __name__ == "__main__":
    main()
