"""`vanishing_gradients` and `exploding_gradients` on synthetic per-layer gradients."""

from __future__ import annotations

import numpy as np

from tbmon.analyzers import AnalyzerConfig, Engine
from tbmon.analyzers.alerts import Alert
from tests.analyzers.streams import Stream, hist_fields

LAYERS = [f"net.{2 * k}.weight" for k in range(6)]  # net.0 … net.10: name order is not model order


def grad_run(scales, steps: range = range(0, 300, 10), *, hist: bool = True, seed: int = 0, sort_tags: bool = False,
             nonfinite_at: int | None = None, total=None) -> Stream:
    """Per step, each layer's gradients ~ N(0, scale(step, k)); histograms or per-layer norm scalars."""
    rng = np.random.default_rng(seed)
    s = Stream()
    names = sorted(LAYERS) if sort_tags else LAYERS
    for step in steps:
        s.scalar("train/loss", step, 1.0)
        for name in names:
            k = LAYERS.index(name)
            g = scales(step, k) * rng.standard_normal(200)
            if nonfinite_at is not None and step >= nonfinite_at and k == 3:
                g[5] = np.nan
            if hist:
                s.histogram(f"grad/{name}", step, **hist_fields(g))
            else:
                s.scalar(f"grad_norm/{name}", step, float(np.sqrt(np.sum(g * g))))
        if total is not None:
            s.scalar("grad_norm", step, total(step))
    return s


def alerts_of(stream: Stream, kind: str) -> list[Alert]:
    engine = Engine()
    return [a for b in stream.batches() for a in engine.feed(b) if a.kind == kind]


def healthy(step: int, k: int) -> float:
    return 1e-2 * (0.5 + k / 5) * (1 + 0.3 * np.sin(step / 7 + k))


def vanishing_from(onset: int):
    return lambda step, k: healthy(step, k) * (1e-5 ** ((5 - k) / 5) if step >= onset else 1.0)


def test_vanishing_fires_at_onset_and_names_the_layers() -> None:
    for hist in (True, False):
        for sort_tags in (False, True):
            alerts = alerts_of(grad_run(vanishing_from(100), hist=hist, sort_tags=sort_tags), "vanishing_gradients")
            assert [a.step for a in alerts] == [100], (hist, sort_tags)
            assert "net.0.weight" in alerts[0].message and alerts[0].evidence["first_layer"] == "net.0.weight"


def test_vanishing_silent_on_healthy_and_on_a_converged_model() -> None:
    assert alerts_of(grad_run(healthy), "vanishing_gradients") == []
    # Converged: every layer's gradient is tiny, but no layer is starved relative to the others.
    assert alerts_of(grad_run(lambda s, k: 1e-7 * healthy(s, k)), "vanishing_gradients") == []
    # One log of a starved first layer is not sustained.
    blip = grad_run(lambda s, k: healthy(s, k) * (1e-6 if (s == 150 and k == 0) else 1.0))
    assert alerts_of(blip, "vanishing_gradients") == []


def flickering_then_vanished(step: int, k: int) -> float:
    """s12480 (sampled development corpus; a tanh CNN under an lr ramp, per-layer norms every step): the first
    layer's gradient is 1e-2–1e-1 of the head's, dips below 1e-3 for 4 steps at 2,109 and for 2 at 2,189, and
    vanishes for good at 2,242."""
    dip = 2109 <= step < 2113 or 2189 <= step < 2191 or step >= 2242
    return healthy(step, k) * (1e-6 if dip and k == 0 else (3e-2 if k == 0 else 1.0))


