"""`tbmon report` end to end on real event files written by tensorboardX and torch.utils.tensorboard.

The logs come from tiny real trainings on CPU (a 2-layer MLP on a linear regression task):
``healthy`` (tensorboardX, lr 0.01) keeps a finite, falling loss; ``diverging``
(torch.utils.tensorboard, lr 0.5) blows up to inf around step 64 and then logs NaN.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from tensorboardX.proto import event_pb2, summary_pb2

from tbmon.monitor.cli import main
from tests.conftest import EventWriters
from tests.monitor.pty_terminal import drain

CONTRACT_TOP_KEYS = {"tbmon_version", "logdir", "runs", "alerts"}
CONTRACT_RUN_KEYS = {"run", "first_step", "last_step", "scalar_tags", "histogram_tags", "status"}
CONTRACT_ALERT_KEYS = {"run", "kind", "severity", "step", "wall_time", "tag", "message", "evidence"}
SCRIPT_TAG = "<script>alert(1)</script>"
REAL_LOGS = Path(__file__).resolve().parents[2].parent / "shared" / "real-logs"


def train_run(directory: Path, *, lr: float, steps: int, writer: str) -> None:
    """A real tiny training that logs loss, val loss, per-layer grad norms and grad histograms."""
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)
    if writer == "torch":
        from torch.utils.tensorboard import SummaryWriter
    else:
        from tensorboardX import SummaryWriter
    gen = torch.Generator().manual_seed(0)
    true_w = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    x = torch.randn(256, 4, generator=gen) * 3
    y = x @ true_w + 0.1 * torch.randn(256, 1, generator=gen)
    x_val = torch.randn(64, 4, generator=gen) * 3
    y_val = x_val @ true_w
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    out = SummaryWriter(str(directory), filename_suffix=f".{writer}")
    for step in range(steps):
        batch = slice(step % 8 * 32, (step % 8 + 1) * 32)
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x[batch]), y[batch])
        loss.backward()
        out.add_scalar("train/loss", loss.item(), step)
        if step % 5 == 0:
            for name, param in model.named_parameters():
                out.add_scalar(f"grad_norm/{name}", param.grad.norm().item(), step)
                try:
                    out.add_histogram(f"grad/{name}", param.grad, step)
                except ValueError:  # tensorboardX refuses all-NaN tensors
                    pass
            with torch.no_grad():
                out.add_scalar("val/loss", torch.nn.functional.mse_loss(model(x_val), y_val).item(), step)
        optimizer.step()
    out.close()


def corrupt_one_record(path: Path, index: int) -> None:
    """Flip one payload byte of record ``index``: its data CRC no longer matches (framing stays intact)."""
    data = bytearray(path.read_bytes())
    offset = 0
    for _ in range(index):
        (length,) = struct.unpack_from("<Q", data, offset)
        offset += 12 + length + 4
    data[offset + 12 + 3] ^= 0xFF
    path.write_bytes(bytes(data))


def keras_experiment(directory: Path) -> None:
    """Keras' layout: sibling ``train``/``validation`` runs both logging ``epoch_loss``."""
    from tensorboardX import SummaryWriter

    for role, losses in (("train", [1.0, 0.6, 0.4, 0.3]), ("validation", [1.1, 0.8, 0.7, 0.75])):
        with SummaryWriter(str(directory / role), filename_suffix=f".{role}") as out:
            for epoch, value in enumerate(losses):
                out.add_scalar("epoch_loss", value, epoch)


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``clean``: one healthy run. ``mixed``: healthy, diverging, corrupt copy, Keras pair. ``empty``: no files."""
    root = tmp_path_factory.mktemp("logs")
    clean, mixed, empty = root / "clean", root / "mixed", root / "empty"
    train_run(clean / "healthy", lr=0.01, steps=60, writer="tensorboardX")
    train_run(mixed / "healthy", lr=0.01, steps=60, writer="tensorboardX")
    # Both SummaryWriters rewrite '<' in tags; a file from another writer may not, so write one raw.
    hostile = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=SCRIPT_TAG, simple_value=1.0)])
    EventWriters().events(mixed / "healthy", [event_pb2.Event(step=3, summary=hostile)])
    train_run(mixed / "diverging", lr=0.5, steps=80, writer="torch")
    (mixed / "corrupt").mkdir()
    for file in (clean / "healthy").iterdir():
        shutil.copy(file, mixed / "corrupt" / file.name)
        corrupt_one_record(mixed / "corrupt" / file.name, index=10)
    keras_experiment(mixed / "keras")
    empty.mkdir()
    return {"clean": clean, "mixed": mixed, "empty": empty}


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich folds cells to the terminal width; a fixed width keeps the text assertions stable."""
    monkeypatch.setenv("COLUMNS", "200")


