"""`tbmon demo` as a user runs it: real trainings with the shim, real watching, plain output (no TTY)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "tbmon.monitor.cli"]


def test_demo_without_torch_says_how_to_install() -> None:
    # `sys.modules["torch"] = None` makes `import torch` raise ImportError, as on a laptop without it.
    code = "import sys; sys.modules['torch'] = None\nfrom tbmon.monitor.cli import main\nsys.exit(main(['demo']))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "pip install 'tbmon[shim]'" in done.stderr
    assert done.stdout == ""


@pytest.mark.slow
def test_demo_trains_alerts_and_exits_by_itself(tmp_path: Path) -> None:
    keep = tmp_path / "demo-logs"
    done = subprocess.run([*CLI, "demo", "--keep", str(keep)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    alerts = [line for line in lines if " divergence run=diverging " in line]
    assert any("CRITICAL" in line for line in alerts)
    assert not any("run=healthy" in line and "CRITICAL" in line for line in lines)
    assert any(line.startswith("tbmon: 2 runs") for line in lines)
    # issue 11 item 2: the blow-up's alerts (loss and gradients) are one incident, not one page each
    blow_up = [line for line in lines if "run=diverging " in line and (" divergence " in line or " exploding_gradients " in line)]
    incidents = {line.split(" incident=")[1].split()[0].rstrip(":") for line in blow_up}
    assert len(blow_up) >= 3 and len(incidents) == 1 and incidents.pop().startswith("diverging:instability@")
    assert sum("(update: alert" in line for line in blow_up) >= 1
    assert lines[-1] == f"logs kept in {keep} (try: tbmon report {keep})"
    for run in ("healthy", "diverging"):
        assert any("tfevents" in p.name for p in (keep / run).iterdir())
    assert "Traceback" not in done.stderr
