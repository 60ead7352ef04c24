"""The CLI imports only the subcommand it runs (issue 14: `tbmon report` paid ~0.3 s CPU importing
`watch`, its dashboard and pandas), while `tbmon --help` still lists every subcommand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tensorboardX import SummaryWriter

from tbmon.monitor.cli import COMMANDS, build_parser


def _modules_after(argv: list[str]) -> set[str]:
    code = ("import sys\nfrom tbmon.monitor.cli import main\ncode = main(sys.argv[1:])\n"
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('tbmon.monitor.'))))\nsys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split()[-200:])


def test_report_does_not_import_watch_or_demo(tmp_path: Path) -> None:
    with SummaryWriter(str(tmp_path / "run")) as writer:
        for step in range(5):
            writer.add_scalar("train/loss", 1.0 / (step + 1), step)
    loaded = _modules_after(["--debug", "report", str(tmp_path), "--format", "json", "-o", str(tmp_path / "r.json")])
    assert "tbmon.monitor.report" in loaded
    assert not {"tbmon.monitor.watch", "tbmon.monitor.demo"} & loaded
    assert '"train/loss"' in (tmp_path / "r.json").read_text()


def test_help_lists_every_subcommand() -> None:
    done = subprocess.run([sys.executable, "-m", "tbmon.monitor.cli", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    for name in COMMANDS:
        assert f"    {name} " in done.stdout


def test_one_subcommand_parser_takes_the_same_arguments_as_the_full_one() -> None:
    argv = ["report", "logs", "--format", "json", "--jobs", "2", "--fail-on", "never"]
    assert vars(build_parser("report").parse_args(argv)) == vars(build_parser().parse_args(argv))