def tbmon(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main(["report", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_rich_table_shows_runs_alerts_and_health_without_ansi_when_piped(logs, capsys) -> None:
    code, out, err = tbmon(capsys, logs["mixed"])
    assert code == 1  # the diverging run's critical alert, default --fail-on critical
    assert "\x1b[" not in out
    for run in ("healthy", "diverging", "corrupt", "keras/train", "keras/validation"):
        assert run in out
    assert "divergence" in out and "CRITICAL" in out
    assert "1 corrupt record skipped" in out
    assert "Read problems (1)" in out and "bad_data_crc" in out
    assert "0–79" in out  # steps of the diverging run
    assert "Experiments (train/validation pairs)" in out


def test_json_follows_the_contract_and_survives_nan(logs, capsys) -> None:
    code, out, _ = tbmon(capsys, logs["mixed"], "--format", "json")
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 1

    def no_nan_tokens(token: str) -> None:
        raise AssertionError(f"non-JSON constant {token} in output")

    report = json.loads(lines[0], parse_constant=no_nan_tokens)
    assert CONTRACT_TOP_KEYS <= set(report)
    assert report["logdir"] == str(logs["mixed"])
    runs = {r["run"]: r for r in report["runs"]}
    assert set(runs) == {"healthy", "diverging", "corrupt", "keras/train", "keras/validation"}
    for run in runs.values():
        assert CONTRACT_RUN_KEYS <= set(run)
        assert run["status"] in ("ok", "warning", "critical")
    diverging = runs["diverging"]
    assert (diverging["first_step"], diverging["last_step"]) == (0, 79)
    assert diverging["status"] == "critical"
    assert diverging["last_train_loss"] in ("nan", "inf")  # the overflow's last value: NaN or +Inf by CPU
    assert isinstance(diverging["best_train_loss"], float)
    assert "train/loss" in diverging["scalar_tags"] and "grad/0.weight" in diverging["histogram_tags"]
    assert runs["healthy"]["status"] == "ok"
    assert runs["healthy"]["best_val_loss_step"] is not None
    assert runs["corrupt"]["read_problems"] == {"bad_data_crc": 1}
    assert runs["keras/validation"]["val_loss_tag"] == "epoch_loss"
    assert runs["keras/train"]["train_loss_tag"] == "epoch_loss"
    assert report["alerts"], "the diverging run must raise alerts"
    for alert in report["alerts"]:
        assert set(alert) == CONTRACT_ALERT_KEYS | {"incident"}  # the contract's fields, plus the incident it belongs to
    divergence = [a for a in report["alerts"] if a["kind"] == "divergence" and a["run"] == "diverging"]
    assert divergence and divergence[0]["severity"] == "critical"


def test_json_for_several_logdirs_is_one_contract_object_per_line(logs, capsys) -> None:
    code, out, _ = tbmon(capsys, logs["clean"], logs["mixed"], "--format", "json")
    assert code == 1
    objects = [json.loads(line) for line in out.splitlines()]
    assert [o["logdir"] for o in objects] == [str(logs["clean"]), str(logs["mixed"])]
    assert all(CONTRACT_TOP_KEYS <= set(o) for o in objects)


def test_csv_has_one_row_per_run_or_per_alert(logs, capsys) -> None:
    _, out, _ = tbmon(capsys, logs["mixed"], "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert sorted(r["run"] for r in rows) == ["corrupt", "diverging", "healthy", "keras/train", "keras/validation"]
    diverging = next(r for r in rows if r["run"] == "diverging")
    assert diverging["status"] == "critical" and diverging["last_train_loss"] in ("nan", "inf")
    assert diverging["last_step"] == "79" and diverging["logdir"] == str(logs["mixed"])

    _, out_json, _ = tbmon(capsys, logs["mixed"], "--format", "json")
    _, out_alerts, _ = tbmon(capsys, logs["mixed"], "--format", "csv", "--csv-alerts")
    alert_rows = list(csv.DictReader(io.StringIO(out_alerts)))
    assert len(alert_rows) == len(json.loads(out_json)["alerts"])
    assert {"run", "kind", "severity", "step", "message"} <= set(alert_rows[0])


def test_csv_alerts_without_csv_is_a_usage_error(logs, capsys) -> None:
    code, out, err = tbmon(capsys, logs["clean"], "--csv-alerts")
    assert code == 2 and out == ""
    assert err == "tbmon: --csv-alerts only applies to --format csv\n"


def test_markdown_tables_are_pasteable(logs, capsys) -> None:
    _, out, _ = tbmon(capsys, logs["mixed"], "--format", "markdown")
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| run |"))
    assert lines[header + 1].startswith("|---|")
    body = []
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        body.append(line)
    assert len(body) == 5  # one row per run
    columns = lines[header].count(" | ")
    assert all(row.count(" | ") == columns for row in body)  # no stray pipes split a cell
    assert "**Incidents (" in out and "🔴 critical" in out
    assert SCRIPT_TAG not in out  # GitHub would render it as HTML


def test_markdown_and_rich_compare_several_logdirs(logs, capsys) -> None:
    _, out, _ = tbmon(capsys, logs["clean"], logs["mixed"], "--format", "markdown")
    assert out.count("## tbmon report:") == 2 and "## Comparison" in out
    _, out, _ = tbmon(capsys, logs["clean"], logs["mixed"])
    assert "Comparison" in out and str(logs["clean"]) in out and str(logs["mixed"]) in out


def test_exit_codes_follow_fail_on(logs, capsys) -> None:
    assert tbmon(capsys, logs["clean"])[0] == 0
    assert tbmon(capsys, logs["mixed"])[0] == 1
    assert tbmon(capsys, logs["mixed"], "--fail-on", "never")[0] == 0
    assert tbmon(capsys, logs["mixed"], "--fail-on", "warning")[0] == 1


def test_output_writes_the_report_to_a_file(logs, capsys, tmp_path) -> None:
    target = tmp_path / "report.json"
    code, out, _ = tbmon(capsys, logs["clean"], "--format", "json", "--output", target)
    assert code == 0 and out == ""
    assert json.loads(target.read_text())["runs"][0]["run"] == "healthy"
    target = tmp_path / "report.txt"
    tbmon(capsys, logs["clean"], "--output", target)
    assert "healthy" in target.read_text() and "\x1b[" not in target.read_text()


def test_empty_logdir_says_so_and_exits_2(logs, capsys) -> None:
    code, out, err = tbmon(capsys, logs["empty"], "--format", "json")
    assert code == 2
    assert f"no event files found under {logs['empty']}" in err
    assert json.loads(out)["runs"] == []  # the machine-readable report is still printed


def _run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tbmon.monitor.cli", "report", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, env={**os.environ, "NO_COLOR": "1"}, check=False,
    )  # fmt: skip


def test_progress_bar_is_drawn_on_a_terminal_stderr_only(logs, capsys) -> None:
    import pty

    controller, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "tbmon.monitor.cli", "report", str(logs["mixed"]), "--format", "json"],
            stdout=subprocess.PIPE, stderr=terminal, text=True, env={**os.environ, "TERM": "xterm"}, check=False,
        )  # fmt: skip
    finally:
        os.close(terminal)
    drawn = drain(controller)
    assert b"reading " in drawn and str(logs["mixed"]).encode() in drawn
    assert json.loads(result.stdout)["logdir"] == str(logs["mixed"])  # stdout stays clean JSON
    _, _, err = tbmon(capsys, logs["mixed"], "--format", "json")
    assert "reading" not in err  # not a terminal: no bar


def test_missing_logdir_is_one_line_exit_2_no_traceback(tmp_path) -> None:
    result = _run_cli(tmp_path / "nope")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "does not exist" in result.stderr


def test_unwritable_output_is_one_line_exit_2(logs, tmp_path) -> None:
    result = _run_cli(logs["clean"], "--output", tmp_path / "no" / "such" / "dir" / "r.txt")
    assert result.returncode == 2
    assert result.stderr.startswith("tbmon: cannot write") and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not REAL_LOGS.is_dir(), reason="shared real-logs corpus not present on this machine")
