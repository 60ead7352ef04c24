"""How fast `overfitting` could notice, and what that would cost: the rule's defaults against faster settings.

For each setting (patience, smooth_evals, noise_sigma) of the real rule, fed a training step at a
time as `tbmon watch` is: the median/max notice delay on the overfitting runs of both corpus sets
(% of the run; 40 evaluations per run, so each evaluation after the minimum costs 2.5%) and of the
main set re-trained with an evaluation every 2 steps (100 per run), the healthy runs of all three it
flags, the spurious overfitting warnings on the other runs of all three (on a run that diverges or
explodes and shows no overfitting, or dated before the real minimum: what a faster rule also buys),
and how many of 300 synthetic noisy validation plateaus (the unit test's curve: decay to a floor,
then 5%, 10% or 20% multiplicative noise; training loss still falling) it flags.

    .venv/bin/python bench/overfitting_tradeoff.py      # needs the corpora of bench/detection_quality.py
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tbmon.analyzers import AnalyzerConfig, Engine  # noqa: E402
from tbmon.monitor import read  # noqa: E402
from tests.analyzers.streams import healthy_loss, scalar_run  # noqa: E402
from tests.analyzers.test_overfitting import N, val_curve  # noqa: E402
from tests.scenarios.catalog import HELDOUT, SCENARIOS  # noqa: E402
from tests.scenarios.corpus import build  # noqa: E402
from tests.scenarios.replay import replay  # noqa: E402
from tests.scenarios.scoring import score, score_live  # noqa: E402

SETTINGS = [  # (patience, smooth_evals, noise_sigma); the first is the default
    (3, 3, 3.0), (2, 2, 3.0), (3, 1, 3.0), (2, 1, 3.0), (2, 1, 2.0), (1, 1, 3.0),
]
KIND = "overfitting"
DENSE = {"val_every": 2, "hist_every": 5}  # bench/detection_quality.py --val-every 2 --hist-every 5


def _config(patience: int, smooth: int, sigma: float) -> AnalyzerConfig:
    return AnalyzerConfig.from_mapping(
        {"enable": ["overfitting"], "overfitting": {"patience": patience, "smooth_evals": smooth, "noise_sigma": sigma}})


def _plateaus_flagged(config: AnalyzerConfig) -> int:
    flagged = 0
    for seed in range(100):
        for noise in (0.05, 0.1, 0.2):
            run = scalar_run({"train/loss": healthy_loss(N, floor=0.02, seed=seed),
                              "val/loss": val_curve(N, bottom=None, noise=noise, seed=seed)}, N)
            engine = Engine(config)
            flagged += any(engine.feed(b) for b in run.batches())
    return flagged


def _delays(corpus: list, data: object, config: AnalyzerConfig) -> tuple[list[float], int, int, int, int, int]:
    """Notice delays of the overfitting runs found, found, positives, healthy runs flagged, healthy runs, spurious."""
    replayed = replay(data, config)
    live = score_live(corpus, replayed)
    row = live.kind_row(KIND)
    delays = [d for r in live.results if (d := r.delay(KIND)) is not None]
    dated = score(corpus, [alert for alert, _ in replayed])
    spurious = sum(1 for r in dated.results for a, seen in r.other_kind if a.kind == KIND and not seen)
    spurious += sum(1 for r in dated.results for a in r.premature if a.kind == KIND)
    return delays, row.detected, row.positives, sum(1 for r in live.healthy if r.false_alarms), len(live.healthy), spurious


def main() -> int:
    dense = tuple(dataclasses.replace(s, recipe=dataclasses.replace(s.recipe, **DENSE)) for s in SCENARIOS)
    sets = []
    for scenarios, name in ((SCENARIOS, "detection-corpus"), (HELDOUT, "detection-heldout"),
                            (dense, "detection-corpus" + "".join(f"-{k}{v}" for k, v in DENSE.items()))):
        out = ROOT / "bench" / "out" / name
        sets.append((build(out, scenarios), read(str(out))))
    print("| patience | smooth_evals | noise_sigma | found (40 evals/run) | median / max notice delay "
          "| found (100 evals/run) | median / max notice delay | healthy runs flagged | spurious on other runs "
          "| noisy plateaus flagged |\n|---|---|---|---|---|---|---|---|---|---|")
    for patience, smooth, sigma in SETTINGS:
        config = _config(patience, smooth, sigma)
        main_set, heldout, dense_row = (_delays(corpus, data, config) for corpus, data in sets)
        sparse = tuple(a + b for a, b in zip(main_set, heldout))  # delay lists concatenate, counts add
        flagged, healthy, spurious = (sparse[k] + dense_row[k] for k in (3, 4, 5))
        mark = " (default)" if (patience, smooth, sigma) == SETTINGS[0] else ""
        cells = [f"{found}/{positives} | {100 * statistics.median(d):.1f}% / {100 * max(d):.1f}%"
                 for d, found, positives, *_ in (sparse, dense_row)]
        print(f"| {patience}{mark} | {smooth} | {sigma} | {cells[0]} | {cells[1]} | {flagged}/{healthy} | {spurious} "
              f"| {_plateaus_flagged(config)}/300 |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
