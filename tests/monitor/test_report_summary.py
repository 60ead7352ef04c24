"""The small pure pieces behind `tbmon report`: loss summaries, health text, status, cell texts."""

from __future__ import annotations

import math

import numpy as np

from tbmon.analyzers.alerts import Alert
from tbmon.monitor.report_formats import fmt_number, fmt_span, fmt_val_loss
from tbmon.monitor.summary import RunHealth, _loss_summary, log_scale_fits, status_of


def _alert(severity: str) -> Alert:
    return Alert("r", "divergence", severity, 3, 0.0, "loss", "m")


def test_loss_summary_keeps_a_nan_last_value_and_the_best_finite_one() -> None:
    steps = np.array([0, 10, 20, 30])
    loss = _loss_summary("loss", steps, np.array([2.0, 0.5, np.inf, np.nan]))
    assert math.isnan(loss.last) and loss.last_step == 30
    assert (loss.best, loss.best_step) == (0.5, 10)
    assert loss.non_finite == 2 and loss.points == 4


def test_loss_summary_of_an_all_nan_series_has_no_best() -> None:
    loss = _loss_summary("loss", np.array([5]), np.array([np.nan]))
    assert loss.best is None and loss.best_step is None
    assert fmt_val_loss(loss) == "NaN"


def test_health_reads_like_a_sentence() -> None:
    assert RunHealth(2, 40, 1000, {"bad_data_crc": 1}).describe() == "2 files, 1 corrupt record skipped"
    assert RunHealth(1, 1, 10, {}).describe() == "1 file, 1 record"
    text = RunHealth(1, 9, 10, {"bad_length_crc": 2, "some_new_kind": 1}).describe()
    assert text == "1 file, 2 corrupt regions skipped, 1 some new kind"


def test_status_is_the_worst_warning_or_critical() -> None:
    assert status_of([]) == "ok"
    assert status_of([_alert("info")]) == "ok"
    assert status_of([_alert("info"), _alert("warning")]) == "warning"
    assert status_of([_alert("critical"), _alert("warning")]) == "critical"


def test_numbers_and_spans_print_compactly() -> None:
    assert [fmt_number(v) for v in (None, math.nan, math.inf, -math.inf, 0.000123456, 1234567.0)] == [
        "–", "NaN", "inf", "-inf", "0.0001235", "1.235e+06",
    ]  # fmt: skip
    assert [fmt_span(v) for v in (None, 5.2, 125, 3 * 3600 + 60, 3 * 86400 + 7200)] == [
        "–", "5s", "2m 05s", "3h 01m", "3d 02h",
    ]  # fmt: skip


def test_log_scale_only_for_non_negative_values_spanning_a_decade() -> None:
    assert log_scale_fits(np.array([2.3, 0.05, np.nan]))
    assert log_scale_fits(np.array([0.0, 1.0, 100.0]))  # a dead layer's exact zero is allowed
    assert not log_scale_fits(np.array([2.0, 1.0, 0.5]))
    assert not log_scale_fits(np.array([-1.0, 5.0, 100.0]))
    assert not log_scale_fits(np.array([np.nan, np.inf]))


def test_summaries_from_the_batches_are_the_frames_points(tmp_path) -> None:
    """The report indexes each (run, tag) from the reader's batches instead of the pandas frame it no
    longer builds (issue 14): the same points, superseded ones dropped (a resume with ``purge_step``)."""
    from torch.utils.tensorboard import SummaryWriter

    from tbmon.monitor import read
    from tbmon.monitor.summary import ScalarIndex

    with SummaryWriter(str(tmp_path / "a")) as writer:
        for step in range(60):
            writer.add_scalar("train/loss", 2.0 / (step + 1), step)
            writer.add_scalar("val/loss", 1.0 + step / 100, step)
    with SummaryWriter(str(tmp_path / "a"), purge_step=40) as writer:  # resumed from the step-40 checkpoint
        for step in range(40, 80):
            writer.add_scalar("train/loss", 3.0 / (step + 1), step)
    with SummaryWriter(str(tmp_path / "b")) as writer:
        for step in range(5):
            writer.add_scalar("train/loss", 1.5, step)
    result = read(tmp_path)
    index = ScalarIndex.of(result)
    frame = result.scalars
    assert len(frame) == 80 + 40 + 5  # the overlap's first pass dropped
    for (run, tag), rows in frame.groupby(["run", "tag"], observed=True):
        steps, values = index.series(run, tag)
        assert steps.tolist() == rows["step"].tolist() and values.tolist() == rows["value"].tolist()
        assert index.count(run, tag) == len(rows)
    assert index.count("a", "no/such") == 0 and index.series("zz", "train/loss")[0].size == 0


def test_a_json_report_never_imports_pandas(tmp_path) -> None:
    """Nothing a JSON report prints needs a DataFrame: pandas' ~0.3 s import was most of the gap
    between `tbmon report` and the read on dense validation runs (issue 14)."""
    import subprocess
    import sys

    from tensorboardX import SummaryWriter

    with SummaryWriter(str(tmp_path / "run")) as writer:
        for step in range(50):
            writer.add_scalar("train/loss", 1.0 / (step + 1), step)
            writer.add_scalar("val/loss", 0.5 + step / 50, step)
    code = ("import sys\nfrom tbmon.monitor.cli import main\ncode = main(sys.argv[1:])\n"
            "print('pandas' in sys.modules)\nsys.exit(code)")
    out = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "-c", code, "report", str(tmp_path), "--format", "json", "-o", str(out),
                           "--fail-on", "never"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "False"
    assert '"val_loss_tag": "val/loss"' in out.read_text()
