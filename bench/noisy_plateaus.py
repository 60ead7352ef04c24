"""How often a flat, noisy validation loss is called overfitting: by tbmon's rule, and by the sampled corpus's labeller.

No overfitting happens in these runs by construction: the validation loss decays to a floor and stays there with
multiplicative noise (the unit tests' curve: ``tests.analyzers.test_overfitting.val_curve``, an evaluation every 20
steps), while the training loss keeps falling. For each run length (evaluations per run) and noise level, the share of
seeded runs that `overfitting` warns (one-shot, default config) and that the labeller (``tests.sampled.labels.judge``)
labels overfitting or borderline. The unit test checks 30 evaluations at 5 % noise; real runs are often longer and
noisier. The lowest of many noisy values sits below the level they were drawn from, the further the longer the
plateau: the rule measures a rise from the level around its best, the labeller on medians over a tenth of the
evaluations (docs/detection-quality.md, twenty-fourth and twenty-fifth rounds). The labeller columns say how much of
this the sampled corpus can see: a run it labels overfitting or borderline is never counted as a healthy run warned.

    .venv/bin/python bench/noisy_plateaus.py [--seeds 100]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tbmon.analyzers import Engine  # noqa: E402
from tests.analyzers.streams import healthy_loss, scalar_run  # noqa: E402
from tests.analyzers.test_overfitting import EVAL, val_curve  # noqa: E402
from tests.sampled.labels import Curves, Series, judge  # noqa: E402

EVALUATIONS = (30, 60, 100, 200)
NOISE = (0.05, 0.1, 0.2)


def _warned(train: np.ndarray, val: dict[int, float], n: int) -> bool:
    engine = Engine()
    stream = scalar_run({"train/loss": train, "val/loss": val}, n)
    return any(a.kind == "overfitting" for batch in stream.batches() for a in engine.feed(batch))


def _label(train: np.ndarray, val: dict[int, float], n: int) -> str:
    steps = sorted(val)
    curves = Curves(Series(np.arange(n), train), Series(np.asarray(steps), np.asarray([val[s] for s in steps])),
                    None, None, None, params=1, untrained=float(train[0]), chance=float(train[0]), run_length=n)
    labels = judge(curves, "healthy")
    return "overfitting" if "overfitting" in labels["onsets"] else "borderline" if labels["borderline"] else "healthy"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100, help="runs per row (default 100)")
    seeds = parser.parse_args().seeds
    print("| evaluations | noise | tbmon warns overfitting | labeller: overfitting | labeller: borderline |\n"
          "|---|---|---|---|---|")
    for evaluations in EVALUATIONS:
        n = evaluations * EVAL
        for noise in NOISE:
            warned, labels = 0, []
            for seed in range(seeds):
                train = healthy_loss(n, floor=0.02, seed=seed)
                val = val_curve(n, bottom=None, noise=noise, seed=seed)
                warned += _warned(train, val, n)
                labels.append(_label(train, val, n))
            share = lambda k: f"{100 * k / seeds:.0f} %"  # noqa: E731
            print(f"| {evaluations} | {100 * noise:.0f} % | {share(warned)} | {share(labels.count('overfitting'))} | "
                  f"{share(labels.count('borderline'))} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
