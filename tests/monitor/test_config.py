"""`load_config`: --config TOML and [tool.tbmon] in ./pyproject.toml, errors as one-line exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tbmon.monitor.config import load_config
from tbmon.monitor.exit_codes import UsageError

PATTERNS_TOML = """
[tags]
train_loss = ["objective"]
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _one_line_error(path: str | None, cwd: Path) -> str:
    with pytest.raises(UsageError) as info:
        load_config(path, cwd=cwd)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_no_config_anywhere_gives_the_defaults(tmp_path) -> None:
    from tbmon.analyzers.config import AnalyzerConfig

    assert load_config(None, cwd=tmp_path) == AnalyzerConfig.from_mapping({})


def test_missing_config_file_names_it(tmp_path) -> None:
    message = _one_line_error("nope.toml", tmp_path)
    assert message == f"config file not found: {tmp_path / 'nope.toml'}"


def test_invalid_toml_names_file_and_position(tmp_path) -> None:
    _write(tmp_path / "bad.toml", "[tags\ntrain_loss = 1\n")
    message = _one_line_error("bad.toml", tmp_path)
    assert message.startswith(f"{tmp_path / 'bad.toml'}: invalid TOML:") and "line 1" in message


def test_unknown_key_names_the_file(tmp_path) -> None:
    _write(tmp_path / "tbmon.toml", "no_such_setting = 3\n")
    message = _one_line_error("tbmon.toml", tmp_path)
    assert str(tmp_path / "tbmon.toml") in message and "no_such_setting" in message


def test_unknown_key_in_pyproject_names_pyproject(tmp_path) -> None:
    _write(tmp_path / "pyproject.toml", "[project]\nname='x'\n\n[tool.tbmon]\nno_such_setting = 3\n")
    message = _one_line_error(None, tmp_path)
    assert "pyproject.toml [tool.tbmon]" in message and "no_such_setting" in message


def test_config_file_may_be_pyproject_shaped(tmp_path) -> None:
    _write(tmp_path / "other.toml", "[tool.black]\nline-length = 3\n")
    assert "no [tool.tbmon] table" in _one_line_error("other.toml", tmp_path)
    _write(tmp_path / "shaped.toml", "[tool.black]\nline-length = 3\n[tool.tbmon.tags]\ntrain_loss = ['objective']\n")
    _write(tmp_path / "flat.toml", PATTERNS_TOML)
    assert load_config("shaped.toml", cwd=tmp_path) == load_config("flat.toml", cwd=tmp_path)


def test_pyproject_is_read_and_config_file_wins_key_by_key(tmp_path) -> None:
    from tbmon.analyzers.config import AnalyzerConfig

    _write(tmp_path / "pyproject.toml", "[tool.tbmon.tags]\ntrain_loss = ['objective']\nval_loss = ['holdout']\n")
    _write(tmp_path / "override.toml", "[tags]\nval_loss = ['dev_objective']\n")
    merged = load_config("override.toml", cwd=tmp_path)
    expected = AnalyzerConfig.from_mapping({"tags": {"train_loss": ["objective"], "val_loss": ["dev_objective"]}})
    assert merged == expected
    assert load_config(None, cwd=tmp_path) != AnalyzerConfig.from_mapping({})


def test_unreadable_pyproject_is_an_error_not_silence(tmp_path) -> None:
    _write(tmp_path / "pyproject.toml", "[tool.tbmon\n")
    assert "pyproject.toml: invalid TOML" in _one_line_error(None, tmp_path)


# ---- through the CLI -------------------------------------------------------------------------


def _objective_run(directory: Path) -> None:
    """A real tensorboardX run whose training loss is logged under a name no default pattern knows."""
    from tensorboardX import SummaryWriter

    values = [1.0, 0.8, 0.7, 0.65, 0.6, 3.0, 40.0, float("nan"), float("nan"), float("nan")]
    with SummaryWriter(str(directory), filename_suffix=".objective") as out:
        for step, value in enumerate(values):
            out.add_scalar("objective", value, step)


def _report(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tbmon.monitor.cli", "report", *args],
        capture_output=True, text=True, cwd=cwd, env={**os.environ, "NO_COLOR": "1"}, check=False,
    )  # fmt: skip


def test_pyproject_patterns_change_what_report_finds(tmp_path) -> None:
    _objective_run(tmp_path / "logs" / "run")
    before = _report(tmp_path, "logs", "--format", "json")
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout)["runs"][0]["train_loss_tag"] is None

    _write(tmp_path / "pyproject.toml", PATTERNS_TOML.replace("[tags]", "[tool.tbmon.tags]"))
    after = _report(tmp_path, "logs", "--format", "json")
    report = json.loads(after.stdout)
    assert report["runs"][0]["train_loss_tag"] == "objective"
    assert any(a["kind"] == "divergence" and a["tag"] == "objective" for a in report["alerts"])
    assert after.returncode == 1


def test_config_errors_exit_2_with_one_line(tmp_path) -> None:
    _objective_run(tmp_path / "logs" / "run")
    _write(tmp_path / "bad.toml", "threshold = = 1\n")
    for config in ("bad.toml", "missing.toml"):
        result = _report(tmp_path, "logs", "--config", config)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tbmon: ")
