"""Issue 11, what a new user trips over in the first hour: each test does what the user did.

Logs are written with ``torch.utils.tensorboard.SummaryWriter`` under the tag names of PyTorch's
own documentation (``Loss/train``, ``Loss/test``, ``Accuracy/test``); tbmon runs as the real CLI
in a subprocess, on a pseudo-terminal where the user saw a terminal.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tbmon.analyzers.signals import VALIDATION_WORDS, SignalMatcher
from tests.signals import as_from_a_shell


def tbmon(*args: str | Path, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tbmon.monitor.cli", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )  # fmt: skip


def tutorial_run(directory: Path, *, val_tag: str | None = "Loss/test", epochs: int = 40) -> None:
    """PyTorch's tutorial layout: ``Loss/train`` every batch, the held-out loss and accuracy per
    epoch. The held-out loss bottoms out at epoch 12 and rises while the training loss keeps
    falling (overfitting)."""
    from torch.utils.tensorboard import SummaryWriter

    rng = np.random.default_rng(0)
    writer = SummaryWriter(str(directory))
    for epoch in range(epochs):
        for batch in range(10):
            step = epoch * 10 + batch
            writer.add_scalar("Loss/train", 2 * np.exp(-step / 80) + 0.05 + 0.01 * rng.random(), step)
        if val_tag is not None:
            writer.add_scalar(val_tag, 0.6 + 0.002 * (epoch - 12) ** 2 + 0.005 * rng.random(), step)
        writer.add_scalar("Accuracy/test", 0.8 + 0.001 * epoch, step)
    writer.close()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("first_hour")
    tutorial_run(root / "tutorial" / "exp1")
    tutorial_run(root / "noval" / "exp1", val_tag=None)
    (root / "empty").mkdir()
    for name in ("a", "b"):  # every event file of this logdir is garbage
        run = root / "garbage" / name
        run.mkdir(parents=True)
        (run / f"events.out.tfevents.1700000000.host.{name}").write_bytes(np.random.default_rng(1).bytes(400))
    return {p.name: p for p in root.iterdir()}


# -- 1. validation tags people write ---------------------------------------------------------


@pytest.mark.parametrize("word", VALIDATION_WORDS)
def test_every_validation_spelling_is_validation_loss_in_any_order_separator_and_case(word: str) -> None:
    matcher = SignalMatcher()
    for tag in (f"Loss/{word}", f"{word}/loss", f"{word.upper()}_LOSS", f"loss-{word}", f"{word.title()} Loss",
                f"loss.{word}", f"{word}_loss_epoch"):
        match = matcher.classify(tag, histogram=False)
        assert match is not None and match.signal == "val_loss", tag
    for not_val in (f"Accuracy/{word}", f"{word}/acc", f"loss/{word}ing", "Loss/train"):
        match = matcher.classify(not_val, histogram=False)
        assert match is None or match.signal != "val_loss", not_val


def test_pytorch_tutorial_loss_test_is_judged_for_overfitting_without_a_hint(logs) -> None:
    result = tbmon("report", logs["tutorial"], "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    overfitting = [a for a in report["alerts"] if a["kind"] == "overfitting"]
    assert [a["tag"] for a in overfitting] == ["Loss/test"]
    assert 0.6 <= report["runs"][0]["best_val_loss"] <= 0.605  # Loss/test's minimum, not "—"
    assert "no validation loss" not in result.stderr


def test_a_run_with_only_a_training_loss_gets_one_hint_with_tags_and_the_config_line(logs, tmp_path) -> None:
    result = tbmon("report", logs["noval"], "--format", "json")
    hints = [line for line in result.stderr.splitlines() if "no validation loss or gradient signal" in line]
    assert len(hints) == 1, result.stderr
    assert "'exp1'" in hints[0] and "Accuracy/test, Loss/train" in hints[0]
    config_line = hints[0].split("--config: ", 1)[1]
    assert config_line == '[tool.tbmon.extra_tags] val_loss = ["Accuracy/test"]'
    # The line the hint gives, pasted into a config file, is valid config that maps the tag.
    header, setting = config_line.split("] ", 1)
    (tmp_path / "tbmon.toml").write_text(f"{header}]\n{setting}\n")
    fixed = tbmon("report", logs["noval"], "--format", "json", "--config", tmp_path / "tbmon.toml")
    assert fixed.returncode == 0 and "no validation loss" not in fixed.stderr
    assert json.loads(fixed.stdout)["runs"][0]["best_val_loss"] == pytest.approx(0.8)  # Accuracy/test's minimum


def test_watch_gives_the_hint_once_per_run(logs) -> None:
    result = tbmon("watch", logs["noval"], "--once", "--no-state")
    assert result.stderr.count("no validation loss or gradient signal") == 1, result.stderr
    assert result.returncode == 0


def test_a_live_watch_waits_for_enough_points_before_hinting(tmp_path) -> None:
    """Validation comes every few hundred steps: no hint before there is enough data to tell."""
    from tbmon.monitor.reader import LogdirReader
    from tbmon.monitor.tag_hints import LIVE_MIN_POINTS, MissingSignalHints
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "run"))
    reader, hints = LogdirReader(tmp_path), MissingSignalHints()
    for step in range(LIVE_MIN_POINTS - 1):
        writer.add_scalar("Loss/train", 1.0 / (step + 1), step)
    writer.flush()
    reader.poll()
    assert hints.new_hints(reader.runs.values(), final=False) == []
    writer.add_scalar("Loss/train", 0.001, LIVE_MIN_POINTS)
    writer.flush()
    reader.poll()
    assert len(hints.new_hints(reader.runs.values(), final=False)) == 1
    assert hints.new_hints(reader.runs.values(), final=True) == []  # once per run
    writer.close()


# -- 5. wrong inputs that hung or passed ------------------------------------------------------


def test_watch_on_a_regular_file_exits_2_at_once_instead_of_waiting(logs) -> None:
    event_file = next((logs["tutorial"] / "exp1").iterdir())
    result = tbmon("watch", event_file, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"tbmon: logdir {str(event_file)!r} is not a directory (pass the folder that holds it: {str(event_file.parent)!r})"
    )


@pytest.mark.parametrize("command", ["watch", "report"])
def test_an_unknown_url_scheme_is_one_clear_line_not_a_wait_or_does_not_exist(command: str) -> None:
    # s3:// and other fsspec schemes are read (tests/monitor/test_remote.py); one no backend knows must not
    # be waited for as a folder that may appear
    result = tbmon(command, "nosuchscheme://bucket/runs", timeout=30)
    assert result.returncode == 2
    assert result.stderr.startswith("tbmon: cannot open logdir 'nosuchscheme://bucket/runs'")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("command", [("report",), ("watch", "--once", "--no-state")])
def test_a_logdir_whose_every_event_file_is_unreadable_fails_the_gate(logs, command) -> None:
    result = tbmon(*command, logs["garbage"])
    assert result.returncode == 2
    assert f"nothing readable under {logs['garbage']}: 2 event files, not one valid record (not_event_file in " in result.stderr


def test_one_readable_file_beside_a_garbage_one_still_reports(logs, tmp_path) -> None:
    (tmp_path / "good").symlink_to(logs["tutorial"] / "exp1")
    (tmp_path / "bad").symlink_to(logs["garbage"] / "a")
    result = tbmon("report", tmp_path, "--format", "json", "--fail-on", "never")
    assert result.returncode == 0 and "nothing readable" not in result.stderr
    assert len(json.loads(result.stdout)["read_problems"]) == 1


# -- 6. output format and flags ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "looks_like"),
    [("r.html", "<!doctype html"), ("r.json", '{"tbmon_version"'), ("r.csv", "logdir,run,"), ("r.md", "## tbmon report")],
)
def test_output_extension_picks_the_format(logs, tmp_path, name: str, looks_like: str) -> None:
    result = tbmon("report", logs["tutorial"], "-o", tmp_path / name)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / name).read_text()
    assert text.lower().startswith(looks_like.lower()) and "┏" not in text


def test_an_explicit_format_that_clashes_with_the_extension_is_refused(logs, tmp_path) -> None:
    result = tbmon("report", logs["tutorial"], "--format", "json", "-o", tmp_path / "report.html")
    assert result.returncode == 2 and not (tmp_path / "report.html").exists()
    assert "--format json but --output" in result.stderr and "looks like html" in result.stderr
    assert tbmon("report", logs["tutorial"], "--format", "markdown", "-o", tmp_path / "r.txt").returncode == 0


def test_watch_takes_f_and_logdir_as_tensorboard_users_type_them(logs) -> None:
    result = tbmon("watch", "-f", "jsonl", "--once", "--no-state", "--logdir", logs["tutorial"])
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["kind"] for r in lines if r["type"] == "alert"] == ["overfitting"]
    assert lines[-1]["type"] == "summary"


def test_name_path_specs_label_each_logdir_like_tensorboards_logdir_spec(logs) -> None:
    positional = tbmon("report", f"good:{logs['tutorial']}", f"noval:{logs['noval']}", "-f", "json")
    spec = tbmon("report", "--logdir_spec", f"good:{logs['tutorial']},noval:{logs['noval']}", "-f", "json")
    for result in (positional, spec):
        assert result.returncode == 0, result.stderr
        assert [json.loads(line)["logdir"] for line in result.stdout.splitlines()] == ["good", "noval"]
    assert "tbmon: noval: run 'exp1'" in spec.stderr
    watched = tbmon("watch", f"mine:{logs['tutorial']}", "--once", "--no-state", "-f", "jsonl")
    alert = next(json.loads(line) for line in watched.stdout.splitlines() if '"alert"' in line)
    assert alert["logdir_name"] == "mine" and alert["logdir"] == str(logs["tutorial"])


def test_fail_on_info_fails_on_an_info_note(tmp_path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "plateau"))
    for step in range(1000):  # falls, then flat for the last half: a loss_plateau info note only
        writer.add_scalar("train/loss", 2 * np.exp(-step / 60) + 0.3 + 0.001 * np.sin(step), step)
        if step % 50 == 0:
            writer.add_scalar("val/loss", 2 * np.exp(-step / 60) + 0.35, step)
    writer.close()
    report = json.loads(tbmon("report", tmp_path, "-f", "json").stdout)
    assert {a["severity"] for a in report["alerts"]} == {"info"}
    assert tbmon("report", tmp_path, "--fail-on", "warning").returncode == 0
    assert tbmon("report", tmp_path, "--fail-on", "info").returncode == 1


def test_on_alert_command_gets_newline_terminated_json(logs, tmp_path) -> None:
    """`while read line` (and every line tool) drops a last line that has no newline."""
    out = tmp_path / "alerts.txt"
    script = f"while IFS= read -r line; do printf '%s\\n' \"$line\" >> {out}; done"
    result = tbmon("watch", logs["tutorial"], "--once", "--no-state", "--on-alert", script)
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text().splitlines()[0])["kind"] == "overfitting"


# -- 9. small things ----------------------------------------------------------------------------


def _on_a_terminal(argv: list[str], *, interrupt_when: bytes | None = None, timeout: float = 60) -> tuple[int, bytes]:
    """Run ``argv`` with stdout and stderr on one pseudo-terminal, as in a user's shell; with
    ``interrupt_when``, press Ctrl-C (SIGINT to the process group) once that text is drawn."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(argv, stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True,
                            env={**os.environ, "TERM": "xterm", "COLUMNS": "160"}, preexec_fn=as_from_a_shell)  # fmt: skip
    os.close(terminal)
    drawn, deadline, sent = b"", time.monotonic() + timeout, False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            drawn += chunk
        if interrupt_when is not None and not sent and interrupt_when in drawn:
            os.killpg(proc.pid, signal.SIGINT)
            sent = True
        if proc.poll() is not None and not ready:
            break
    os.close(controller)
    return proc.wait(timeout=10), drawn


