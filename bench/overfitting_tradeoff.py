"""How fast `overfitting` could notice, and what that would cost: the rule's defaults against faster settings.

For each setting (patience, smooth_evals, noise_sigma) of the real rule, fed a training step at a
time as `tbmon watch` is: the median/max notice delay on the overfitting runs of both corpus sets
(% of the run), the healthy corpus runs it flags, and how many of 200 synthetic noisy validation
plateaus (the unit test's curve: decay to a floor, then 5% or 10% multiplicative noise; training
loss still falling) it flags. The corpus logs 40 evaluations per run, so confirming over two
evaluations after the minimum is already 5.0% of a run.

    .venv/bin/python bench/overfitting_tradeoff.py      # needs the corpora of bench/detection_quality.py
"""

from __future__ import annotations

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
from tests.scenarios.scoring import score_live  # noqa: E402

SETTINGS = [  # (patience, smooth_evals, noise_sigma); the first is the default
    (3, 3, 3.0), (2, 2, 3.0), (2, 3, 3.0), (3, 1, 3.0), (2, 1, 3.0), (2, 1, 2.0), (1, 1, 3.0),
]


def _config(patience: int, smooth: int, sigma: float) -> AnalyzerConfig:
    return AnalyzerConfig.from_mapping(
        {"enable": ["overfitting"], "overfitting": {"patience": patience, "smooth_evals": smooth, "noise_sigma": sigma}})


def _plateaus_flagged(config: AnalyzerConfig) -> int:
    flagged = 0
    for seed in range(100):
        for noise in (0.05, 0.1):
            run = scalar_run({"train/loss": healthy_loss(N, floor=0.02, seed=seed),
                              "val/loss": val_curve(N, bottom=None, noise=noise, seed=seed)}, N)
            engine = Engine(config)
            flagged += any(engine.feed(b) for b in run.batches())
    return flagged


def main() -> int:
    sets = []
    for scenarios, name in ((SCENARIOS, "detection-corpus"), (HELDOUT, "detection-heldout")):
        out = ROOT / "bench" / "out" / name
        sets.append((build(out, scenarios), read(str(out))))
    print("| patience | smooth_evals | noise_sigma | overfitting runs noticed | median notice delay | max notice delay "
          "| healthy corpus runs flagged | noisy plateaus flagged |\n|---|---|---|---|---|---|---|---|")
    for patience, smooth, sigma in SETTINGS:
        config = _config(patience, smooth, sigma)
        delays, found, positives, flagged, healthy = [], 0, 0, 0, 0
        for corpus, data in sets:
            live = score_live(corpus, replay(data, config))
            row = live.kind_row("overfitting")
            positives += row.positives
            found += row.detected
            delays += [d for r in live.results if (d := r.delay("overfitting")) is not None]
            flagged += sum(1 for r in live.healthy if r.false_alarms)
            healthy += len(live.healthy)
        mark = " (default)" if (patience, smooth, sigma) == SETTINGS[0] else ""
        print(f"| {patience}{mark} | {smooth} | {sigma} | {found}/{positives} | {100 * statistics.median(delays):.1f}% "
              f"| {100 * max(delays):.1f}% | {flagged}/{healthy} | {_plateaus_flagged(config)}/200 |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
