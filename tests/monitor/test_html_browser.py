"""Issue 11, item 8: the interactive HTML report, opened in a real headless browser.

The report is written by ``tbmon report`` (its own process) from event files written by
tensorboardX and torch.utils.tensorboard, and opened from disk in Debian's chromium driven by
Playwright, with every request that is not the file itself aborted and recorded. Nothing is
mocked; the test skips only where no chromium is installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tbmon.monitor.chart_series import LEGEND_LAYERS, TOTAL_NORM_TITLE
from tests.monitor.html_browser import (
    CHROMIUM_ARGS,
    DEAD_LAYER,
    DIVERGING,
    HEALTHY,
    HOSTILE_LAYER,
    LAYERS,
    TOTAL_ONLY,
    chromium_path,
    render_report,
    write_logdir,
)

CHROMIUM = chromium_path()
pytestmark = [
    pytest.mark.slow,  # ~15 s: three runs written, a report, a browser
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (.ci/run installs Debian's)"),
]
RUNS = (HEALTHY, DIVERGING, TOTAL_ONLY)
NUMBER = re.compile(r"^-?\d[\d.]*(e[+-]?\d+)?$")


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("html_browser")
    write_logdir(root / "logs")
    target = root / "report.html"
    result = render_report(root / "logs", target)
    assert result.returncode == 1, result.stderr  # the diverging run's critical alert
    assert "Traceback" not in result.stderr
    return target


@pytest.fixture(scope="module")
def page(report_html: Path) -> Iterator[object]:
    """The report open in headless Chromium; ``page.requests`` holds every URL it asked for."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        requests: list[str] = []
        blocked: list[str] = []
        dialogs: list[str] = []
        errors: list[str] = []

        def block(route) -> None:  # noqa: ANN001 - Playwright's Route
            if route.request.url.startswith(("file:", "data:")):
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort()

        context.route("**/*", block)
        page = context.new_page()
        page.on("request", lambda request: requests.append(request.url))
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(report_html.as_uri())
        page.wait_for_selector(".chart[data-ready]")
        page.requests, page.blocked, page.dialogs, page.errors = requests, blocked, dialogs, errors
        yield page
        browser.close()


def _chart(page, title: str):  # noqa: ANN001, ANN202 - Playwright objects
    """The chart box whose title starts with ``title`` (the first, when several runs have one)."""
    return page.locator(".chart", has=page.locator(".chart-title", has_text=title)).first


def _index(chart) -> int:  # noqa: ANN001
    return int(chart.get_attribute("data-chart"))


def test_renders_offline_with_every_run_and_nothing_fetched(page, report_html: Path) -> None:
    text = report_html.read_text(encoding="utf-8")
    assert not re.search(r"(?i)\b(?:https?|ftp|wss?):/", text)  # no external URL anywhere, not even the library's
    assert not re.search(r"(?i)<(?:link|img|iframe)\b|\bsrc=", text)
    assert page.blocked == [] and all(url.startswith(("file:", "data:")) for url in page.requests)
    assert page.errors == []
    charts = page.locator(".chart")
    assert charts.count() == page.locator(".chart[data-ready]").count() == 1 + 2 * 3  # overlay + loss/grad per run
    headings = page.locator("h3 code").all_text_contents()
    assert sorted(headings) == sorted(RUNS)


def test_overlay_has_one_series_per_run(page) -> None:
    overlay = _chart(page, "training loss of every run")
    index = _index(overlay)
    names = page.evaluate(f"tbmonCharts[{index}].series.slice(1).map(s => s.label)")
    shown = overlay.locator(".legend .name").all_text_contents()
    prefix = "project/"  # shared by every run: said once in the title
    assert sorted(names) == sorted(shown) == sorted(r.removeprefix(prefix) for r in RUNS)
    assert "(under project/)" in overlay.locator(".chart-title").text_content()


