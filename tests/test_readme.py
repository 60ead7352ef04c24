"""The README's code blocks work as printed: every Python block runs, every `tbmon` command line
parses, every TOML block is a valid config, every JSON block is JSON.

Python blocks run in order in one namespace, in a folder holding ``logs/`` written by
``torch.utils.tensorboard`` (PyTorch's tutorial tags). The shim block is a loop body from the
user's training script, so the names it uses from that script (``model``, ``loader``,
``loss_fn``, ``opt``, ``sched``, ``evaluate``) are given as a real tiny training's objects.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text(encoding="utf-8")) if lang == language]


def _training_script_names() -> dict[str, object]:
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss_fn = torch.nn.MSELoss()

    def evaluate(net: torch.nn.Module) -> float:
        with torch.no_grad():
            return float(loss_fn(net(x), y))

    return {
        "model": model,
        "opt": opt,
        "loss_fn": loss_fn,
        "sched": torch.optim.lr_scheduler.StepLR(opt, step_size=10),
        "loader": torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8),
        "evaluate": evaluate,
    }


def _tutorial_logs(root: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    for run in ("exp1", "exp2"):
        writer = SummaryWriter(str(root / "logs" / run))
        for step in range(60):
            writer.add_scalar("Loss/train", 1.0 / (step + 1), step)
            writer.add_scalar("Accuracy/train", step / 60, step)
            if step % 10 == 0:
                writer.add_scalar("Loss/test", 1.2 / (step + 1), step)
        writer.close()


def test_every_python_block_runs(tmp_path, monkeypatch) -> None:
    import pandas as pd

    python = blocks("python")
    assert len(python) >= 2
    _tutorial_logs(tmp_path)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__readme__", **_training_script_names()}
    for number, code in enumerate(python):
        try:
            exec(compile(code, f"README.md python block {number + 1}", "exec"), namespace)  # noqa: S102
        except Exception as exc:  # noqa: BLE001 - name the block that broke
            pytest.fail(f"README python block {number + 1} raised {type(exc).__name__}: {exc}\n{code}")
    # What the blocks promise in their comments:
    assert any((tmp_path / "runs" / "exp1").glob("events.out.tfevents.*"))  # the shim block wrote its log
    assert list(namespace["wide"].columns) == ["run", "step", "Loss/test", "Loss/train"]
    assert isinstance(namespace["table"], pd.DataFrame)
    assert list(namespace["table"].columns)[:4] == ["run", "kind", "severity", "step"]


def test_every_tbmon_command_line_parses() -> None:
    from tbmon.monitor.cli import build_parser

    commands = [
        shlex.split(line, comments=True)
        for body in blocks("bash")
        for line in body.splitlines()
        if line.startswith("tbmon ")
    ]
    assert len(commands) >= 10
    for argv in commands:
        try:
            build_parser().parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"README command does not parse: {shlex.join(argv)}")


def test_every_toml_block_is_a_valid_config(tmp_path) -> None:
    from tbmon.monitor.config import load_config

    toml = blocks("toml")
    assert toml
    for number, body in enumerate(toml):
        path = tmp_path / f"block{number}.toml"
        path.write_text(body)
        load_config(str(path), cwd=tmp_path)  # raises UsageError naming the problem


def test_every_json_block_is_json() -> None:
    for body in blocks("json"):
        assert isinstance(json.loads(body), dict)