def test_vanishing_patience_means_the_same_at_any_logging_density() -> None:
    """Two logs of a per-step norm are two steps: a flicker that long is no vanishing. The streak must also cover
    1 % of the logs seen, what two logs already are for a run logging every 100 steps."""
    every_step = grad_run(flickering_then_vanished, range(2400), hist=False)
    alerts = alerts_of(every_step, "vanishing_gradients")
    assert [a.step for a in alerts] == [2242]
    assert alerts[0].evidence["noticed_step"] - 2242 <= 0.01 * 2400
    two_logs = Engine(AnalyzerConfig(params={"vanishing_gradients": {"min_share": 0.0}}))
    flicker = [a for b in every_step.batches() for a in two_logs.feed(b) if a.kind == "vanishing_gradients"]
    assert [a.step for a in flicker] == [2109, 2189, 2242]  # three warnings for one condition, the first two early
    # Histograms every 20 steps see the dips at no log (2100, 2120, ...) and the lasting part from its first log.
    assert [a.step for a in alerts_of(grad_run(flickering_then_vanished, range(0, 2400, 20)), "vanishing_gradients")] \
        == [2260]


# s18162 (27th development batch: a 17-layer ReLU MLP at 1.7x Kaiming init under Adam; histograms every 98 steps):
# its first/last weight-gradient RMS ratio at each log, hovering at the 1e-3 bar for the whole run. Two logs under it
# at 2,744-2,842, then back to 1.9e-3-2e-2 (with two single logs under it), and under it for good from 3,724.
S18162_RATIOS = (
    0.00884, 0.0181, 0.00952, 0.00253, 0.0158, 0.00218, 0.0021, 0.00649, 0.000879, 0.00276, 0.00302, 0.00136, 0.0116,
    0.0144, 0.00246, 0.00425, 0.00553, 0.00145, 0.000725, 0.00201, 0.000933, 0.00564, 0.00305, 0.0251, 0.00181,
    0.00968, 0.000773, 0.00977, 0.000595, 0.000818, 0.00187, 0.02, 0.00152, 0.00381, 0.000953, 0.017, 0.00052,
    0.0014, 0.000818, 0.000361, 0.000996, 0.000894)


def test_a_ratio_hovering_at_the_bar_is_said_again_when_it_comes_back_to_stay() -> None:
    """Two logs under the bar, 8 back over it (two single logs under it among them), then under it for good: the
    early warning must not be the run's only one. Three quiet gradient logs re-arm the rule (10, as it was,
    did not: the lasting part came 8 logs later)."""
    rng = np.random.default_rng(0)
    s = Stream()
    for i, ratio in enumerate(S18162_RATIOS):
        step = 98 * i
        s.scalar("train/loss", step, 1.0)
        for k, name in enumerate(LAYERS):  # exact RMS: the head at 0.5, the first layer at ratio x that
            g = rng.standard_normal(200)
            g *= 0.5 * ratio ** ((5 - k) / 5) / float(np.sqrt(np.mean(g * g)))
            s.histogram(f"grad/{name}", step, **hist_fields(g))
    alerts = alerts_of(s, "vanishing_gradients")
    assert [(a.step, a.evidence["noticed_step"]) for a in alerts] == [(2744, 2842), (3724, 3822)]
    ten = Engine(AnalyzerConfig(params={"vanishing_gradients": {"rearm": 10}}))
    assert [a.step for b in s.batches() for a in ten.feed(b) if a.kind == "vanishing_gradients"] == [2744]


def test_exploding_ratio_and_growth_and_nonfinite() -> None:
    ratio = grad_run(lambda s, k: healthy(s, k) * (1e3 ** ((5 - k) / 5) if s >= 120 else 1.0))
    assert [(a.step, a.evidence["condition"]) for a in alerts_of(ratio, "exploding_gradients")] == [(120, "layer_ratio")]
    # (From 0.01: at 1.0 the norm is 100x a loss of 1 at step 160, and the loss-scale test warns first.)
    growth = grad_run(healthy, total=lambda s: 0.01 if s < 150 else 0.01 * 10 ** ((s - 140) / 10))
    got = [(a.step, a.tag, a.evidence["condition"]) for a in alerts_of(growth, "exploding_gradients")]
    assert got == [(170, "grad_norm", "growth")]  # 10^3 > 100x at step 170, 180, 190
    nan = alerts_of(grad_run(healthy, nonfinite_at=200), "exploding_gradients")
    assert [(a.step, a.severity, a.tag) for a in nan] == [(200, "critical", "grad/net.6.weight")]


