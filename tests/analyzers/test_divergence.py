"""`divergence` on synthetic series: fires at the right step, silent on hard negatives."""

from __future__ import annotations

import numpy as np
import pytest

from tbmon.analyzers import Engine
from tbmon.analyzers.alerts import Alert
from tests.analyzers.streams import healthy_loss, scalar_run, warmup_cosine_lr

N = 1000


def run_alerts(columns: dict, n: int = N, kind: str = "divergence") -> list[Alert]:
    engine = Engine()
    alerts = []
    for batch in scalar_run(columns, n).batches():
        alerts += engine.feed(batch)
    return [a for a in alerts if a.kind == kind]


def test_nan_loss_fires_once_at_first_nan_with_lr_context() -> None:
    loss = healthy_loss(N)
    loss[845:] = np.nan
    alerts = run_alerts({"train/loss": loss, "lr": warmup_cosine_lr(N)})
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.step, a.severity, a.tag) == (845, "critical", "train/loss")
    assert "NaN at step 845" in a.message and "warm-up reached 0.03" in a.message


def test_inf_grad_norm_beside_zero_loss_names_the_hidden_nan() -> None:
    loss = healthy_loss(N)
    loss[500:] = 0.0  # HF logging_nan_inf_filter
    gn = np.full(N, 1.5)
    gn[500:] = np.nan
    alerts = run_alerts({"train/loss": loss, "train/grad_norm": gn})
    assert [(a.tag, a.step) for a in alerts] == [("train/grad_norm", 500)]
    assert alerts[0].evidence["loss_hidden"] is True
    assert "hiding the NaN loss" in alerts[0].message


def test_spike_is_dated_at_the_spike_and_reported_once() -> None:
    loss = healthy_loss(N)
    loss[600] = loss[600] * 8
    alerts = run_alerts({"train/loss": loss})
    assert [(a.step, a.severity, a.evidence["condition"]) for a in alerts] == [(600, "warning", "spike")]


def test_sustained_blowup_is_critical_and_dated_where_it_began() -> None:
    loss = healthy_loss(N)
    loss[700:] = np.linspace(0.5, 4.0, N - 700) * np.exp(0.05 * np.random.default_rng(1).standard_normal(N - 700))
    alerts = run_alerts({"train/loss": loss})
    # The climb is a blow-up once the smoothed loss is half the initial loss above its best
    # (0.25 + 0.5 × 2.3 ≈ 1.40, near step 777); the jump at 700 may count as a spike.
    crit = [a for a in alerts if a.severity == "critical"]
    assert [a.evidence["condition"] for a in crit] == ["blowup"]
    assert 770 <= crit[0].step <= 790


def test_spike_then_explosion_escalates_once_and_nan_after_it_is_the_same_episode() -> None:
    loss = healthy_loss(N)
    loss[300] *= 5  # spike (warning)
    loss[320:] = np.geomspace(30, 1e30, N - 320)  # explosion (critical), then overflow
    loss[400:] = np.nan
    alerts = run_alerts({"train/loss": loss, "val/loss": {s: np.nan if s >= 400 else 1.0 for s in range(0, N, 50)}})
    assert [(a.step, a.severity, a.evidence["condition"]) for a in alerts] == [
        (300, "warning", "spike"), (320, "critical", "explosion")]


def test_loss_rising_from_the_start_is_a_blowup() -> None:
    loss = 2.3 * np.exp(np.arange(300) / 100)
    alerts = run_alerts({"loss": loss}, n=300)
    assert alerts and alerts[0].severity == "critical" and alerts[0].step < 60


@pytest.mark.parametrize("seed", range(20))
def test_silent_on_noisy_sgd_with_warmup_and_cosine(seed: int) -> None:
    loss = healthy_loss(N, seed=seed, noise=0.15)
    # Warm-up bump: the loss rises 10% while lr climbs, then decays.
    loss[:100] *= 1 + 0.1 * np.sin(np.linspace(0, np.pi, 100))
    assert run_alerts({"train/loss": loss, "lr": warmup_cosine_lr(N), "val/loss": {s: 1.0 for s in range(0, N, 50)}}) == []


def test_silent_on_one_small_bump_and_on_a_flat_full_batch_loss() -> None:
    loss = healthy_loss(N, noise=0.02)
    loss[500:510] *= 1.15
    assert run_alerts({"train/loss": loss}) == []
    flat = np.full(N, 0.6931)
    flat[400] = 0.70  # a 1% wiggle on a perfectly flat curve: σ is 0, but it is no divergence
    assert run_alerts({"train/loss": flat}) == []


def test_nan_then_recovery_then_nan_much_later_is_two_episodes() -> None:
    loss = healthy_loss(N)
    loss[[200, 201, 202]] = np.nan
    loss[800] = np.inf
    alerts = run_alerts({"train/loss": loss})
    assert [a.step for a in alerts] == [200, 800]


def test_explosion_level_does_not_depend_on_how_the_stream_is_cut() -> None:
    """Regression (seen on `tbmon demo` data): the initial-loss level used to scale "explosion"
    was taken per batch, so a one-shot report called a 13x jump critical while the live watcher,
    which had already seen the first points, called it a spike warning."""
    loss = healthy_loss(N, seed=3)  # starts at 2.3, settles near 0.2
    loss[500] = 20 * loss[480:500].mean()  # far above the recent median, < 10x the initial 2.3
    columns = {"train/loss": loss}
    whole = run_alerts(columns)
    engine, live = Engine(), []
    for batch in scalar_run(columns, N).batches(cuts=range(1, N)):
        live += engine.feed(batch)
    live = [a for a in live if a.kind == "divergence"]
    assert [(a.step, a.severity) for a in whole] == [(a.step, a.severity) for a in live] == [(500, "warning")]
