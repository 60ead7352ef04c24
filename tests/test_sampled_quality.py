"""Detection quality on trainings sampled from wide distributions (issue #10): the CI sample of the locked part.

The sample (`tests.sampled.corpus.CI_SAMPLE`: 50 of the 200 locked seeds) is trained here on CPU, cached by
configuration and code under `.pytest_cache/`, and labelled from its data. The issue's floors are recall
>= 0.97 for each fixed kind (one-shot and replayed a step at a time), no warning or critical on a healthy
run, and a median alert-step delay <= 2 % of the run. tbmon does not meet all of them yet (measured
2026-12-04, again on 2026-12-05 once the shim stopped dropping records; docs/detection-quality.md): this
test holds the figures measured as a ratchet, so a change can only keep or raise them, and `ISSUE_FLOORS`
is where they must end. Runs whose shim writer dropped records under load (none since; a safeguard) are
labelled (and their labels checked) but not scored: their files would depend on timing. A failure names
kinds and counts, never runs: the locked part is not to be read run by run (`bench/sampled_quality.py --part dev` is).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from tests.sampled import labels
from tests.sampled.corpus import CI_CACHE, CI_SAMPLE, Sample, build
from tests.sampled.quality import SampledReport, score_samples, timing_free
from tests.scenarios.labels import Series
from tests.scenarios.scoring import FIXED_KINDS

ISSUE_FLOORS = {"recall": 0.97, "warned_healthy": 0, "median_delay": 0.02}
# Measured on this sample (one-shot and live alike). Until 2026-12-05 the shim-written runs that dropped records
# (7 of 50) were left out: divergence 3/3, overfitting 9/9 and 8/8, vanishing 3/3 and 2/2, exploding 3/4 in two
# builds. Since the shim keeps every scalar and gradient log, all 50 are scored: divergence 4/4, overfitting 9/10
# (the new one, a scored run that was left out before, is missed), vanishing 3/3, exploding 4/5; median delay
# 0.0 % for every kind. Healthy runs warned: 1 of 15 before the rule fixes found on the extended development
# part, 0 since (0 of 19 now; the issue's floor, kept from now on). The sample's chaotic trainings (lr far too
# high, large inits) do not come out the same on every CPU: a build on an AMD EPYC (2026-12-06, fourteenth round)
# labels divergence 3, overfitting 9, vanishing 2, exploding 4 and finds 3/3, 9/9, 2/2, 3/4 (0 of 18 healthy
# warned); the exploding ratchet holds both builds, and the sample must hold every kind at least twice. Since the
# labeller judges an overfitting's rise on medians over a tenth of the evaluations (2026-12-07, twenty-fifth round) one
# found overfit draw of the sample is borderline: overfitting 8/9, the same miss (0.88, not 0.9: no run still labelled
# was lost).
RECALL_RATCHET = {"divergence": 1.0, "overfitting": 0.88, "vanishing_gradients": 1.0, "exploding_gradients": 0.75}
WARNED_HEALTHY_RATCHET = 0
CACHE = CI_CACHE

# The first test that asks for the corpus trains its 50 runs (~3 min on 2 idle cores, 5+ under load): the
# suite's 300 s per-test limit is for hangs, not for this build.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    return build(CACHE, CI_SAMPLE)


@pytest.fixture(scope="module")
def quality(samples: list[Sample]) -> SampledReport:
    """Scored on the runs whose event files do not depend on timing (see ``labels.writer_dropped_records``)."""
    return score_samples(CACHE, timing_free(samples))


# --- the labels -----------------------------------------------------------------------------------------------

def test_labels_hold_on_every_generated_run(samples: list[Sample]) -> None:
    """Recomputed labels equal the cached ones, onsets lie inside the run, and what the generator guarantees
    shows: a step whose loss was made NaN is labelled divergence at that step or the next logged one."""
    broken = []
    for s in samples:
        curves = labels.curves(s.config, s.path)
        again = labels.judge(curves, s.config.cls)
        if {k: int(v) for k, v in again["onsets"].items()} != s.onsets or tuple(again["borderline"]) != s.borderline:
            broken.append(f"{s.name}: labels not reproducible")
        first = int(curves.train.step.min()) if curves.train.step.size else 0
        for kind, onset in s.onsets.items():
            if not first <= onset <= first + s.run_length:
                broken.append(f"{s.name}: {kind} onset {onset} outside the run")
        for at, what, _ in s.config.events:
            late = s.config.norm_every + s.config.val_every
            if what == "nan_input" and not at <= s.onsets.get("divergence", -1) <= at + late:
                broken.append(f"{s.name}: NaN injected at {at}, divergence label {s.onsets.get('divergence')}")
    assert not broken, "\n".join(broken)


def test_ci_sample_has_every_kind_and_enough_healthy_runs(samples: list[Sample]) -> None:
    healthy = [s for s in samples if not s.kinds and not s.borderline]
    assert len(healthy) >= 12
    for kind in FIXED_KINDS:
        assert sum(kind in s.kinds for s in samples) >= 2, kind
    assert len({s.config.arch for s in samples}) == 4
    assert {s.config.writer for s in samples} == {"tensorboardX", "torch", "shim"}


def _curves(train: list[float], val: list[float] | None = None, grad: list[float] | None = None, untrained: float = 2.3,
            params: int = 10_000, chance: float = 2.3) -> labels.Curves:
    def s(values: list[float] | None, every: int = 1) -> Series | None:
        return None if values is None else Series(np.arange(len(values)) * every, np.array(values, dtype=float))
    v = val if val is not None else [untrained] * 10
    return labels.Curves(s(train), s(v, max(1, len(train) // len(v))), s(grad), None, None, params, untrained, chance,
                         len(train) - 1)


def test_divergence_criterion_ignores_spikes_but_not_a_loss_far_above_untrained() -> None:
    rng = np.random.default_rng(0)
    healthy = 0.2 + 2.1 * np.exp(-np.arange(1000) / 100) * np.exp(0.3 * rng.standard_normal(1000))
    spiky = healthy.copy()
    spiky[[300, 600, 900]] = 40.0
    assert labels.divergence(_curves(list(spiky)))[0] is None
    leap = [2.3, 2.4] + [500.0 * (1 + 0.1 * rng.random()) for _ in range(998)]
    assert labels.divergence(_curves(leap))[0] in (0, 1, 2)
    undone = list(healthy[:500]) + [2.3 + 0.1 * rng.random() for _ in range(500)]
    assert 480 <= labels.divergence(_curves(undone))[0] <= 510
    assert labels.divergence(_curves(list(healthy[:500]) + [math.nan] * 5))[0] == 500


def test_not_learning_and_overfitting_criteria() -> None:
    flat = [2.3 + 0.01 * math.sin(i) for i in range(500)]
    assert labels.not_learning(_curves(flat), diverged=False)[0] == 0
    assert labels.not_learning(_curves(flat, untrained=40.0), diverged=False)[0] == 0  # from an absurd start to chance
    assert labels.not_learning(_curves([2.3 * 0.995 ** i for i in range(500)]), diverged=False)[0] is None
    train = [2.0 * math.exp(-i / 100) for i in range(1000)]
    rising = [1.0 + 0.05 * abs(i - 5) for i in range(20)]
    assert labels.overfitting(_curves(train, rising), diverged=False)[0] == 250
    assert labels.overfitting(_curves(train, [1.0 / (1 + i) + 0.5 for i in range(20)]), diverged=False)[0] is None


def test_a_long_noisy_validation_plateau_is_no_overfitting_a_rise_through_the_same_noise_is() -> None:
    """The lowest of a hundred noisy 3-evaluation medians sits far below the level they were drawn from: with 20 %
    noise per evaluation the end's median of three was >= 25 % above it on 12 of these 20 flat validation losses
    (bench/noisy_plateaus.py: up to 57 % of 100-evaluation runs). Over medians of a tenth of the evaluations the
    flat ones are healthy or borderline, and a rise of 0.3 over the last half of the run (+60 %) is still found."""
    train = [2.0 * math.exp(-i / 400) for i in range(2000)]
    i = np.arange(100)
    plateau = 0.5 + 1.8 * np.exp(-i / 8)
    rise = plateau + np.where(i > 50, 0.3 * (i - 50) / 49, 0.0)
    found = {"plateau": 0, "rise": 0}
    for seed in range(20):
        noise = np.exp(0.2 * np.random.default_rng(seed).standard_normal(100))
        for name, curve in (("plateau", plateau), ("rise", rise)):
            found[name] += labels.overfitting(_curves(train, list(curve * noise)), diverged=False)[0] is not None
    assert found["plateau"] <= 2 and found["rise"] == 20


def test_exploding_criterion_judges_absolute_magnitude() -> None:
    train = [2.3] * 200
    assert labels.exploding(_curves(train, grad=[2e5] * 200, params=10_000))[0] == 0  # RMS 2,000 per weight
    assert labels.exploding(_curves(train, grad=[1.0] * 200, params=10_000))[0] is None  # RMS 0.01
    assert labels.exploding(_curves(train, grad=[1.0] * 100 + [500.0] * 100, params=10_000))[0] == 100  # growth


def test_gradient_criteria_ask_for_persistence_not_one_log() -> None:
    """A one-log gradient spike is not an explosion, a condition seen at the final log only has not persisted,
    and a pathology from initialisation that the optimiser undoes is borderline, neither healthy nor labelled."""
    train = [2.3] * 200
    spike = [1.0] * 100 + [500.0] + [1.0] * 99
    assert labels.exploding(_curves(train, grad=spike))[0] is None
    assert "grad norm grew > 30x" in labels.exploding(_curves(train, grad=spike))[1]
    assert labels.exploding(_curves(train, grad=[1.0] * 100 + [500.0, 40.0] + [1.0] * 98))[0] == 100  # still up
    assert labels.exploding(_curves(train, grad=[1.0] * 6 + [500.0, math.inf]))[0] == 6  # eight logs in all
    assert labels.persistent_onset(np.arange(10), np.arange(10) == 9) is None  # the final log alone
    assert labels.persistent_onset(np.arange(10), np.arange(10) >= 7) == 7
    assert labels.persistent_onset(np.arange(2), np.array([True, True])) == 0  # every log of a short run
    recovers = [2e5] * 20 + [1.0] * 180  # RMS 2,000 per weight for 10 % of the run, then ordinary
    assert labels.exploding(_curves(train, grad=recovers)) == (None, ["gradients far too large for a while, then recovered"])


def test_a_layer_whose_units_die_is_borderline_never_healthy() -> None:
    """Most of a layer's units without gradient at most logs from some log on (s24906: 75-92 % of a conv's channels at
    19 of 20 logs) is no clean healthy run; nor is a layer that loses them at two consecutive logs and recovers (the
    transient band of the other gradient criteria; s32062: 5 of 8 channels dead at every log, a sixth at every other
    one). A share over the bar at single logs only is a clean run."""
    steps = np.arange(20) * 25
    base = _curves([2.3 - 0.001 * i for i in range(500)])
    healthy = labels.judge(base, "healthy")
    dead = replace(base, dead_shares=(Series(steps, np.array([0.0] + [0.92, 0.83, 0.75] * 6 + [0.83])),))
    recovered = replace(base, dead_shares=(Series(steps, np.array([0.0, 0.9, 0.9] + [0.2] * 17)),))
    flicker = replace(base, dead_shares=(Series(steps, np.array([0.62, 0.75] * 10)),))
    for curves, reason in ((dead, "most of a layer's units got no gradient for good (dead ReLUs)"),
                           (recovered, "most of a layer's units got no gradient at >= 2 consecutive logs, not for good")):
        assert labels.judge(curves, "healthy") == {**healthy, "borderline": [*healthy["borderline"], reason]}
    assert labels.judge(flicker, "healthy") == healthy


def test_onsets_date_the_problem_from_its_start_not_its_last_unbroken_stretch() -> None:
    """A lucky batch inside an excursion, or a gradient ratio that came and went before it settled, does not
    move the onset to the last unbroken stretch (s0252, s5116 of the development part)."""
    rng = np.random.default_rng(1)
    healthy = list(0.2 + 2.1 * np.exp(-np.arange(500) / 100))
    # Two thirds of the progress undone from step 500, all of it from step 800; two lucky batches at 600-601
    # dip the 3-point median, not the rolling level.
    excursion = [1.6 + 0.1 * rng.random() for _ in range(300)] + [2.3 + 0.1 * rng.random() for _ in range(200)]
    excursion[100:102] = [0.2, 0.2]
    assert 495 <= labels.divergence(_curves(healthy + excursion))[0] <= 505
    logs = np.arange(40) * 10
    ratio = np.full(40, 1e-1)
    ratio[5:15] = 1e-5  # ten logs below 1e-3 from step 50, then out of it until it settles at step 300
    ratio[30:] = 1e-5
    ratio[33] = 1e-1
    base = _curves([2.3] * 400)
    gradients = replace(base, first_rms=Series(logs, ratio), last_rms=Series(logs, np.ones(40)))
    assert labels.vanishing(gradients)[0] == 50
    ratio[7:15] = 1e-1  # two logs only before the gap: not a stretch of its own
    assert labels.vanishing(replace(gradients, first_rms=Series(logs, ratio)))[0] == 300
    # Exploding gradients, dated alike (s5414, s6088 of the ninth batch): a climb that began inside the logs the early
    # level is taken from, and a persistent model-wide RMS > 1 (norm > 100 over 10,000 weights) first seen at logs 1-3.
    climb = [3.0, 0.5, 0.2, 0.05, 0.02, 0.018, 0.015, 12.0, 15.0, 15.0, 15.0, 15.0, 12.0, 2.4, 1.7, 0.33]
    assert labels.exploding(_curves([2.3] * 16, grad=climb))[0] == 7
    early_stretch = [4.0] + [1e4] * 3 + [4.0] * 40 + [1e3] * 60
    assert labels.exploding(_curves([2.3] * 104, grad=early_stretch))[0] == 1


def test_an_overfitting_a_later_lower_minimum_ended_is_labelled_and_a_noisy_excursion_is_borderline() -> None:
    """Tenth batch: s6472 overfit for 18 epochs before a learning-rate jump gave a lower validation minimum
    (judged from that minimum alone it was healthy); s6432's 3-point medians kept dipping under the "half the
    progress undone" bar while its rolling level sat above it for 600 of 1,359 steps (it was healthy too)."""
    train = [1.0 * 0.8 ** i for i in range(20)] + [0.5 * 0.8 ** i for i in range(6)]
    val = [0.9 + 0.04 * i for i in range(20)] + [0.6] * 6  # rises 0.9 -> 1.66, then a lower minimum at 20
    assert labels.overfitting(_curves(train, val), diverged=False)[0] == 0
    val_hump = [0.9 + 0.04 * i for i in range(4)] + [0.9] * 16 + [0.6] * 6  # never 25 % up for 3 evaluations
    assert labels.overfitting(_curves(train, val_hump), diverged=False)[0] is None
    unbroken = [1.0 * 0.8 ** i for i in range(26)]  # the validation loss came back down by itself: a hump,
    # borderline wherever it sits (twelfth batch, s8934: before a lowest minimum in its last evaluations too)
    hump = (None, ["validation rose >= 25 % before its lowest minimum and came back while training fell"])
    assert labels.overfitting(_curves(unbroken, val), diverged=False) == hump
    assert labels.overfitting(_curves(unbroken, val[:20] + [0.6] * 2), diverged=False) == hump
    rng = np.random.default_rng(2)
    descent = list(0.4 + 0.6 * np.exp(-np.arange(300) / 40))
    # 55-63 % of the progress undone on the rolling level for 300 points, two lucky batches at 0.3 in every
    # eight: the 3-point medians never stay up for the 9 points (1 % of the run) in a row.
    noisy_excursion = [0.3 if i % 8 >= 6 else 0.72 + 0.06 * rng.random() for i in range(300)]
    result = labels.divergence(_curves(descent + noisy_excursion + [0.4] * 300, untrained=1.0))
    assert result == (None, ["half the progress undone for a while"])


