"""Issue 15, items 2, 4, 5 and the plots half of 11: names and numbers from event files reach every output.

One hostile logdir, written by tensorboardX (run directories) and torch.utils.tensorboard (tags,
which tensorboardX would clean): run directories named with bytes that are not UTF-8, Rich
markup, terminal escapes (ESC[2J, an OSC 0 title, an OSC 8 link, a bidi override), spreadsheet
formulas, Markdown link/image syntax and matplotlib mathtext, names of 253 bytes, and wall times
of 1e300, inf and NaN. Every run logs a NaN loss, so every run must come out as one critical
alert in every format, through the real CLI (subprocesses) and the dashboard in a real pty.
Before the fix each of these crashed an output, ran as markup or a formula, or put raw control
sequences on the terminal.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from tests.conftest import EventWriters
from tests.monitor.pty_terminal import drain

CLI = [sys.executable, "-m", "tbmon.monitor.cli"]
NAN_LOSS = {"train/loss": [1.0, 5.0, float("nan")]}
LONG = b"a" * 253  # + ".png" = 257 bytes: over NAME_MAX
RUN_DIRS = [
    b"caf\xe9",  # Latin-1 café: not UTF-8
    b"esc\x1b[2Jclear",
    b"title\x1b]0;pwned\x07",
    b"osc8\x1b]8;;http:\x1b\\click\x1b]8;;\x1b\\",
    b"\xe2\x80\xaeevil.exe",  # U+202E right-to-left override
    b"[bold red]red",
    b"[/x]",  # a directory "[" holding "x]": the run is named "[/x]"
    b"[link=file:/etc/passwd]evil[/link]",
    b'=HYPERLINK("evil.example","x")',
    b"-2+3",
    b"@SUM(1+1)",
    b"![img](http:evil.example)",
    b"math$\\frac{a$",
    LONG,
    b"a" * 250 + b"bbb",  # shares the first 250 bytes with LONG: shortened names must still differ
]
WALL_TIMES = {"far": [1e300] * 3, "wall-inf": [float("inf")] * 3, "wall-nan": [float("nan")] * 3, "span": [-1e300, 1e300, 0]}
HOSTILE_GRAD_TAG = "grad_norm/![](http://evil.example/p.png)"
HOSTILE_TAGS = {
    "[x](http://evil.example)": [1.0],
    "see ![](http://evil.example/x.png)": [1.0],
    '=HYPERLINK("http://evil.example")': [1.0],
    "esc\x1b]0;pwned\x07": [1.0],
    HOSTILE_GRAD_TAG: [1.0, 1.0, float("nan")],  # an alert's tag
    "train/loss": [1.0, 0.9, 0.8],
}
RUNS = len(RUN_DIRS) + len(WALL_TIMES) + 1
CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]")  # raw control bytes (tab and newline allowed)
CSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\r")  # what Rich itself draws with: colours, cursor moves
FORMULA = ("=", "+", "-", "@", "\t", "\r")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    logdir = tmp_path_factory.mktemp("hostile")
    writers = EventWriters()
    for name in RUN_DIRS:
        writers.scalars(Path(os.fsdecode(os.path.join(bytes(logdir), name))), NAN_LOSS)
    for name, walls in WALL_TIMES.items():
        writers.scalars(logdir / name, NAN_LOSS, wall_times=walls)
    writers.scalars(logdir / "tags", HOSTILE_TAGS, backend="torch")
    return logdir


def tbmon(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "400"}
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, env=env, timeout=timeout, check=False)


def assert_clean(output: bytes, stderr: bytes = b"") -> str:
    """Valid UTF-8, no raw control character, no crash: what any text output must be."""
    text = output.decode("utf-8")  # strict: a lone surrogate or a Latin-1 byte fails here
    for stream in (output, stderr):
        assert not CONTROL.search(stream), CONTROL.search(stream)
    assert b"internal error" not in stderr and b"Traceback" not in stderr, stderr.decode(errors="replace")
    return text


# ---- tbmon report -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["rich", "csv", "markdown", "html"])
def test_report_renders_every_hostile_name_in_every_text_format(hostile: Path, tmp_path: Path, fmt: str) -> None:
    """Item 2 (UnicodeEncodeError, MarkupError, mathtext ValueError) and item 4 (escapes in the output)."""
    out = tmp_path / f"report.{fmt}"
    result = tbmon("report", hostile, "--format", fmt, "-o", out)
    text = assert_clean(out.read_bytes(), result.stderr)
    assert result.returncode == 1  # critical alerts: every run was analyzed, nothing crashed
    for shown in (r"caf\xe9", r"esc\x1b", r"title\x1b", r"\x07", r"\u202eevil.exe", "far", "wall-nan"):
        assert shown in text.replace("\\\\", "\\"), shown  # Markdown doubles the backslash of an escape
    if fmt == "rich":
        for markup in ("[bold red]red", "[/x]", "[link=file:/etc/passwd]evil[/link]"):
            assert markup in text  # shown as the name it is, not applied as markup
        assert text.count("CRITICAL") == RUNS
        assert "2.31e+295d" in text  # the span from -1e300 to 1e300 s, not a 300-digit number of days


def test_report_json_keeps_names_distinct_and_valid_unicode(hostile: Path) -> None:
    """JSON escapes control characters itself; a name that is not UTF-8 becomes ``\\xNN``, not a lone surrogate."""
    result = tbmon("report", hostile, "--format", "json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout.decode("utf-8"))
    runs = {run["run"] for run in report["runs"]}
    assert len(runs) == RUNS and len(report["alerts"]) == RUNS  # one each: a NaN loss, or (run "tags") gradient norm
    assert HOSTILE_GRAD_TAG in {alert["tag"] for alert in report["alerts"]}
    assert r"caf\xe9" in runs and "esc\x1b[2Jclear" in runs and "[/x]" in runs
    assert all(not re.search("[\ud800-\udfff]", run) for run in runs)


def test_rich_report_on_a_colour_terminal_applies_no_markup_from_names(hostile: Path) -> None:
    """``[link=file:/etc/passwd]`` must not become an OSC 8 hyperlink, ``[bold red]`` no colour."""
    env = {**os.environ, "FORCE_COLOR": "1", "COLUMNS": "400", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    result = subprocess.run([*CLI, "report", str(hostile)], capture_output=True, env=env, timeout=120, check=False)
    assert result.returncode == 1, result.stderr
    assert b"\x1b]8;" not in result.stdout and b"\x1b]0;" not in result.stdout and b"\x1b[2J" not in result.stdout
    plain = re.sub(rb"\x1b\[[0-9;]*m", b"", result.stdout).decode("utf-8")  # only colour codes (SGR) remain
    assert "[bold red]red" in plain and "[link=file:/etc/passwd]evil[/link]" in plain and r"esc\x1b[2Jclear" in plain
    assert not CONTROL.search(re.sub(rb"\x1b\[[0-9;]*m", b"", result.stdout))


def test_csv_cells_are_never_spreadsheet_formulas(hostile: Path) -> None:
    """Item 5: OWASP CSV injection: text cells starting with = + - @ get a leading quote; numbers stay numbers."""
    for extra in ([], ["--csv-alerts"]):
        result = tbmon("report", hostile, "--format", "csv", *extra)
        assert result.returncode == 1, result.stderr
        rows = list(csv.DictReader(io.StringIO(assert_clean(result.stdout, result.stderr))))
        for row in rows:
            for column, cell in row.items():
                if cell.startswith(FORMULA):
                    float(cell)  # only a number may start with "-" (or "+"): anything else is a formula
        names = {row["run"] for row in rows}
        assert {"'=HYPERLINK(\"evil.example\",\"x\")", "'-2+3", "'@SUM(1+1)"} <= names
    by_run = {row["run"]: row for row in csv.DictReader(io.StringIO(tbmon("report", hostile, "-f", "csv").stdout.decode()))}
    assert by_run["tags"]["scalar_tags"].startswith("'=HYPERLINK(")  # sorted tags: the formula comes first


def test_markdown_renders_no_link_image_or_html_from_names(hostile: Path) -> None:
    """Item 5: a CommonMark renderer with tables (as GitHub) must produce no <a>, <img> or raw HTML from the logs."""
    result = tbmon("report", hostile, "--format", "markdown")
    assert result.returncode == 1, result.stderr
    text = assert_clean(result.stdout, result.stderr)
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(text)
    assert "<a " not in html and "<img" not in html and "<script" not in html
    assert "![](http://evil.example/p.png)" in html  # the alert's tag, shown as text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len({line.count(" | ") for line in rows if "---" not in line}) <= 3  # three tables, none split by a name


# ---- tbmon watch: plain, jsonl, the dashboard ----------------------------------------------


def test_watch_plain_survives_far_wall_times_and_shows_escapes(hostile: Path) -> None:
    """Item 2: wall_time 1e300 crashed ``time.localtime``; item 4: names reached stdout and stderr raw."""
    result = tbmon("watch", "--once", "--no-state", "--format", "plain", hostile)
    text = assert_clean(result.stdout, result.stderr)
    assert result.returncode == 1
    alerts = [line for line in text.splitlines() if " CRITICAL " in line]
    assert len(alerts) == RUNS
    assert any(line.startswith("--:--:-- CRITICAL divergence run=far ") for line in alerts)
    assert r"new run: esc\x1b[2Jclear" in result.stderr.decode("utf-8")


def test_watch_jsonl_output_file_survives_a_non_utf8_run_and_alerts_later_runs(hostile: Path, tmp_path: Path) -> None:
    """Item 2: ``watch --format jsonl -o FILE`` exited 2 on a Latin-1 run name; later divergences went unseen."""
    logdir = tmp_path / "logs"
    writers = EventWriters()
    writers.scalars(Path(os.fsdecode(bytes(logdir) + b"/caf\xe9")), NAN_LOSS)
    out = tmp_path / "alerts.jsonl"
    proc = subprocess.Popen([*CLI, "watch", "--no-state", "--format", "jsonl", "-o", str(out), str(logdir)],
                            stderr=subprocess.PIPE)  # fmt: skip
    try:
        wait_for(lambda: out.exists() and r'"run":"caf\\xe9","kind":"divergence"' in out.read_text("utf-8"))
        writers.scalars(logdir / "later", NAN_LOSS)
        wait_for(lambda: '"run":"later","kind":"divergence"' in out.read_text("utf-8"))
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    lines = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert lines[-1]["type"] == "summary" and lines[-1]["alerts"]["critical"] == 2
    assert proc.returncode == 1 and b"internal error" not in err


def wait_for(condition, timeout: float = 60.0) -> None:  # noqa: ANN001 - a test helper
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_dashboard_in_a_real_pty_shows_names_as_text_and_keeps_drawing(hostile: Path, tmp_path: Path) -> None:
    """Item 4: ``[/x]`` froze the dashboard (MarkupError on its drawing thread); escapes reached the terminal."""
    logdir = tmp_path / "logs"
    writers = EventWriters()
    for name in (b"[/x]", b"[bold red]red", b"esc\x1b[2Jclear", b"title\x1b]0;pwned\x07", b"caf\xe9"):
        writers.scalars(Path(os.fsdecode(bytes(logdir) + b"/" + name)), {"train/loss": [1.0, 0.9]})
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen([*CLI, "watch", "--no-state", str(logdir)], stdin=slave, stdout=slave, stderr=slave,
                            env={**os.environ, "TERM": "xterm-256color"}, close_fds=True)  # fmt: skip
    os.close(slave)
    screen = bytearray()

    def read_until(needle: bytes, timeout: float = 60.0) -> bool:
        """Until ``needle`` shows on the screen, cursor moves and colours (CSI sequences) aside."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and needle not in CSI.sub(b"", screen):
            if select.select([master], [], [], 0.2)[0]:
                try:
                    screen.extend(os.read(master, 65536))
                except OSError:  # EIO: the child closed the terminal
                    break
        return needle in CSI.sub(b"", screen)

    try:
        assert read_until(rb"[bold red]red") and read_until(rb"caf\xe9") and read_until(b"[/x]")
        writers.scalars(logdir / "later", NAN_LOSS)
        assert read_until(b"CRITICAL divergence later")  # still drawing after the names above
        proc.send_signal(signal.SIGINT)
        assert read_until(b"tbmon: 6 runs")
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    for sequence in (b"\x1b[2J", b"\x1b]0;", b"\x07", b"\x1b]8;"):
        assert sequence not in screen, sequence
    assert rb"esc\x1b[2Jclear" in screen and rb"title\x1b]0;pwned\x07" in screen
    assert b"Traceback" not in screen and b"internal error" not in screen and code == 1


