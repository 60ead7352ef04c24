"""Synthetic training streams for the analyzer tests: per-step points, arrival order = seq.

The shapes follow what real runs log (exponential-ish loss decay with minibatch noise,
linear warm-up + cosine lr, eval every N steps); the failure modes are injected at a known
step so the tests can check the alert's ``step``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tbmon.analyzers.series import HistogramSeries, RunBatch, ScalarSeries


def healthy_loss(n: int, *, seed: int = 0, noise: float = 0.08, start: float = 2.3, floor: float = 0.2) -> np.ndarray:
    """Decaying loss with multiplicative minibatch noise (log-normal, heavy right tail)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    clean = floor + (start - floor) * np.exp(-t / (n / 5))
    return clean * np.exp(noise * rng.standard_normal(n))


def warmup_cosine_lr(n: int, peak: float = 3e-2, warmup: int = 100) -> np.ndarray:
    t = np.arange(n, dtype=float)
    warm = peak * (t + 1) / warmup
    cos = peak * 0.5 * (1 + np.cos(np.pi * (t - warmup) / max(n - warmup, 1)))
    return np.where(t < warmup, warm, cos)


class Stream:
    """Collects points of one run in arrival order and turns them into RunBatches."""

    def __init__(self, run: str = "run", experiment_dir: str | None = None, role: str | None = None) -> None:
        self.run, self.experiment_dir, self.role = run, experiment_dir, role
        self.points: list[tuple[str, int, float]] = []  # scalar (tag, step, value)
        self.hists: list[tuple[str, int, dict]] = []
        self._order: list[tuple[str, int]] = []  # ("s"|"h", index) in arrival order

    def scalar(self, tag: str, step: int, value: float) -> None:
        self._order.append(("s", len(self.points)))
        self.points.append((tag, step, float(value)))

    def histogram(self, tag: str, step: int, **fields) -> None:
        self._order.append(("h", len(self.hists)))
        self.hists.append((tag, step, fields))

    def __len__(self) -> int:
        return len(self._order)

    def batches(self, cuts: Sequence[int] = ()) -> list[RunBatch]:
        """The stream cut at the given seq positions (each cut = prefix of every tag)."""
        bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(self))), len(self)]
        return [self._batch(lo, hi) for lo, hi in zip(bounds, bounds[1:])]

    def _batch(self, lo: int, hi: int) -> RunBatch:
        scal: dict[str, list] = {}
        hist: dict[str, list] = {}
        for seq in range(lo, hi):
            kind, i = self._order[seq]
            if kind == "s":
                tag, step, value = self.points[i]
                scal.setdefault(tag, []).append((seq, step, value))
            else:
                tag, step, f = self.hists[i]
                hist.setdefault(tag, []).append((seq, step, f))
        scalars = tuple(
            ScalarSeries(
                tag,
                np.array([r[0] for r in rows], dtype=np.int64),
                np.array([r[1] for r in rows], dtype=np.int64),
                np.array([1000.0 + r[0] for r in rows]),
                np.array([r[2] for r in rows], dtype=float),
            )
            for tag, rows in scal.items()
        )
        histograms = tuple(_hist_series(tag, rows) for tag, rows in hist.items())
        return RunBatch(self.run, scalars, histograms, experiment_dir=self.experiment_dir, role=self.role)


def _hist_series(tag: str, rows: list) -> HistogramSeries:
    def col(name: str) -> np.ndarray:
        return np.array([r[2][name] for r in rows], dtype=float)

    return HistogramSeries(
        tag,
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.int64),
        np.array([1000.0 + r[0] for r in rows]),
        col("min"), col("max"), col("num"), col("sum"), col("sum_squares"),
        tuple(np.asarray(r[2]["bucket_limits"], dtype=float) for r in rows),
        tuple(np.asarray(r[2]["bucket_counts"], dtype=float) for r in rows),
    )


def hist_fields(values: np.ndarray) -> dict:
    """HistogramProto-like summary of ``values`` (log-magnitude buckets with a zero bucket)."""
    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    edges = np.concatenate([-np.logspace(2, -12, 29), [0.0], np.logspace(-12, 2, 29)])
    counts = np.histogram(np.clip(finite, -99, 99), bins=np.concatenate([[-np.inf], edges, [np.inf]]))[0]
    return {
        "min": float(v.min()), "max": float(v.max()), "num": float(v.size), "sum": float(v.sum()),
        "sum_squares": float((v * v).sum()), "bucket_limits": np.concatenate([edges, [np.inf]]),
        "bucket_counts": counts.astype(float),
    }


def scalar_run(columns: Mapping[str, np.ndarray | Mapping[int, float]], n: int, **kw) -> Stream:
    """A run logging each column at every step (arrays) or at given steps (dicts), in column order."""
    s = Stream(**kw)
    for step in range(n):
        for tag, col in columns.items():
            if isinstance(col, Mapping):
                if step in col:
                    s.scalar(tag, step, col[step])
            elif step < len(col):
                s.scalar(tag, step, col[step])
    return s


def canon(alerts: list, *, kind: str) -> list[str]:
    """One rule's alerts as sorted JSON: equal lists mean the same decisions, however they were fed."""
    import json

    return sorted(json.dumps(a.to_dict(), sort_keys=True) for a in alerts if a.kind == kind)


def feed(stream: Stream, cuts: Sequence[int] = (), roundtrip: bool = False, *, kind: str) -> list:
    """``kind``'s alerts from one engine fed ``stream`` in the batches ``cuts`` makes (``roundtrip``: the
    engine's state goes through JSON into a fresh engine before each batch, as a restarted watcher's)."""
    import json

    from tbmon.analyzers import Engine

    engine, out = Engine(), []
    for batch in stream.batches(cuts):
        if roundtrip:
            state = json.loads(json.dumps(engine.state_dict()))
            engine = Engine()
            engine.load_state_dict(state)
        out += engine.feed(batch)
    return [a for a in out if a.kind == kind]


def step_cuts(stream: Stream) -> list[int]:
    """Cuts between every two logged steps: the stream fed a step at a time."""
    steps = [(stream.points[i][1] if kind == "s" else stream.hists[i][1]) for kind, i in stream._order]
    return [q for q in range(1, len(steps)) if steps[q] != steps[q - 1]]


def any_chunking_test(synthetic: Mapping[str, Stream], whole: Mapping[str, list[str]], kind: str):
    """A hypothesis test: each stream of ``synthetic``, cut anywhere (with or without a JSON state round trip
    between batches), gives ``kind``'s alerts ``whole[name]`` (``canon`` of the one-batch feed)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(name=st.sampled_from(sorted(synthetic)), data=st.data())
    def test(name: str, data: st.DataObject) -> None:
        stream = synthetic[name]
        cuts = data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=12))
        assert canon(feed(stream, cuts, roundtrip=data.draw(st.booleans()), kind=kind), kind=kind) == whole[name]

    return test
