"""Names and numbers from event files, made safe for every output tbmon writes.

Run directories, tags and messages built from them are untrusted data: a directory can be named
with bytes that are not UTF-8 (``caf\\xe9``), Rich markup (``[/x]``), terminal escapes
(``\\x1b[2J``, an OSC 0 title, an OSC 8 link), a spreadsheet formula (``=HYPERLINK(...)``) or
Markdown link syntax; a ``wall_time`` can be 1e300. Every output goes through this one module, so
each format escapes such data the same way everywhere, and none of it can crash an output, run
as markup or a formula, or reach the user's terminal as a control sequence.

The base rule is :func:`visible`: bytes that are not UTF-8 and control characters are shown as
backslash escapes (``\\xe9``, ``\\x1b``, ``\\n``, ``\\u202e``), the way ``ls -b`` and Python's
``repr`` show them. Each format's function adds its own escaping on top.
"""

from __future__ import annotations

import hashlib
import re
import time
from html import escape as _html_escape
from typing import Any

from rich.text import Text

NOT_SHOWN = re.compile(
    "[\x00-\x1f\x7f-\x9f"  # C0 controls (ESC starts every terminal sequence), DEL, C1 controls (CSI, OSC as one code)
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidirectional marks, overrides and isolates ("Trojan Source")
    "\u2028\u2029"  # line and paragraph separators: a line break in many viewers
    "\ud800-\udfff]"  # lone surrogates: a name's bytes that are not UTF-8 (os.fsdecode's surrogateescape)
)
NAMED_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
SURROGATES = re.compile("[\ud800-\udfff]")
MARKDOWN_SPECIAL = re.compile(r"([\\`*_~\[\]!&|])")
"""Backslash-escaped in Markdown (CommonMark allows it before any ASCII punctuation): link and image
brackets, code spans, emphasis, entities and table pipes. ``<``/``>`` become entities instead."""
FORMULA_STARTS = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")
"""A CSV cell starting with one of these is a formula to Excel, LibreOffice or Google Sheets (OWASP
CSV Injection; the full-width forms are read as formulas by some locales). OWASP's other starts,
tab, CR and NUL, never begin a cell: ``visible`` has turned them into ``\\t``, ``\\r``, ``\\x00``."""
NAME_MAX = 255
"""Bytes in one file-name component (NAME_MAX of ext4, XFS, Btrfs, APFS)."""


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char in NAMED_ESCAPES:
        return NAMED_ESCAPES[char]
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the original byte, as `ls -b` would show it
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text: object) -> str:
    """``text`` with non-UTF-8 bytes and control characters shown as backslash escapes (one line, printable)."""
    return NOT_SHOWN.sub(_escape, str(text))


def json_ready(value: Any) -> Any:
    """``value`` with every string made valid Unicode (non-UTF-8 bytes as ``\\xNN``), for JSON outputs.

    JSON escapes control characters itself; a lone surrogate it would write as ``\\udce9``, which
    strict parsers reject and a UTF-8 stream cannot encode at all.
    """
    if isinstance(value, str):
        return SURROGATES.sub(_escape, value)
    if isinstance(value, dict):
        return {json_ready(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def rich_text(text: object, style: str = "") -> Text:
    """A Rich ``Text`` (never parsed as markup) of ``visible(text)``: what every Rich cell and line is built from."""
    return Text(visible(text), style)


def markdown_text(text: object) -> str:
    """One table cell or line of GitHub Markdown that shows ``text`` literally: no link, image, HTML or new row."""
    flat = " ".join(visible(text).split())
    return MARKDOWN_SPECIAL.sub(r"\\\1", flat).replace("<", "&lt;").replace(">", "&gt;")


def markdown_code(text: object) -> str:
    """``text`` inside a code span: only a backtick could end it."""
    return visible(text).replace("`", "'")


def csv_text(text: object) -> str:
    """A CSV cell of text from the logs: visible, and never a spreadsheet formula (a leading ``'`` per OWASP)."""
    shown = visible(text)
    return "'" + shown if shown.startswith(FORMULA_STARTS) else shown


def html_text(text: object, *, quote: bool = True) -> str:
    """HTML-escaped ``visible(text)`` (control characters are not allowed in HTML and would reach a ``cat``)."""
    return _html_escape(visible(text), quote=quote)


def chat_text(text: object) -> str:
    """A chat message (Slack's ``text`` is mrkdwn): ``<url|label>`` would be a disguised link, so ``&<>`` are entities."""
    return visible(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plot_text(text: object) -> str:
    """A matplotlib title or legend label: ``$`` would start mathtext, which fails on arbitrary names."""
    return visible(text).replace("$", r"\$")


def clock_time(wall_time: object, pattern: str = "%H:%M:%S") -> str:
    """Local time of a ``wall_time`` from a file; ``--:--:--`` when it is missing, NaN or beyond the calendar."""
    try:
        return time.strftime(pattern, time.localtime(float(wall_time)))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return "--:--:--"


def file_name(stem: str, suffix: str, limit: int = NAME_MAX) -> str:
    """``stem + suffix`` as one file-name component of at most ``limit`` bytes.

    A longer stem is cut at a character boundary and followed by ``~`` and a hash of the whole
    stem, so two long names that share their start still get different files. Bytes that are not
    UTF-8 are kept as they are (the file then has the same odd bytes as its run directory).
    """
    encoded = stem.encode("utf-8", "surrogateescape")
    if len(encoded) + len(suffix.encode()) <= limit:
        return stem + suffix
    tag = "~" + hashlib.sha256(encoded).hexdigest()[:12]
    room = limit - len(tag) - len(suffix.encode())
    for _ in range(3):  # never end on part of a multi-byte character (at most 3 continuation bytes)
        if encoded[room] & 0xC0 != 0x80:
            break
        room -= 1
    return encoded[:room].decode("utf-8", "surrogateescape") + tag + suffix