def test_a_validation_loss_that_ends_far_above_its_minimum_is_never_healthy() -> None:
    """Thirteenth batch: s9436 (an lr jump took validation 0.39 -> 0.6-1.3 for good while training came back to
    7x its level before it) and s9362 (validation +60 % at the end, a near-zero training loss wandering) were
    labelled healthy because training did not fall; whatever training did, such a run is borderline."""
    train = [2.0 * math.exp(-i / 100) for i in range(1000)]
    worse = [1.0 / (1 + i) + 0.5 for i in range(14)] + [0.8] * 6  # 0.57 at its best, 0.8 at the end (+40 %)
    flat_train = train[:300] + [train[300]] * 700
    assert labels.overfitting(_curves(flat_train, worse), diverged=False) == (
        None, ["validation ended >= 25 % above its minimum, training not lower"])
    rising_train = train[:300] + [train[300]] * 300 + [train[300] * 1.5] * 400
    assert labels.overfitting(_curves(rising_train, worse), diverged=False)[1] == [
        "validation ended >= 25 % above its minimum, training not lower"]
    slightly = [1.0 / (1 + i) + 0.5 for i in range(14)] + [0.65] * 6  # +14 %: still healthy with a flat training loss
    assert labels.overfitting(_curves(flat_train, slightly), diverged=False) == (None, [])