# ---- tbmon report --plots ------------------------------------------------------------------


def test_plots_shorten_long_names_uniquely_and_finish_the_rest(hostile: Path, tmp_path: Path) -> None:
    """Item 11: a 253-byte run name failed with "File name too long", exit 2, and no plot after it."""
    plots = tmp_path / "plots"
    result = tbmon("report", hostile, "--format", "json", "--plots", plots)
    assert result.returncode == 1, result.stderr  # alerts; nothing failed
    files = [p for p in plots.rglob("*.png")]
    assert len(files) == RUNS
    assert all(len(os.fsencode(p.name)) <= 255 for p in files)
    long_ones = [p.name for p in files if p.name.startswith("a" * 200)]
    assert len(long_ones) == 2 and len(set(long_ones)) == 2  # both 253-byte runs, different files
    assert (plots / os.fsdecode(b"caf\xe9.png")).is_file()  # the run directory's own bytes
    assert f"wrote {RUNS} plot(s)" in result.stderr.decode("utf-8")


def test_a_plot_that_cannot_be_written_is_named_and_the_others_are_written(tmp_path: Path) -> None:
    logdir, plots = tmp_path / "logs", tmp_path / "plots"
    writers = EventWriters()
    for name in ("a-before", "far", "z-after"):
        writers.scalars(logdir / name, NAN_LOSS)
    (plots / "far.png").mkdir(parents=True)  # a directory where the file should go
    result = tbmon("report", logdir, "--format", "json", "--plots", plots)
    stderr = result.stderr.decode("utf-8")
    assert result.returncode == 2  # an output that was asked for is missing
    assert "cannot write plot" in stderr and "far.png" in stderr and "wrote 2 plot(s)" in stderr
    assert (plots / "a-before.png").is_file() and (plots / "z-after.png").is_file()