def test_an_empty_logdir_is_said_once_on_a_terminal(logs) -> None:
    code, drawn = _on_a_terminal([sys.executable, "-m", "tbmon.monitor.cli", "report", str(logs["empty"])])
    assert code == 2
    assert drawn.count(b"no event files found") == 1, drawn


def test_the_progress_bar_shows_the_analysis_phase(logs) -> None:
    argv = [sys.executable, "-m", "tbmon.monitor.cli", "report", str(logs["tutorial"]), "-o", os.devnull]
    code, drawn = _on_a_terminal(argv)
    assert code == 0
    assert b"reading " in drawn and b"analyzing " in drawn


def _big_logdir(root: Path, copies: int) -> Path:
    """One run whose event file repeats a real torch-written record body ``copies`` times: enough
    records that reading takes seconds, written in well under one."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(root / "seed"))
    for step in range(200):
        writer.add_scalar("Loss/train", 1.0 / (step + 1), step)
    writer.close()
    (seed,) = (root / "seed").iterdir()
    data = seed.read_bytes()
    first_len = int.from_bytes(data[:8], "little")
    header, body = data[: 16 + first_len], data[16 + first_len :]
    run = root / "big" / "run"
    run.mkdir(parents=True)
    (run / seed.name).write_bytes(header + body * copies)
    return root / "big"


def test_ctrl_c_in_report_says_it_was_interrupted(tmp_path) -> None:
    logdir = _big_logdir(tmp_path, copies=3000)  # 600 k records
    argv = [sys.executable, "-m", "tbmon.monitor.cli", "report", str(logdir)]
    code, drawn = _on_a_terminal(argv, interrupt_when=b"reading ")
    assert code == 130
    assert b"tbmon: interrupted (Ctrl-C)" in drawn and b"Traceback" not in drawn


def test_a_manual_lr_raise_is_not_called_warm_up(tmp_path) -> None:
    """A real training: SGD at lr 0.01, then the user sets lr = 3 by hand at step 150 and it blows up."""
    import torch
    from torch.utils.tensorboard import SummaryWriter

    from tbmon.analyzers import analyze
    from tbmon.monitor import read

    torch.manual_seed(0)
    torch.set_num_threads(1)
    x = torch.randn(256, 8)
    y = x @ torch.randn(8, 1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    writer = SummaryWriter(str(tmp_path / "run"))
    for step in range(300):
        if step == 150:
            optimizer.param_groups[0]["lr"] = 3.0
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        writer.add_scalar("train/loss", loss.item(), step)
        writer.add_scalar("lr", optimizer.param_groups[0]["lr"], step)
    writer.close()
    divergence = [a for a in analyze(read(tmp_path)) if a.kind == "divergence"]
    assert divergence, "the raised lr should make the loss diverge"
    assert "after the lr was raised from 0.01 to 3 at step 150" in divergence[0].message
    assert "warm-up" not in divergence[0].message


def test_trainer_shim_without_torch_says_how_to_install_it() -> None:
    """torch cannot be uninstalled from the test venv; ``sys.modules['torch'] = None`` makes
    ``import torch`` fail exactly as it does where torch is missing (ModuleNotFoundError)."""
    code = "import sys; sys.modules['torch'] = None\nimport tbmon.trainer_shim"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: tbmon.trainer_shim needs PyTorch: pip install 'tbmon[shim]'")
    assert "tbmon watch and tbmon report work without it" in last