def test_hover_shows_the_values_at_the_step(page) -> None:
    overlay = _chart(page, "training loss of every run")
    values = overlay.locator(".legend .value")
    assert set(values.all_text_contents()) == {"—"}
    overlay.scroll_into_view_if_needed()
    box = overlay.locator(".u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
    step = overlay.locator(".legend .step").text_content()
    assert re.fullmatch(r"step \d+", step)
    shown = values.all_text_contents()
    assert any(NUMBER.match(v) for v in shown), shown
    index, label = _index(overlay), HEALTHY.removeprefix("project/")
    healthy = overlay.locator(".entry", has_text=label).locator(".value").text_content()
    expected = page.evaluate(
        f"(() => {{ const u = tbmonCharts[{index}], i = u.series.findIndex(s => s.label === {label!r});"
        " return u.data[i][u.cursor.idxs[i]]; })()"
    )
    assert expected is not None and float(healthy) == pytest.approx(expected, rel=1e-3)  # the value under the cursor


def test_clicking_a_legend_entry_hides_and_shows_its_series(page) -> None:
    overlay = _chart(page, "training loss of every run")
    index = _index(overlay)
    entry = overlay.locator(".entry").first
    label = entry.locator(".name").text_content()
    position = page.evaluate(f"tbmonCharts[{index}].series.findIndex(s => s.label === {label!r})")
    entry.click()
    assert page.evaluate(f"tbmonCharts[{index}].series[{position}].show") is False
    assert "off" in entry.get_attribute("class") and entry.get_attribute("aria-pressed") == "false"
    entry.click()
    assert page.evaluate(f"tbmonCharts[{index}].series[{position}].show") is True
    assert "off" not in entry.get_attribute("class")


def test_dragging_zooms_and_a_double_click_zooms_out(page) -> None:
    overlay = _chart(page, "training loss of every run")
    index = _index(overlay)
    overlay.scroll_into_view_if_needed()
    before = page.evaluate(f"[tbmonCharts[{index}].scales.x.min, tbmonCharts[{index}].scales.x.max]")
    box = overlay.locator(".u-over").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.6, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.9, y, steps=5)
    page.mouse.up()
    low, high = page.evaluate(f"[tbmonCharts[{index}].scales.x.min, tbmonCharts[{index}].scales.x.max]")
    assert before[0] < low < high < before[1] and high - low < (before[1] - before[0]) / 2
    page.mouse.dblclick(box["x"] + box["width"] / 2, y)
    assert page.evaluate(f"[tbmonCharts[{index}].scales.x.min, tbmonCharts[{index}].scales.x.max]") == before


def test_alert_markers_sit_above_the_curves_not_over_them(page) -> None:
    run_heading = page.locator("h3", has=page.locator("code", has_text=DIVERGING))
    loss = run_heading.locator("xpath=following-sibling::div[contains(@class,'chart')][1]")
    markers = loss.locator(".lane .marker")
    assert markers.count() >= 1
    kinds = [m.get_attribute("title") for m in markers.all()]
    assert any("critical" in k and "divergence" in k for k in kinds), kinds
    plot = loss.locator(".u-over").bounding_box()
    for marker in markers.all():
        box = marker.bounding_box()
        assert box is not None and box["y"] + box["height"] <= plot["y"] + 0.5  # in the lane, above the plot area


def test_many_layers_get_a_top_k_legend_and_dead_layers_are_drawn(page) -> None:
    gradients = _chart(page, "gradient health per layer")  # the diverging run's: runs with alerts come first
    index = _index(gradients)
    series = page.evaluate(f"tbmonCharts[{index}].series.length") - 1
    entries = gradients.locator(".entry .name").all_text_contents()
    assert series >= LAYERS  # every layer is drawn...
    assert len(entries) == LEGEND_LAYERS + 2  # ...but the legend names the top k, the dead layer and "others"
    others = [e for e in entries if e.startswith("others (")]
    assert others == [f"others ({series - LEGEND_LAYERS - 1} layers)"]
    dead = [e for e in entries if "dead (all 0" in e]
    assert len(dead) == 1 and dead[0].startswith(f"grad_norm/{DEAD_LAYER}")
    drawn = page.evaluate(
        f"(() => {{ const u = tbmonCharts[{index}], i = u.series.findIndex(s => s.label === 'grad_norm/{DEAD_LAYER}');"
        " const ys = u.data[i].filter(v => v != null), y = u.valToPos(ys[0], 'y');"
        " return {log: u.scales.y.distr, count: ys.length, y, height: u.bbox.height / devicePixelRatio}; })()"
    )
    assert drawn["log"] == 3 and drawn["count"] > 0  # log axis, and the dead layer still has points on it
    assert 0 <= drawn["y"] <= drawn["height"]  # inside the plot, not below its floor


def test_total_norm_only_panel_is_titled_as_such(page) -> None:
    titles = page.locator(".chart-title").all_text_contents()
    assert titles.count(TOTAL_NORM_TITLE) == 1  # the baseline run
    assert titles.count("gradient health per layer") == 2


def test_a_tag_named_like_a_script_stays_text(page, report_html: Path) -> None:
    assert page.dialogs == [] and page.evaluate("window.__xss") is None
    names = page.locator(".legend .name").all_text_contents()
    assert f"grad_norm/{HOSTILE_LAYER}" in names  # shown as the tag's own characters
    text = report_html.read_text(encoding="utf-8")
    assert HOSTILE_LAYER not in text  # neither in the tag list (entities) nor in the chart data (\u003c escapes)
