"""The shim's in-process guard: tbmon's analyzers on the shim's own file, on its writer thread."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import torch

from tbmon.analyzers import Alert, AnalyzerConfig
from tbmon.monitor import read
from tbmon.trainer_shim import ShimWarning, TrainerShim
from tests.trainer_shim.frameworks import identity, report_alerts
from tests.trainer_shim.training import digits, load, mlp


def _train_then_blow_up(shim: TrainerShim, model: torch.nn.Module, steps: int, blow_up_at: int) -> list[float]:
    """SGD on digits; from ``blow_up_at`` on, the lr jumps 100,000x (loss, gradients and ReLUs blow up)."""
    torch.set_num_threads(1)
    x, y = digits()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for step in range(steps):
        if step == blow_up_at:
            opt.param_groups[0]["lr"] = 1e4
        i = (step * 64) % (len(x) - 64)
        loss = torch.nn.functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64])
        opt.zero_grad()
        loss.backward()
        shim.log_gradients(step)
        opt.step()
        shim.log_scalars(step, loss=loss, lr=opt.param_groups[0]["lr"])
        losses.append(loss.item())
    return losses


def test_guard_raises_on_the_writer_thread_exactly_the_alerts_of_tbmon_report(tmp_path: Path) -> None:
    threads: list[str] = []
    seen: list[Alert] = []

    def on_alert(alert: Alert) -> None:
        threads.append(threading.current_thread().name)
        seen.append(alert)

    with TrainerShim(tmp_path, mlp(), hist_every=10, norms_every=2, on_alert=on_alert) as shim:
        losses = _train_then_blow_up(shim, shim.model, 300, blow_up_at=200)
    assert max(losses[200:]) > 100 * max(losses[100:200])  # the run really diverged
    guard = shim.alerts
    assert guard == seen and set(threads) == {"tbmon-shim-writer"}  # never the training thread
    kinds = {(a.kind, a.severity) for a in guard}
    assert ("divergence", "critical") in kinds and len(kinds) >= 3  # also gradients and dead ReLUs
    assert all(a.step >= 200 for a in guard)  # the healthy part raised nothing
    assert sorted(map(identity, guard)) == sorted(map(identity, report_alerts(tmp_path)))
    # each alert is also a TensorBoard text note in the file, and the notes disturb nothing
    acc = load(tmp_path)
    notes = [(e.step, e.tensor_proto.string_val[0].decode()) for e in acc.Tensors("tbmon/alerts/text_summary")]
    assert sorted(notes) == sorted((a.step, f"**{a.severity.upper()} {a.kind}** ({a.tag}, step {a.step}): {a.message}") for a in guard)
    assert [e.step for e in acc.Scalars("train/loss")] == list(range(300))  # TensorBoard purged nothing
    (run,) = read(tmp_path).runs
    assert run.restarts == [] and read(tmp_path).problems == []


def test_a_healthy_run_raises_nothing(tmp_path: Path) -> None:
    with TrainerShim(tmp_path, mlp(), guard=True) as shim:
        _train_then_blow_up(shim, shim.model, 200, blow_up_at=10**9)
    assert shim.alerts == [] and report_alerts(tmp_path) == []


def test_guard_is_off_unless_asked_and_the_file_is_the_same(tmp_path: Path) -> None:
    with TrainerShim(tmp_path / "plain", mlp()) as plain:
        _train_then_blow_up(plain, plain.model, 60, blow_up_at=20)
    with TrainerShim(tmp_path / "guarded", mlp(), guard=True) as guarded:
        _train_then_blow_up(guarded, guarded.model, 60, blow_up_at=20)
    assert plain.alerts == [] and guarded.alerts  # the same divergence, seen only when asked
    a, b = (read(tmp_path / name).scalars for name in ("plain", "guarded"))
    assert a[["tag", "step"]].equals(b[["tag", "step"]])  # the guard adds nothing to the file


def test_guard_config_is_the_analyzers_config(tmp_path: Path) -> None:
    config = AnalyzerConfig(disabled=frozenset({"divergence"}))
    with TrainerShim(tmp_path, mlp(), hist_every=10, norms_every=2, guard=True, guard_config=config) as shim:
        _train_then_blow_up(shim, shim.model, 260, blow_up_at=200)
    assert shim.alerts and "divergence" not in {a.kind for a in shim.alerts}


def test_a_failing_alert_handler_stops_the_guard_once_and_logging_goes_on(tmp_path: Path) -> None:
    def broken(alert: Alert) -> None:
        raise RuntimeError("handler bug")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with TrainerShim(tmp_path, mlp(), on_alert=broken) as shim:
            _train_then_blow_up(shim, shim.model, 120, blow_up_at=10)
    messages = [str(w.message) for w in caught if issubclass(w.category, ShimWarning)]
    assert len(messages) == 1 and "guard stopped: RuntimeError: handler bug" in messages[0]
    loss = read(tmp_path).scalars.query("tag == 'train/loss'")
    assert loss.step.tolist() == list(range(120))  # every step is still in the file


def test_alerts_raised_while_closing_still_reach_the_file(tmp_path: Path) -> None:
    with TrainerShim(tmp_path, mlp(), hist_every=10, norms_every=2, guard=True, flush_secs=600) as shim:
        _train_then_blow_up(shim, shim.model, 260, blow_up_at=200)
        assert shim.alerts == []  # no pass yet: the writer has not woken once
    assert shim.alerts  # the last pass, at close()
    notes = load(tmp_path).Tensors("tbmon/alerts/text_summary")
    assert sorted(e.step for e in notes) == sorted(a.step for a in shim.alerts)