def test_exploding_ratio_sees_past_a_small_first_layer_in_norm_logs() -> None:
    """Held-out `ho_explode_tanh_cnn12` (Lightning per-layer norms only): gradient norms grow ~95x from the
    head to the second conv layer, but the first conv has 72 weights, so first/last *norm* is only 25.
    The largest input-side layer is compared; the same norms with a 10x larger head pass the ratio test
    (the total norm, ~300 beside a loss of 1, still fails the loss-scale test: these are an exploding run's)."""
    norms = [62.6, 242.6, 149.6, 37.7, 11.0, 2.54]

    def run(head_factor: float) -> Stream:
        rng = np.random.default_rng(0)
        s = Stream()
        for step in range(0, 200, 5):
            s.scalar("train/loss", step, 1.0)
            for k, name in enumerate(LAYERS):
                scale = norms[k] * (head_factor if k == len(LAYERS) - 1 else 1.0)
                s.scalar(f"grad_2.0_norm/{name}", step, scale * float(np.exp(0.1 * rng.standard_normal())))
        return s

    alerts = alerts_of(run(1.0), "exploding_gradients")
    assert [(a.step, a.evidence["condition"], a.evidence["input_side_layer"]) for a in alerts] == \
        [(0, "layer_ratio", "net.2.weight")]
    assert "input-side layer net.2.weight" in alerts[0].message
    assert [a.evidence["condition"] for a in alerts_of(run(10.0), "exploding_gradients")] == ["loss_scale"]


def test_exploding_silent_on_healthy_warmup_growth_and_one_spike() -> None:
    warm = grad_run(healthy, total=lambda s: 0.5 + min(s, 100) / 100 * 3 + (50 if s == 200 else 0))
    assert alerts_of(warm, "exploding_gradients") == []


def test_exploding_growth_of_the_total_norm_when_the_job_overflows_right_after() -> None:
    """Held-out `ho_explode_lr_ramp` (TF-style `train/grad_norm` + histograms): 1.02 early, 44 @120,
    8.4e7 @125, NaN @130, then the writer died. One huge finite log and a NaN is a growth episode,
    dated at the huge log, whether fed at once or a step at a time; the histograms stay healthy. The
    NaN total norm is a non-finite gradient itself (critical)."""
    def total(step: int) -> float:
        return 1.0 + 0.02 * np.sin(step) if step < 120 else {120: 44.0, 130: np.nan}.get(step, 8.4e7)

    run = grad_run(healthy, steps=range(0, 135, 5), total=total)
    got = [(a.step, a.tag, a.severity, a.evidence["condition"], a.evidence.get("noticed_step"))
           for a in alerts_of(run, "exploding_gradients")]
    assert got == [(125, "grad_norm", "warning", "growth", 130), (130, "grad_norm", "critical", "non_finite", None)]
    engine = Engine()
    cuts = [q for q in range(1, len(run)) if q % 7 == 0]
    assert [(a.step, a.tag) for b in run.batches(cuts) for a in engine.feed(b) if a.kind == "exploding_gradients"] == \
        [(125, "grad_norm"), (130, "grad_norm")]


def test_a_growth_that_ends_in_an_infinite_norm_says_so() -> None:
    """``tbmon demo``'s diverging run: 0.69 early, 1.3e4, then inf. The message said "was still infx it"."""
    def total(step: int) -> float:
        return 1.0 if step < 120 else {120: 44.0, 130: np.inf}.get(step, 8.4e7)

    growth = [a for a in alerts_of(grad_run(healthy, steps=range(0, 135, 5), total=total), "exploding_gradients")
              if a.evidence["condition"] == "growth"]
    assert len(growth) == 1 and "and was inf at step 130;" in growth[0].message and "infx" not in growth[0].message


def test_exploding_growth_is_not_started_by_nan_norms() -> None:
    """NaN total norms at a healthy level (e.g. skipped fp16 overflow steps) are not growth."""
    run = grad_run(healthy, total=lambda s: np.nan if s in (150, 160, 170) else 1.0)
    assert [a for a in alerts_of(run, "exploding_gradients") if a.evidence.get("condition") == "growth"] == []


