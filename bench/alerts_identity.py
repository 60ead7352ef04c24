"""Every alert of the detection corpora, dumped to JSON: proof that a speed change changed no decision.

Reads each run directory of each corpus, runs ``analyze`` on it (one-shot) and the step-at-a-time
replay that ``tbmon watch`` sees, and writes one sorted list of ``(corpus, run, mode, kind, tag, step,
severity, message)`` per corpus. Run it on the old code (``--out before.json``), then on the new
(``--out after.json --compare before.json``): any difference is listed and the exit status is 1.

    .venv/bin/python bench/alerts_identity.py --out bench/out/alerts-before.json
    .venv/bin/python bench/alerts_identity.py --out bench/out/alerts-after.json --compare bench/out/alerts-before.json
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tbmon.analyzers.overfitting as overfitting  # noqa: E402
from tbmon.analyzers import analyze  # noqa: E402
from tbmon.monitor import read  # noqa: E402
from tests.scenarios.replay import replay  # noqa: E402

CORPORA = {
    "detection": (ROOT / "bench" / "out" / "detection-corpus", r".*"),
    # Only s0000-s0798: runs s08xx+ are being added while this comparison is made.
    "sampled-dev": (ROOT / "bench" / "out" / "sampled-dev", r"s0[0-7]\d\d_"),
    "real-logs": (Path("/work/shared/real-logs"), r".*"),
}


def _rows(corpus: str, root: Path, pattern: str, shard: tuple[int, int], live: bool) -> list[list[object]]:
    rows: list[list[object]] = []
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and re.match(pattern, p.name))
    for run_dir in dirs[shard[0] :: shard[1]]:
        result = read(run_dir)
        modes = [("oneshot", analyze(result))] + ([("live", [a for a, _ in replay(result)])] if live else [])
        for mode, alerts in modes:
            rows += [[corpus, f"{run_dir.name}/{a.run}", mode, a.kind, a.tag, a.step, a.severity, a.message]
                     for a in alerts]
    return sorted(rows, key=lambda r: [str(x) for x in r])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the alerts (JSON)")
    parser.add_argument("--compare", type=Path, help="a JSON dump from before the change: list every difference")
    parser.add_argument("--corpus", action="append", choices=tuple(CORPORA), help="only these corpora (default all)")
    parser.add_argument("--shard", default="0/1", metavar="K/N", help="only every N-th run directory from the K-th "
                        "(run N processes, then --combine their dumps)")
    parser.add_argument("--no-live", action="store_true", help="one-shot only: the step-at-a-time replay costs "
                        "~1 s CPU a run (check it on a --shard of the runs)")
    parser.add_argument("--plan-every-batch", action="store_true", help="let overfitting plan every batch of "
                        "evaluations in numpy (its dense-validation path, normally for 64+ evaluations at once): "
                        "checks that path on every run of the corpora")
    parser.add_argument("--combine", nargs="+", type=Path, metavar="DUMP", help="write the union of these dumps to "
                        "--out instead of analysing (then --compare as usual)")
    args = parser.parse_args()
    if args.plan_every_batch:
        overfitting.DENSE_MIN_EVALS = 1
    dump: dict[str, list[list[object]]] = {}
    if args.combine:
        for part in args.combine:
            for name, rows in json.loads(part.read_text()).items():
                dump[name] = sorted(dump.get(name, []) + rows, key=lambda r: [str(x) for x in r])
    k, n = (int(x) for x in args.shard.split("/"))
    for name in [] if args.combine else args.corpus or CORPORA:
        root, pattern = CORPORA[name]
        t0 = time.process_time()
        dump[name] = _rows(name, root, pattern, (k, n), not args.no_live)
        print(f"{name}: {len(dump[name])} alerts in {time.process_time() - t0:.1f}s CPU", flush=True)
    args.out.write_text(json.dumps(dump, indent=0))
    if args.compare is None:
        return 0
    before = json.loads(args.compare.read_text())
    differences = 0
    for name, rows in dump.items():
        old, new = Counter(json.dumps(r) for r in before.get(name, [])), Counter(json.dumps(r) for r in rows)
        for row in sorted((old - new).elements()):
            print(f"only before: {row}")
        for row in sorted((new - old).elements()):
            print(f"only after:  {row}")
        differing = sum(((old - new) + (new - old)).values())
        differences += differing
        print(f"{name}: {sum(new.values())} alerts, {differing} differ")
    return 1 if differences else 0


if __name__ == "__main__":
    raise SystemExit(main())