def test_real_logs_from_other_writers_report_cleanly(capsys) -> None:
    code, out, err = tbmon(capsys, REAL_LOGS, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    runs = {r["run"]: r for r in report["runs"]}
    assert len(runs) == 16
    lingvo = runs["tensorflow__lingvo/lingvo/core/ops/testdata"]
    assert (lingvo["first_step"], lingvo["last_step"]) == (1500, 185200)
    assert "log_perplexity/dev" in lingvo["scalar_tags"]
    assert runs["orktes__go-tensorboard/testdata/tfevents"]["scalar_tags"] == ["my_metric"]
    lightning = [r for name, r in runs.items() if name.startswith("SamuelBrudner")]
    assert len(lightning) == 10
    assert any(r["train_loss_tag"] and r["val_loss_tag"] for r in lightning)
    assert all(r["read_problems"] == {} for r in runs.values())


class _Document(HTMLParser):
    """Collects what a browser would load or run from the HTML report."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.sources: list[str] = []
        self.links: list[str] = []
        self.charted: set[str] = set()  # runs with a chart box ("curves of run X")
        self.chart_boxes = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "div" and values.get("class") == "chart":
            self.chart_boxes += 1
            label = values.get("aria-label") or ""
            if label.startswith("curves of run "):
                self.charted.add(label.removeprefix("curves of run "))
        if tag == "script":
            self.scripts.append("")
            self._in_script = True
        if "src" in values:
            self.sources.append(values["src"] or "")
        if tag == "link" or "href" in values:
            self.links.append(values.get("href") or "")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def test_html_is_one_self_contained_escaped_file(logs, capsys, tmp_path) -> None:
    from importlib.resources import files

    import tbmon.monitor.html_report as html_report

    target = tmp_path / "report.html"
    code, out, _ = tbmon(capsys, logs["mixed"], "--format", "html", "--output", target)
    assert code == 1 and out == ""
    text = target.read_text(encoding="utf-8")
    document = _Document()
    document.feed(text)
    sorter, data, library, charts = document.scripts  # the hostile tag name opened no script of its own
    assert sorter == html_report.SORT_SCRIPT
    assert charts == (files("tbmon.monitor") / "assets" / "charts.js").read_text(encoding="utf-8")
    assert library.startswith("/*\nThe MIT License") and "var uPlot=" in library  # vendored, license inline
    specs = json.loads(data)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert document.links == [] and document.sources == []
    assert "http://" not in text and "https://" not in text
    assert document.charted == {"corrupt", "diverging", "healthy", "keras/train", "keras/validation"}
    assert len(specs) == document.chart_boxes and specs[0]["title"] == "training loss of every run"
    assert "divergence" in text and "bad_data_crc" in text


def test_plots_writes_one_real_png_per_run(logs, capsys, tmp_path) -> None:
    from matplotlib.image import imread

    code, _, err = tbmon(capsys, logs["mixed"], "--format", "json", "--plots", tmp_path / "plots")
    assert code == 1
    names = sorted(p.relative_to(tmp_path / "plots").as_posix() for p in (tmp_path / "plots").rglob("*.png"))
    assert names == ["corrupt.png", "diverging.png", "healthy.png", "keras__train.png", "keras__validation.png"]
    assert "wrote 5 plot(s)" in err
    image = imread(tmp_path / "plots" / "diverging.png")
    height, width = image.shape[:2]
    assert width >= 800 and height >= 600  # two panels: loss and gradient health
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_plots_for_several_logdirs_go_to_one_folder_each(logs, capsys, tmp_path) -> None:
    tbmon(capsys, logs["clean"], logs["mixed"], "--format", "json", "--plots", tmp_path / "plots")
    assert (tmp_path / "plots" / "clean" / "healthy.png").is_file()
    assert (tmp_path / "plots" / "mixed" / "diverging.png").is_file()


def test_html_draws_at_most_max_plots_runs_only_those_with_alerts(logs, capsys, tmp_path) -> None:
    """1,000 runs would mean minutes of plotting and a huge file: above the cap only runs with
    alerts are drawn (worst first); the cap is the user's to raise."""
    target = tmp_path / "report.html"
    tbmon(capsys, logs["mixed"], "--format", "html", "--output", target, "--max-plots", "2")
    text = target.read_text(encoding="utf-8")
    document = _Document()
    document.feed(text)
    assert document.charted == {"diverging"} and "Charts for 1 of 5 runs" in text  # the only run with an alert
    tbmon(capsys, logs["mixed"], "--format", "html", "--output", target, "--max-plots", "5")
    document = _Document()
    document.feed(target.read_text(encoding="utf-8"))
    assert len(document.charted) == 5  # no more runs than the cap: every run is drawn