def test_a_training_loss_knocked_up_right_after_the_minimum_does_not_fall_from_the_blow() -> None:
    """Development s6996: an lr raised x46 four steps after the validation minimum; the training level around it,
    half of it the blow, made a partial recovery a "fall" and the run overfitting. The level is never above the
    one up to the minimum: the same run without the blow, whose training keeps falling, is still overfitting."""
    val = [2.0, 1.8, 1.6, 1.45, 1.35, 1.3, 1.27, 1.25, 1.22, 1.9, 1.8, 1.7, 1.6, 1.6, 1.6, 1.62, 1.62, 1.62, 1.62,
           1.62]  # every 50 steps: the minimum at step 400, +30 % at the end
    noisy = [1.0 if i % 2 else 1.7 for i in range(1000)]  # a batch loss around 1.35
    blow = noisy[:401] + [2.3] * 49 + [1.15] * 550
    assert labels.overfitting(_curves(blow, val), diverged=False) == (
        None, ["validation rose 10-25 %, or rose and came back, while training fell"])
    falling = noisy[:450] + [0.6] * 550
    assert labels.overfitting(_curves(falling, val), diverged=False) == (400, [])


# --- tbmon against the floors --------------------------------------------------------------------------------

def test_sampled_quality_holds_its_measured_floors(quality: SampledReport) -> None:
    print("\n" + quality.tables())
    failures = quality.failures(RECALL_RATCHET, ISSUE_FLOORS["median_delay"], WARNED_HEALTHY_RATCHET)
    assert not failures, "\n".join(failures)
    short = quality.failures(ISSUE_FLOORS["recall"], ISSUE_FLOORS["median_delay"], ISSUE_FLOORS["warned_healthy"])
    print("still short of issue #10's floors:\n  " + "\n  ".join(short) if short else "issue #10's floors are met")


def test_one_shot_and_step_at_a_time_alerts_are_identical_on_sampled_runs(quality: SampledReport) -> None:
    def key(a) -> tuple:
        return (a.run, a.kind, a.severity, a.step, a.wall_time, a.tag, a.message)

    oneshot = sorted(key(a) for a in quality.report.alerts)
    live = sorted(key(a) for a, _ in quality.report.replayed)
    assert oneshot, "the sample raised no alert at all"
    assert oneshot == live, f"{len(set(oneshot) ^ set(live))} alerts differ between one-shot and replay"
