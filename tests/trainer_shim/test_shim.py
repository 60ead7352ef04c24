"""TrainerShim inside a real CPU training: what it writes, how fast it lands, what it costs."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tbmon.monitor import read
from tbmon.trainer_shim import TrainerShim, stats
from tests.trainer_shim.training import load, mlp, train

PARAMS = ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_training_run_reads_back_in_tensorboard_with_the_contract_tags(tmp_path: Path) -> None:
    with TrainerShim(tmp_path, mlp(), hist_every=10, norms_every=5) as shim:
        losses = train(shim, shim.model, 30)
        shim.log_scalars(30, {"val/loss": 0.25})
    acc = load(tmp_path)
    scalars, hists = set(acc.Tags()["scalars"]), set(acc.Tags()["histograms"])
    assert {"train/loss", "train/learning_rate", "train/grad_norm", "val/loss"} <= scalars
    for p in PARAMS:
        assert {f"grad_norm/{p}", f"weight_norm/{p}", f"update_ratio/{p}", f"grad_zero_frac/{p}", f"grad_nonfinite/{p}"} <= scalars
        assert f"grad/{p}" in hists
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx(losses, rel=1e-6)
    assert [e.step for e in acc.Scalars("train/grad_norm")] == [0, 5, 10, 15, 20, 25]
    assert [e.step for e in acc.Histograms("grad/0.weight")] == [0, 10, 20]
    assert [e.step for e in acc.Scalars("update_ratio/0.weight")] == [10, 20]  # needs a previous step
    assert acc.Scalars("val/loss")[0].value == 0.25
    # TensorBoard's own loader with its migration (the --load_fast=false path) gives [k,3] tensors
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    migrated = 0
    for event in EventFileLoader(shim.path).Load():
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == "histograms":
                buckets = tensor_util.make_ndarray(value.tensor)
                assert buckets.shape[1] == 3 and (buckets[:, 0] <= buckets[:, 1]).all()
                numel = {"0.weight": 64 * 32, "0.bias": 32, "2.weight": 32 * 10, "2.bias": 10}[value.tag[5:]]
                assert buckets[:, 2].sum() == numel  # small tensors: every element in a bucket
                migrated += 1
    assert migrated == 3 * len(PARAMS)


def test_written_statistics_equal_a_reference_on_the_same_gradients(tmp_path: Path) -> None:
    """The gradients seen at each histogram step are copied aside and recomputed with numpy."""
    seen: dict[int, dict[str, np.ndarray]] = {}
    weights: dict[int, dict[str, np.ndarray]] = {}

    def keep(step: int, model: torch.nn.Module) -> None:
        if step % 4 == 0:
            seen[step] = {n: p.grad.numpy().astype(np.float64).copy() for n, p in model.named_parameters()}
            weights[step] = {n: p.detach().numpy().astype(np.float64).copy() for n, p in model.named_parameters()}

    with TrainerShim(tmp_path, mlp(), hist_every=4, norms_every=0) as shim:
        train(shim, shim.model, 9, before_log=keep)
    acc = load(tmp_path)
    for step, grads in seen.items():
        total = math.sqrt(sum(float(g.ravel() @ g.ravel()) for g in grads.values()))
        (ev,) = [e for e in acc.Scalars("train/grad_norm") if e.step == step]
        assert ev.value == pytest.approx(total, rel=1e-5)
        for name, g in grads.items():
            (h,) = [e.histogram_value for e in acc.Histograms(f"grad/{name}") if e.step == step]
            flat = g.ravel()
            assert (h.min, h.max, h.num) == (pytest.approx(flat.min()), pytest.approx(flat.max()), flat.size)
            assert h.sum == pytest.approx(flat.sum(), rel=1e-4, abs=1e-7)
            assert h.sum_squares == pytest.approx(float(flat @ flat), rel=1e-5)
            counts = np.histogram(flat, bins=np.r_[-np.inf, stats.BUCKET_LIMITS])[0]  # ≤16k: exact
            lo = int(np.flatnonzero(counts)[0])
            assert list(h.bucket) == counts[lo : lo + len(h.bucket)].tolist()
            assert list(h.bucket_limit) == stats.BUCKET_LIMITS[lo : lo + len(h.bucket)].tolist()
            (zf,) = [e.value for e in acc.Scalars(f"grad_zero_frac/{name}") if e.step == step]
            assert zf == pytest.approx((flat == 0).mean(), abs=1e-7)
            (wn,) = [e.value for e in acc.Scalars(f"weight_norm/{name}") if e.step == step]
            assert wn == pytest.approx(np.linalg.norm(weights[step][name]), rel=1e-5)
    # update ratio of the small bias (≤ UPDATE_SAMPLE entries, so exact) between steps 0 and 4
    (ur,) = [e.value for e in acc.Scalars("update_ratio/2.bias") if e.step == 4]
    w0, w4 = weights[0]["2.bias"], weights[4]["2.bias"]
    assert ur == pytest.approx(np.linalg.norm(w4 - w0) / np.linalg.norm(w4), rel=1e-5)


def test_tbmon_reader_sees_the_same_series(tmp_path: Path) -> None:
    with TrainerShim(tmp_path, mlp(), hist_every=5) as shim:
        losses = train(shim, shim.model, 12)
    result = read(tmp_path)
    loss = result.scalars[result.scalars.tag == "train/loss"].sort_values("step")
    assert loss.value.to_numpy() == pytest.approx(losses, rel=1e-6)
    grad = result.histograms[result.histograms.tag == "grad/0.weight"]
    assert grad.step.tolist() == [0, 5, 10] and (grad.num == 64 * 32).all()


class _TransferCounter:
    """Counts, on the calling thread only, every Python-level way tensor data reaches the host.

    On a GPU each of these is a device-to-host copy or a sync: ``item``, ``tolist``,
    ``numpy``, ``cpu``, ``to``, ``__float__/__int__/__bool__/__index__/__array__`` and
    ``copy_`` into a CPU tensor. The shim's code path is the same on CPU and CUDA (only the
    ``non_blocking``/pinned flags differ), so counting these calls on CPU counts its transfers.
    Reading the host copy that ``stats.to_host`` made is not a transfer and is not counted.
    """

    METHODS = ("item", "tolist", "numpy", "cpu", "to", "__float__", "__int__", "__bool__", "__index__", "__array__")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        self.thread = threading.get_ident()
        self.host_copies: dict[int, torch.Tensor] = {}  # id -> tensor (kept alive: ids stay unique)
        original_to_host = stats.to_host

        def to_host(t: torch.Tensor) -> stats.HostCopy:
            copy = original_to_host(t)
            self.host_copies[id(copy.tensor)] = copy.tensor
            return copy

        monkeypatch.setattr(stats, "to_host", to_host)
        for name in self.METHODS:
            self._wrap(monkeypatch, name, lambda self_, *a, **k: True)
        self._wrap(monkeypatch, "copy_", lambda self_, *a, **k: self_.device.type == "cpu")

    def _wrap(self, monkeypatch: pytest.MonkeyPatch, name: str, counts: object) -> None:
        original = getattr(torch.Tensor, name)

        def wrapper(self_: torch.Tensor, *args: object, **kwargs: object) -> object:
            on_training_thread = threading.get_ident() == self.thread and id(self_) not in self.host_copies
            if on_training_thread and counts(self_, *args, **kwargs):  # type: ignore[operator]
                self.calls.append(name)
            return original(self_, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)


def test_one_host_transfer_per_logging_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = mlp()
    with TrainerShim(tmp_path, model, hist_every=2, norms_every=1) as shim:
        train(None, model, 1)  # gradients present
        loss = torch.tensor(0.5)
        counter = _TransferCounter(monkeypatch)
        per_call = {}
        for step, label in ((0, "histogram step"), (1, "norm step"), (3, "norm step 2")):
            counter.calls.clear()
            shim.log_gradients(step)
            per_call[label] = list(counter.calls)
        counter.calls.clear()
        shim.log_scalars(0, loss=loss, val_loss=loss * 2, lr=0.1)
        per_call["scalars"] = list(counter.calls)
        monkeypatch.undo()
    assert per_call == {k: ["copy_"] for k in per_call}
    assert len(load(tmp_path).Histograms("grad/0.weight")) == 1  # and the data did arrive


def test_event_is_readable_within_a_second_without_flush_or_close(tmp_path: Path) -> None:
    shim = TrainerShim(tmp_path, flush_secs=0.5)
    try:
        shim.log_scalars(7, loss=1.25)
        start = time.monotonic()
        while time.monotonic() - start < 3.0:
            acc = load(tmp_path)
            if "train/loss" in acc.Tags()["scalars"]:
                break
            time.sleep(0.05)
        latency = time.monotonic() - start
        assert acc.Scalars("train/loss")[0].value == 1.25
        assert latency < 1.0, latency
    finally:
        shim.close()


def test_non_finite_loss_is_written_at_once(tmp_path: Path) -> None:
    shim = TrainerShim(tmp_path, flush_secs=60.0, scalars_every=10)  # would otherwise wait a minute
    try:
        shim.log_scalars(3, loss=float("nan"))  # off-schedule, but non-finite: always written
        start = time.monotonic()
        while time.monotonic() - start < 3.0 and "train/loss" not in load(tmp_path).Tags()["scalars"]:
            time.sleep(0.05)
        assert time.monotonic() - start < 1.0
        assert math.isnan(load(tmp_path).Scalars("train/loss")[0].value)
    finally:
        shim.close()


def test_non_finite_tensor_loss_is_written_at_once(tmp_path: Path) -> None:
    shim = TrainerShim(tmp_path, flush_secs=60.0)
    try:
        shim.log_scalars(0, loss=torch.tensor(0.5))
        shim.log_scalars(1, loss=torch.tensor(float("inf")))
        start = time.monotonic()
        while time.monotonic() - start < 3.0 and len(load(tmp_path).Tags()["scalars"]) == 0:
            time.sleep(0.05)
        assert time.monotonic() - start < 1.0
        assert [e.value for e in load(tmp_path).Scalars("train/loss")] == [0.5, math.inf]
    finally:
        shim.close()


def test_all_nan_gradients_are_counted_not_raised(tmp_path: Path) -> None:
    def poison(step: int, model: torch.nn.Module) -> None:
        if step == 2:
            for p in model.parameters():
                p.grad.fill_(float("nan"))

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the shim must not even warn
        with TrainerShim(tmp_path, mlp(), hist_every=1) as shim:
            train(shim, shim.model, 4, before_log=poison)
    acc = load(tmp_path)
    (h,) = [e.histogram_value for e in acc.Histograms("grad/0.weight") if e.step == 2]
    assert h.num == 64 * 32 and math.isnan(h.min) and math.isnan(h.sum) and len(h.bucket) == 0
    assert [e.value for e in acc.Scalars("grad_nonfinite/0.weight") if e.step == 2] == [64 * 32]
    assert math.isnan([e.value for e in acc.Scalars("train/grad_norm") if e.step == 2][0])


def test_two_shims_started_in_the_same_second_write_two_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.5)  # both in one second, for sure
    a, b = TrainerShim(tmp_path), TrainerShim(tmp_path)
    monkeypatch.undo()
    a.log_scalars(0, loss=1.0)
    b.log_scalars(0, loss=2.0)
    a.close(), b.close()
    assert a.path and b.path and a.path != b.path
    assert ".1700000000." in a.path and ".1700000000." in b.path
    values = sorted(e.value for p in (a.path, b.path) for e in load(p).Scalars("train/loss"))
    assert values == [1.0, 2.0]


@pytest.mark.slow  # a fresh interpreter importing torch: ~12 s on a busy machine
def test_process_exits_cleanly_and_data_is_complete_without_close(tmp_path: Path) -> None:
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from tbmon.trainer_shim import TrainerShim\n"
        "from tests.trainer_shim.training import mlp, train\n"
        "shim = TrainerShim(%r, mlp(), hist_every=5, flush_secs=60)\n"
        "train(shim, shim.model, 20)\n"  # no close(): the finalizer must write everything
    ) % (str(Path(__file__).resolve().parents[2]), str(tmp_path))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    acc = load(tmp_path)
    assert [e.step for e in acc.Scalars("train/loss")] == list(range(20))
    assert [e.step for e in acc.Histograms("grad/2.weight")] == [0, 5, 10, 15]


def test_only_rank_zero_writes_by_default_under_a_launcher_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    shim = TrainerShim(tmp_path / "r", mlp())
    train(shim, shim.model, 3)
    shim.close()
    assert not shim.enabled and shim.path is None and not (tmp_path / "r").exists()
    per_rank = TrainerShim(tmp_path / "all", mlp(), rank_zero_only=False)
    per_rank.log_scalars(0, loss=1.0)
    per_rank.close()
    assert Path(per_rank.path).parent == tmp_path / "all" / "rank1" and ".r1." in Path(per_rank.path).name


def test_keyword_aliases_and_mapping_tags(tmp_path: Path) -> None:
    with TrainerShim(tmp_path) as shim:
        shim.log_scalars(0, {"eval/accuracy": 0.5}, loss=1.0, val_loss=2.0, lr=0.1, custom_metric=3.0)
    assert set(load(tmp_path).Tags()["scalars"]) == {
        "eval/accuracy", "train/loss", "val/loss", "train/learning_rate", "custom_metric"
    }


def test_every_tag_written_is_understood_by_the_analyzers_without_config(tmp_path: Path) -> None:
    from tbmon.analyzers.signals import SignalMatcher

    with TrainerShim(tmp_path, mlp(), hist_every=2, norms_every=1) as shim:
        train(shim, shim.model, 3)
        shim.log_scalars(3, val_loss=1.0)
    acc = load(tmp_path)
    matcher = SignalMatcher()
    whole_model = {"train/loss": "train_loss", "val/loss": "val_loss", "train/learning_rate": "learning_rate",
                   "train/grad_norm": "grad_norm"}
    for tag in acc.Tags()["scalars"]:
        match = matcher.classify(tag, histogram=False)
        assert match is not None, tag
        if tag in whole_model:
            assert match.signal == whole_model[tag]
        else:  # per-parameter: "<signal>/<param>"
            signal, param = tag.split("/", 1)
            assert (match.signal, match.param) == (signal, param)
    for tag in acc.Tags()["histograms"]:
        assert matcher.classify(tag, histogram=True).signal == "grad_histogram"  # type: ignore[union-attr]


def test_a_diverging_run_logged_by_the_shim_raises_a_divergence_alert(tmp_path: Path) -> None:
    from tbmon.analyzers import analyze

    with TrainerShim(tmp_path, mlp()) as shim:
        losses = train(shim, shim.model, 40, lr=0.1)
        for step in range(40, 45):
            shim.log_scalars(step, loss=float("nan"))
    alerts = analyze(str(tmp_path))
    assert all(math.isfinite(v) for v in losses)
    assert any(a.kind == "divergence" and a.step == 40 for a in alerts), alerts


def test_sparse_and_half_precision_gradients_do_not_disable_the_shim(tmp_path: Path) -> None:
    torch.manual_seed(0)
    emb = torch.nn.Embedding(100, 16, sparse=True)
    head = torch.nn.Linear(16, 4).to(torch.bfloat16)
    model = torch.nn.ModuleDict({"emb": emb, "head": head})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with TrainerShim(tmp_path, model, hist_every=1) as shim:
            out = head(emb(torch.arange(8)).to(torch.bfloat16)).float().pow(2).mean()
            out.backward()
            shim.log_gradients(0)
            assert shim.enabled
    acc = load(tmp_path)
    assert set(acc.Tags()["histograms"]) == {"grad/head.weight", "grad/head.bias"}  # sparse skipped
    g = head.weight.grad.double().numpy().ravel()
    (h,) = [e.histogram_value for e in acc.Histograms("grad/head.weight")]
    assert (h.min, h.max, h.num) == (g.min(), g.max(), g.size)
    assert h.sum == pytest.approx(g.sum(), rel=1e-3, abs=1e-6)