# ---- notifications -------------------------------------------------------------------------


def test_webhook_text_escapes_chat_links_and_payloads_are_valid_unicode(tmp_path: Path) -> None:
    """Item 4 for the chat sink: Slack shows ``<url|label>`` in its ``text`` as a disguised link.

    A real HTTP server on 127.0.0.1 takes the webhook; ``--on-alert`` writes its stdin to a file.
    """
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    bodies: list[bytes] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    logdir = tmp_path / "logs"
    writers = EventWriters()
    for name in (b"<mailto:x@evil.example|click here>", b"caf\xe9"):
        writers.scalars(Path(os.fsdecode(bytes(logdir) + b"/" + name)), NAN_LOSS)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    Thread(target=server.serve_forever, daemon=True).start()
    stdin_copy = tmp_path / "stdin"
    try:
        result = tbmon("watch", "--once", "--no-state", "--format", "jsonl", logdir,
                       "--notify-webhook", f"http://127.0.0.1:{server.server_address[1]}/hook",
                       "--on-alert", f"cat >> {stdin_copy}; echo >> {stdin_copy}")  # fmt: skip
    finally:
        server.shutdown()
    assert result.returncode == 1, result.stderr
    payloads = [json.loads(body.decode("utf-8")) for body in bodies]
    texts = sorted(payload["text"] for payload in payloads)
    assert len(texts) == 2 and "&lt;mailto:x@evil.example|click here&gt;" in texts[0] and "<mailto" not in texts[0]
    assert r"caf\xe9" in texts[1] and {p["run"] for p in payloads} >= {r"caf\xe9"}
    commands = [json.loads(line) for line in stdin_copy.read_text("utf-8").splitlines() if line]
    assert {c["run"] for c in commands} == {"<mailto:x@evil.example|click here>", r"caf\xe9"}


def test_progress_bar_on_a_terminal_shows_a_markup_logdir_as_text(tmp_path: Path) -> None:
    """The report's progress bar (stderr on a terminal) parsed the logdir as Rich markup: ``[/x]`` crashed it."""
    logdir = tmp_path / "[" / "x]"
    EventWriters().scalars(logdir / "run", NAN_LOSS)
    controller, terminal = os.openpty()
    try:
        result = subprocess.run([*CLI, "report", str(logdir), "--format", "json"], stdout=subprocess.PIPE,
                                stderr=terminal, env={**os.environ, "TERM": "xterm"}, timeout=120, check=False)  # fmt: skip
    finally:
        os.close(terminal)
    drawn = drain(controller)
    assert result.returncode == 1 and b"internal error" not in drawn
    assert b"reading " + str(logdir).encode() in CSI.sub(b"", drawn)
    assert json.loads(result.stdout)["alerts"][0]["run"] == "run"
