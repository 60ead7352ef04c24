"""Issue 11, item 8, without a browser: what the PNG plots and the HTML charts show, from real event files.

The logdir is the browser test's (torch.utils.tensorboard and tensorboardX writers): many layers,
one dead, one named like markup, a diverging run and a run that logs only the total norm.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tbmon.analyzers import AnalyzerConfig, analyze
from tbmon.monitor.chart_series import LEGEND_LAYERS, PER_LAYER_TITLE, TOTAL_NORM_TITLE
from tbmon.monitor.cli import main
from tbmon.monitor.html_charts import chart, run_charts, script_json
from tbmon.monitor.plots import plot_name, run_figure
from tbmon.monitor.reader import read
from tbmon.monitor.sanitize import NAME_MAX
from tbmon.monitor.summary import LogdirReport, build_report
from tests.conftest import EventWriters
from tests.monitor.html_browser import DEAD_LAYER, DIVERGING, HEALTHY, HOSTILE_LAYER, TOTAL_ONLY, write_logdir


@pytest.fixture(scope="module")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("charts") / "logs"
    write_logdir(root)
    return root


@pytest.fixture(scope="module")
def report(logdir: Path) -> LogdirReport:
    result = read(logdir)
    config = AnalyzerConfig()
    return build_report(result, analyze(result, config), config)


def _run(report: LogdirReport, name: str):  # noqa: ANN202 - a RunSummary
    return next(r for r in report.runs if r.run == name)


def test_png_gradient_panel_names_top_layers_dead_ones_and_others(report: LogdirReport) -> None:
    figure = run_figure(report, _run(report, HEALTHY))
    gradients = figure.axes[1]
    assert gradients.get_title(loc="left") == PER_LAYER_TITLE and gradients.get_yscale() == "log"
    labels = [text.get_text() for text in gradients.get_legend().get_texts()]
    others = [label for label in labels if label.startswith("others (")]
    assert others == ["others (6 layers)"]  # 15 layers: 8 named, 1 dead, 6 others
    assert len(labels) == LEGEND_LAYERS + 2
    dead_label = f"grad_norm/{DEAD_LAYER} — dead (all 0)"
    assert dead_label in labels
    dead = next(line for line in gradients.get_lines() if line.get_label() == dead_label)
    floor = dead.get_ydata()[0]
    low, high = gradients.get_ylim()
    assert floor > 0 and low <= floor <= high  # on the log axis, where 0 cannot be drawn
    assert dead.get_linestyle() == "--"


def test_png_of_a_total_norm_only_run_says_so(report: LogdirReport) -> None:
    figure = run_figure(report, _run(report, TOTAL_ONLY))
    assert figure.axes[1].get_title(loc="left") == TOTAL_NORM_TITLE


def test_png_alert_labels_sit_above_the_plot_area(report: LogdirReport) -> None:
    from matplotlib.colors import to_hex

    from tbmon.monitor.plots import SEVERITY_COLOURS

    figure = run_figure(report, _run(report, DIVERGING))
    loss = figure.axes[0]
    (lane,) = loss.child_axes
    figure.draw_without_rendering()
    labels = [t for t in lane.get_xticklabels() if t.get_text()]
    assert [t.get_text() for t in labels] == ["divergence"]  # a warning and a critical one 16 steps apart: one label
    assert to_hex(labels[0].get_color()) == SEVERITY_COLOURS["critical"]  # in the worse one's colour
    plot_top = loss.get_window_extent().y1
    assert all(t.get_window_extent().y0 >= plot_top for t in labels)  # above the curves, not on them


def test_chart_data_matches_the_png_legend(report: LogdirReport) -> None:
    charts = run_charts(report, _run(report, HEALTHY))["charts"]
    loss, gradients = charts
    assert [s["name"] for s in loss["series"]] == ["train: Loss/train", "validation: Loss/test"]  # logged order
    roles = [s["role"] for s in gradients["series"]]
    assert roles.count("named") == LEGEND_LAYERS and roles.count("dead") == 1 and roles.count("other") == 6
    dead = next(s for s in gradients["series"] if s["role"] == "dead")
    assert gradients["log"] and set(dead["y"]) == {gradients["floor"]} and gradients["floor"] > 0
    assert f"grad_norm/{HOSTILE_LAYER}" in [s["name"] for s in gradients["series"]]
    diverging = run_charts(report, _run(report, DIVERGING))["charts"][0]
    assert {a["severity"] for a in diverging["alerts"]} == {"warning", "critical"}


def test_script_json_cannot_close_its_script_element() -> None:
    text = script_json({"name": HOSTILE_LAYER, "comment": "<!-- & \u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"name": HOSTILE_LAYER, "comment": "<!-- & \u2028"}


def test_long_series_are_thinned_but_keep_their_spike() -> None:
    steps = np.arange(200_000, dtype=np.int64)
    values = np.linspace(2.0, 0.1, steps.size)
    values[123_457] = 50.0  # one spike between any two evenly spread picks
    spec = chart("loss", [("train: loss", steps, values)], [], unit="curves")
    assert len(spec["x"]) < 30_000 and spec["thinned"] == {"shown": len(spec["x"]), "of": 200_000}
    assert 123_457 in spec["x"] and max(spec["series"][0]["y"]) == 50.0


def test_html_says_when_a_chart_is_thinned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    EventWriters().scalars(tmp_path / "long", {"train/loss": list(np.linspace(2.0, 0.1, 30_000))})
    target = tmp_path / "report.html"
    assert main(["report", str(tmp_path), "-o", str(target)]) == 0
    text = target.read_text(encoding="utf-8")
    shown = re.search(r"Showing ([\d,]+) of 30,000 logged steps", text)
    assert shown and int(shown.group(1).replace(",", "")) < 30_000
    assert target.stat().st_size < 1_000_000


def test_plot_files_are_named_after_the_whole_run_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tb = EventWriters()
    runs = ["proj/lightning_logs/version_0", "proj/lightning_logs/version_1", "a__b", "a/b"]
    for run in runs:
        tb.scalars(tmp_path / "logs" / run, {"train/loss": [1.0, 0.5, 0.25]})
    assert main(["report", str(tmp_path / "logs"), "-f", "json", "--plots", str(tmp_path / "plots")]) == 0
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert "proj__lightning_logs__version_0.png" in names and "proj__lightning_logs__version_1.png" in names
    assert len(names) == 4  # `a__b` and `a/b` flatten alike: one of them gets a hash of its run path
    assert "a__b.png" in names and any(re.fullmatch(r"a__b~[0-9a-f]{12}\.png", n) for n in names)
    assert all(p.is_file() for p in (tmp_path / "plots").iterdir())  # no folder tree any more


def test_a_path_too_long_for_a_file_keeps_its_last_directory() -> None:
    head = "/".join(["experiment_group_with_a_long_name"] * 10)
    first, second = (plot_name(f"{head}/{middle}/lightning_logs/version_3") for middle in ("seed_1", "seed_2"))
    assert first != second
    for name in (first, second):
        assert len(name.encode()) <= NAME_MAX and name.endswith("__version_3.png") and "~" in name
    assert plot_name(".") == "_root.png"
