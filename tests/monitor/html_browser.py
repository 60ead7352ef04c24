"""A logdir that exercises every part of the interactive HTML report, and headless Chromium to open it.

Used by ``test_html_browser.py``; run as a script it renders the README's screenshot::

    .venv/bin/python -m tests.monitor.html_browser docs/img/html-report.png

Chromium is Debian's (``.ci/run`` installs it): Playwright's own browser builds cannot be
downloaded here. The flags keep it from calling Google's hosts (component updates, sync).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
HOSTILE_LAYER = "</script><script>window.__xss=1;alert(1)</script>"
LAYERS = 14  # more than the legend names: the rest share one "others" entry
DEAD_LAYER = "layer07.weight"
DIVERGING = "project/sweep/lightning_logs/version_1"
HEALTHY = "project/sweep/lightning_logs/version_0"
TOTAL_ONLY = "project/baseline"


def chromium_path() -> str | None:
    """Debian's chromium, or whatever ``chromium`` the PATH has; None when there is none."""
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


def write_logdir(root: Path) -> None:
    """Three runs by two real writers: a healthy one with many layers (one dead, one named like
    markup), a diverging one (a critical alert) and one that logs only the whole model's norm."""
    from tensorboardX import SummaryWriter as XWriter
    from torch.utils.tensorboard import SummaryWriter as TorchWriter

    for run, writer_class, diverge in ((HEALTHY, TorchWriter, False), (DIVERGING, XWriter, True)):
        writer = writer_class(str(root / run))
        for step in range(0, 400, 2):
            loss = 2.3 * math.exp(-step / 80) + 0.08
            if diverge and step > 260:
                loss *= 1.25 ** ((step - 260) / 2)
            writer.add_scalar("Loss/train", loss, step)
            if step % 20 == 0:
                writer.add_scalar("Loss/test", loss * 1.08 + 0.02, step)
            for layer in range(LAYERS):
                name = f"layer{layer:02d}.weight"
                norm = 0.0 if name == DEAD_LAYER else 0.02 * (layer + 1) * (1 + step / 400)
                writer.add_scalar(f"grad_norm/{name}", norm, step)
            if not diverge:  # torch keeps the tag as written (tensorboardX would rename it)
                writer.add_scalar(f"grad_norm/{HOSTILE_LAYER}", 0.3, step)
        writer.close()
    writer = XWriter(str(root / TOTAL_ONLY))
    for step in range(120):
        writer.add_scalar("loss", 1.5 / (1 + step / 10), step)
        writer.add_scalar("grad_norm", 0.8 + 0.1 * math.sin(step / 5), step)
    writer.close()


def render_report(logdir: Path, target: Path) -> subprocess.CompletedProcess[str]:
    """``tbmon report LOGDIR -o target.html`` in its own process, as a user runs it."""
    tbmon = Path(sys.executable).with_name("tbmon")
    command = [str(tbmon)] if tbmon.exists() else [sys.executable, "-m", "tbmon.monitor.cli"]
    return subprocess.run([*command, "report", str(logdir), "-o", str(target)], capture_output=True, text=True)


def screenshot(target: Path) -> None:
    """Render the report of :func:`write_logdir` in headless Chromium, hover a chart, save a PNG."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        write_logdir(Path(tmp) / "logs")
        html = Path(tmp) / "report.html"
        render_report(Path(tmp) / "logs", html)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 1450})
            page.goto(html.as_uri())
            page.wait_for_selector(".chart[data-ready]")
            heading = page.locator("h3", has_text="All runs compared")
            heading.evaluate("h => window.scrollTo(0, h.getBoundingClientRect().top + window.scrollY - 12)")
            box = page.locator(".chart").nth(2).locator(".u-over").bounding_box()  # the diverging run's gradients
            page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] / 2)
            page.screenshot(path=str(target))
            browser.close()


if __name__ == "__main__":
    screenshot(Path(sys.argv[1]))