def test_gradient_source_does_not_depend_on_where_a_chunk_cuts_the_first_step() -> None:
    """Per-layer norm scalars written before the histograms of each step: the histograms are the
    source (the first step has them), also when a watcher's first chunk holds only the norms."""
    rng = np.random.default_rng(0)
    s = Stream()
    for step in range(0, 300, 10):
        s.scalar("train/loss", step, 1.0)
        grads = {name: healthy(step, k) * (1e-4 if k == 0 and step >= 100 else 1.0) * rng.standard_normal(200)
                 for k, name in enumerate(LAYERS)}
        for name, g in grads.items():
            s.scalar(f"grad_norm/{name}", step, float(np.sqrt(np.sum(g * g))))
        for name, g in grads.items():
            s.histogram(f"grad/{name}", step, **hist_fields(g))
    for cuts in ((), (1 + len(LAYERS),), (1, 3, 1 + len(LAYERS), 2 + len(LAYERS))):
        engine = Engine()
        got = [(a.kind, a.step, a.tag, a.evidence["source"]) for b in s.batches(cuts) for a in engine.feed(b)]
        assert got == [("vanishing_gradients", 100, "grad/net.0.weight", "histogram_rms")], cuts


def test_layer_rss_stands_in_for_the_total_norm_until_its_first_step_whatever_the_chunking() -> None:
    """Histograms from step 0, every layer 1000x from step 150; the total norm is first logged at
    step 200 (e.g. HF's logging_steps). Before step 200 the layers' root-sum-square is the total:
    growth @150, for one batch and for a step-at-a-time feed alike."""
    s = Stream()
    rng = np.random.default_rng(1)
    for step in range(0, 300, 10):
        s.scalar("train/loss", step, 1.0)
        for k, name in enumerate(LAYERS):
            g = healthy(step, k) * (1e3 if step >= 150 else 1.0) * rng.standard_normal(200)
            s.histogram(f"grad/{name}", step, **hist_fields(g))
        if step >= 200:
            s.scalar("grad_norm", step, 1.0)
    step_of = [(s.points[i][1] if kind == "s" else s.hists[i][1]) for kind, i in s._order]
    per_step = [q for q in range(1, len(s)) if step_of[q] != step_of[q - 1]]
    for cuts in ((), per_step):
        engine = Engine()
        got = [(a.step, a.tag, a.evidence["condition"]) for b in s.batches(cuts) for a in engine.feed(b)
               if a.kind == "exploding_gradients"]
        assert got == [(150, "grad/net.0.weight", "growth")], cuts


def test_a_layer_logged_late_does_not_change_how_earlier_steps_are_judged() -> None:
    """The head (`net.10.weight`) is logged only from step 100 on; the first layer is starved from
    step 0. Steps before 100 are judged with the layers known then (last = `net.8.weight`), in one
    batch as step by step (one batch once judged them against the not-yet-logged head: NaN, silent)."""
    rng = np.random.default_rng(0)
    s = Stream()
    for step in range(0, 300, 10):
        s.scalar("train/loss", step, 1.0)
        for k, name in enumerate(LAYERS):
            if k == 5 and step < 100:
                continue
            scale = healthy(step, k) * (1e-4 if k == 0 else 1.0) * (1e4 if k == 4 else 1.0)
            s.histogram(f"grad/{name}", step, **hist_fields(scale * rng.standard_normal(200)))
    step_of = [(s.points[i][1] if kind == "s" else s.hists[i][1]) for kind, i in s._order]
    per_step = [q for q in range(1, len(s)) if step_of[q] != step_of[q - 1]]
    for cuts in ((), per_step):
        engine = Engine()
        got = [(a.kind, a.step, a.evidence["last_layer"]) for b in s.batches(cuts) for a in engine.feed(b)
               if a.kind == "vanishing_gradients"]  # (net.8's RMS of ~100 beside a loss of 1 is also loss_scale)
        assert got == [("vanishing_gradients", 0, "net.8.weight")], cuts
