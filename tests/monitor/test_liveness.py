"""`Liveness`: which watched runs went quiet, judged on given clock readings (no sleeping)."""

from __future__ import annotations

from tbmon.monitor.liveness import Liveness


def test_a_run_only_seen_at_start_up_is_history_not_a_stall() -> None:
    live = Liveness(minimum=5.0)
    live.arrived("logs", "finished", 900, 1e9, now=0.0)
    assert live.newly_quiet(now=10_000.0) == []


def test_a_run_that_grew_is_reported_once_after_its_threshold_and_again_after_it_writes_again() -> None:
    live = Liveness(minimum=5.0)
    for t in (0.0, 1.0, 2.0):  # new points every second: threshold max(5, 10 x 1) = 10 s
        live.arrived("logs", "exp", int(t) * 10, 1e9 + t, now=t)
    assert live.newly_quiet(now=11.9) == []
    [quiet] = live.newly_quiet(now=12.1)
    assert (quiet.run, quiet.last_step, quiet.usual_gap) == ("exp", 20, 1.0)
    assert quiet.quiet_seconds > 10.0
    assert live.newly_quiet(now=100.0) == []  # once per silence
    live.arrived("logs", "exp", 30, 1e9 + 101, now=101.0)
    assert live.newly_quiet(now=105.0) == []
    assert [q.last_step for q in live.newly_quiet(now=200.0)] == [30]


def test_the_threshold_follows_the_runs_own_rhythm() -> None:
    """A writer that flushes every 120 s (tensorboardX's default) is judged at 10 x 120 s, not at the minimum."""
    live = Liveness(minimum=600.0)
    for t in range(0, 1200, 120):
        live.arrived("logs", "exp", t, 1e9 + t, now=float(t))
    assert live.newly_quiet(now=1080.0 + 1100.0) == []
    assert [q.run for q in live.newly_quiet(now=1080.0 + 1300.0)] == ["exp"]


def test_a_removed_run_is_forgotten() -> None:
    live = Liveness(minimum=1.0)
    live.arrived("logs", "exp", 0, 1e9, now=0.0)
    live.arrived("logs", "exp", 1, 1e9, now=0.1)
    live.forget("logs", "exp")
    assert live.newly_quiet(now=100.0) == []


def test_one_arrival_per_job_and_a_keras_pair_is_one_job() -> None:
    """A poll's batches: two files of one run, and Keras train/validation siblings named by their parent."""
    from tbmon.monitor.watch import _newest_points
    from tests.analyzers.streams import Stream

    train = Stream("exp/train", experiment_dir="exp", role="train")
    train.scalar("epoch_loss", 3, 0.5)
    val = Stream("exp/validation", experiment_dir="exp", role="validation")
    val.scalar("epoch_loss", 4, 0.6)
    first, second = Stream("other"), Stream("other")
    first.scalar("loss", 7, 1.0)
    second.scalar("loss", 9, 1.0)
    second.scalar("loss", 10, 1.0)
    batches = [*train.batches(), *val.batches(), *first.batches(), *second.batches()]
    assert _newest_points(batches) == {"exp": (4, 1000.0), "other": (10, 1001.0)}
