"""Packaging and layering rules from the contract."""

from __future__ import annotations

import subprocess
import sys


def _modules_loaded_by(import_stmt: str) -> set[str]:
    code = f"import sys\n{import_stmt}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(out.split())


def test_monitor_and_analyzers_never_import_torch() -> None:
    loaded = _modules_loaded_by(
        "import tbmon.monitor, tbmon.monitor.cli, tbmon.analyzers\n"
        "from tbmon.monitor.cli import build_parser; build_parser()"
    )
    assert "tbmon.monitor.cli" in loaded
    assert not {m for m in loaded if m == "torch" or m.startswith("torch.")}


def test_analyzers_do_not_depend_on_monitor_or_shim() -> None:
    loaded = _modules_loaded_by("import tbmon.analyzers")
    assert "tbmon.analyzers" in loaded
    assert not {m for m in loaded if m.startswith(("tbmon.monitor", "tbmon.trainer_shim"))}


def test_console_script_help_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tbmon.monitor.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    for command in ("watch", "report", "demo"):
        assert command in result.stdout
