"""The one module every output escapes names and numbers from event files with (issue 15, items 2, 4, 5, 11)."""

from __future__ import annotations

import pytest
from markdown_it import MarkdownIt

from tbmon.monitor.sanitize import clock_time, csv_text, file_name, json_ready, markdown_text, visible


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("caf\udce9", r"caf\xe9"),  # os.fsdecode of Latin-1 b"caf\xe9"
        ("a\x1b[2Jb", r"a\x1b[2Jb"),
        ("t\x1b]0;pwned\x07", r"t\x1b]0;pwned\x07"),
        ("c1\x9b2J", r"c1\x9b2J"),  # the one-character CSI
        ("line\nbreak\ttab\r", r"line\nbreak\ttab\r"),
        ("\u202eexe.txt", r"\u202eexe.txt"),
        ("par\u2029a", r"par\u2029a"),
        ("train/loss ✓ 损失 [x]", "train/loss ✓ 损失 [x]"),  # printable Unicode and brackets stay as they are
    ],
)
def test_visible_escapes_bytes_and_control_characters_only(raw: str, shown: str) -> None:
    assert visible(raw) == shown
    assert visible(shown) == shown  # escaping twice changes nothing (a line may pass two outputs)


def test_json_ready_makes_every_string_encodable_and_leaves_the_rest() -> None:
    value = {"run": "caf\udce9", "evidence": {"tags": ["x\udc80"], "value": 1.5}, "esc": "\x1b"}
    ready = json_ready(value)
    assert ready == {"run": r"caf\xe9", "evidence": {"tags": [r"x\x80"], "value": 1.5}, "esc": "\x1b"}
    str(ready).encode("utf-8")


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-2+3", "@SUM(A1)", "\uff1d1+1"])
def test_csv_text_quotes_formula_starts(cell: str) -> None:
    assert csv_text(cell).startswith("'")


def test_csv_text_leaves_ordinary_text() -> None:
    assert csv_text("train/loss") == "train/loss" and csv_text("a=b") == "a=b"
    assert csv_text("\t=1") == r"\t=1"  # OWASP's tab start: shown as an escape, so no formula either


def test_markdown_text_renders_as_the_literal_text() -> None:
    name = "![i](http://e.x/i.png) [l](http://e.x) <b>x</b> a|b *em* `c` &amp; \\"
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown_text(name))
    assert "<img" not in html and "<a " not in html and "<b>" not in html and "<em>" not in html
    assert "[l](http://e.x)" in html and "a|b" in html and "&amp;amp;" in html


@pytest.mark.parametrize("wall", [1e300, -1e300, float("inf"), float("nan"), None])
def test_clock_time_of_impossible_wall_times(wall: float | None) -> None:
    assert clock_time(wall) == "--:--:--"


def test_file_name_fits_and_stays_unique() -> None:
    assert file_name("run", ".png") == "run.png"
    long_a, long_b = file_name("a" * 253, ".png"), file_name("a" * 250 + "bbb", ".png")
    assert len(long_a.encode()) == 255 and len(long_b.encode()) == 255 and long_a != long_b
    wide = file_name("é" * 200, ".png")  # 2 bytes a character: never cut one in half
    assert len(wide.encode("utf-8")) <= 255 and wide.endswith(".png")
    odd = file_name("caf\udce9" * 100, ".png")  # bytes that are not UTF-8 stay the run directory's bytes
    assert len(odd.encode("utf-8", "surrogateescape")) <= 255 and odd.startswith("caf\udce9")
