"""Detection quality of tbmon's analyzers on the labelled scenario corpus (issue #3).

Prints the per-kind table (recall, median/max detection delay as % of the run, premature alerts; the
same for a step-at-a-time replay: live recall and notice delay), false alarms on healthy runs, the
alerts that differ between one-shot and replay, and one line per scenario. The same run scores the field's default
overfitting rules (SageMaker Debugger `Overfit`, UMLAUT's epoch rule) on the same corpus as the anchor.

    .venv/bin/python bench/detection_quality.py            # corpus cached in bench/out/ by code hash
    .venv/bin/python bench/detection_quality.py --rebuild  # retrain every scenario
    .venv/bin/python bench/detection_quality.py --set heldout  # the 22 scenarios the rules were not tuned on
    .venv/bin/python bench/detection_quality.py --val-every 2 --hist-every 5  # same runs, denser logging
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tbmon.analyzers.alerts import Alert  # noqa: E402
from tests.scenarios.catalog import HELDOUT, SCENARIOS  # noqa: E402
from tests.scenarios.corpus import Labelled, build, corpus_key  # noqa: E402
from tests.scenarios.labels import signals  # noqa: E402
from tests.scenarios.scoring import QualityReport, evaluate, score  # noqa: E402
from tests.scenarios.training import parameter_order  # noqa: E402


def _anchor_overfit_alerts(corpus: list[Labelled]) -> dict[str, list[Alert]]:
    """Overfitting alerts of two published default rules, computed on each scenario's own curves.

    SageMaker Debugger `Overfit`: (val - train) / train > ratio_threshold=0.1 for patience=1 step.
    UMLAUT: validation loss went up since the previous evaluation while train loss did not.
    Lightning `EarlyStopping(monitor=val, patience=3)` (min_delta 0): no new best for 3 evaluations;
    what most people run instead of a monitor, and it stops healthy runs whose loss merely stalls.
    Train loss at an evaluation = mean of the train points since the previous evaluation. Every
    anchor alert is dated at the evaluation that fired it, so its delay is a notice delay.
    """
    early_stop = "Lightning EarlyStopping (patience 3)"
    rules: dict[str, list[Alert]] = {"SageMaker Overfit (0.1, patience 1)": [], "UMLAUT epoch rule": [], early_stop: []}
    for item in corpus:
        sig = signals(item.path, item.scenario.style, parameter_order(item.scenario.recipe))
        val, train = sig.val_loss, sig.train_loss
        prev_step, prev_val, prev_train = None, None, None
        fired = {name: False for name in rules}
        best, wait = float("inf"), 0
        for step, v in zip(val.step, val.value):
            window = train.value[(train.step <= step) & (train.step > (prev_step if prev_step is not None else -1))]
            t = float(np.mean(window)) if window.size else float("nan")
            alert = Alert(item.scenario.name, "overfitting", "warning", int(step), 0.0, "val", "")
            if not fired["SageMaker Overfit (0.1, patience 1)"] and t > 0 and (v - t) / t > 0.1:
                rules["SageMaker Overfit (0.1, patience 1)"].append(alert)
                fired["SageMaker Overfit (0.1, patience 1)"] = True
            if (not fired["UMLAUT epoch rule"] and prev_val is not None and v > prev_val
                    and not t > prev_train):
                rules["UMLAUT epoch rule"].append(alert)
                fired["UMLAUT epoch rule"] = True
            best, wait = (v, 0) if v < best else (best, wait + 1)
            if not fired[early_stop] and wait >= 3:
                rules[early_stop].append(alert)
                fired[early_stop] = True
            prev_step, prev_val, prev_train = step, v, t
    return rules


def _anchor_line(name: str, report: QualityReport) -> str:
    row = report.kind_row("overfitting")  # tbmon: pass its live replay, whose alert steps are notice steps
    healthy = report.healthy
    flagged = sum(1 for r in healthy if r.false_alarms)
    delay = "—" if row.median_delay is None else f"{100 * row.median_delay:.1f}%"
    return (f"| {name} | {row.recall:.2f} | {delay} | {flagged}/{len(healthy)} healthy runs flagged |")


def _replay_differences(report: QualityReport) -> list[str]:
    """Alerts that differ between one-shot `analyze()` and the step-at-a-time replay (should be none)."""
    key = lambda a: (a.run, a.kind, a.tag, a.step, a.severity)  # noqa: E731
    oneshot = {key(a) for a in report.alerts}
    live = {key(a) for a, _ in report.replayed}
    return ([f"only one-shot: {k}" for k in sorted(oneshot - live)]
            + [f"only live:     {k}" for k in sorted(live - oneshot)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=("main", "heldout"), default="main",
                        help="main: the corpus the test enforces; heldout: scenarios the rules were not developed on")
    parser.add_argument("--out", type=Path, help="corpus directory (default bench/out/detection-corpus[-heldout])")
    parser.add_argument("--rebuild", action="store_true", help="retrain every scenario")
    parser.add_argument("--val-every", type=int, help="evaluate every N steps instead of each recipe's 5 (notice "
                        "delays scale with the logging cadence; the corpus goes to its own directory)")
    parser.add_argument("--hist-every", type=int, help="log gradient histograms every N steps instead of 10")
    args = parser.parse_args()
    try:
        from tbmon.analyzers import analyze  # noqa: F401
    except ImportError:
        print("detection_quality: tbmon.analyzers.analyze is not available in this checkout", file=sys.stderr)
        return 2
    scenarios = SCENARIOS if args.set == "main" else HELDOUT
    name = "detection-corpus" if args.set == "main" else "detection-heldout"
    cadence = {k: v for k, v in (("val_every", args.val_every), ("hist_every", args.hist_every)) if v}
    if cadence:
        scenarios = tuple(dataclasses.replace(s, recipe=dataclasses.replace(s.recipe, **cadence)) for s in scenarios)
        name += "".join(f"-{k}{v}" for k, v in cadence.items())
    args.out = args.out or ROOT / "bench" / "out" / name
    if args.rebuild:
        shutil.rmtree(args.out, ignore_errors=True)
    t0 = time.perf_counter()
    corpus = build(args.out, scenarios)
    broken = [i.scenario.name for i in corpus
              if not set(i.scenario.kinds) <= set(i.onsets) or (not i.scenario.kinds and i.onsets)]
    if broken:
        print(f"detection_quality: scenarios that do not show their label: {broken}", file=sys.stderr)
        return 1
    t1 = time.perf_counter()
    report = evaluate(args.out, corpus)
    t2 = time.perf_counter()
    kinds = sorted({k for i in corpus for k in i.scenario.kinds})
    print(f"corpus {corpus_key()} at {args.out}: {len(corpus)} runs "
          f"({sum(1 for i in corpus if not i.scenario.kinds)} healthy; "
          + ", ".join(f"{k} {sum(1 for i in corpus if k in i.scenario.kinds)}" for k in kinds) + ")")
    print(f"build/label {t1 - t0:.1f}s, tbmon analyze + score {t2 - t1:.1f}s\n")
    print(report.table())
    print("\nAnchor on the same corpus (overfitting only; the fixed default rules of other tools):\n")
    print("| rule | overfitting recall | median notice delay | false alarms |\n|---|---|---|---|")
    print(_anchor_line("tbmon (live)", report.live))
    for name, alerts in _anchor_overfit_alerts(corpus).items():
        print(_anchor_line(name, score(corpus, alerts)))
    differences = _replay_differences(report)
    print(f"\nOne-shot vs step-at-a-time alerts (run, kind, tag, step, severity): {len(differences)} differ")
    print("\n".join(differences))
    print("\nPer scenario:\n" + report.details())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
