"""Replay a corpus to tbmon's engine the way `tbmon watch` sees it: a training step at a time.

An alert's `step` is, by contract, where its condition began — it may be dated back to the start of the
episode. How late a live watcher *notices* is a different figure: the step of the newest point it had
been given when the alert came out. Runs of one scenario (Keras train/validation) are interleaved by
wall time, as their writers produced them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tbmon.analyzers.series import HistogramSeries, RunBatch, ScalarSeries


def _slice(series: ScalarSeries | HistogramSeries, lo: int, hi: int) -> ScalarSeries | HistogramSeries:
    keep = (series.seq >= lo) & (series.seq < hi)
    fields = {}
    for f in dataclasses.fields(series):
        value = getattr(series, f.name)
        if isinstance(value, np.ndarray):
            fields[f.name] = value[keep]
        elif isinstance(value, tuple):
            fields[f.name] = tuple(v for v, k in zip(value, keep) if k)
        else:
            fields[f.name] = value
    return type(series)(**fields)


def _chunks(batch: RunBatch) -> list[tuple[float, int, RunBatch]]:
    """One chunk per run of consecutive same-step points in arrival order: (wall time, last step, batch)."""
    series = [*batch.scalars, *batch.histograms]
    seq = np.concatenate([s.seq for s in series])
    order = np.argsort(seq, kind="stable")
    seq = seq[order]
    step = np.concatenate([s.step for s in series])[order]
    wall = np.concatenate([s.wall_time for s in series])[order]
    starts = np.flatnonzero(np.r_[True, step[1:] != step[:-1]])
    bounds = list(seq[starts]) + [int(seq[-1]) + 1]
    out = []
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        scalars = tuple(p for s in batch.scalars if len(p := _slice(s, lo, hi)))
        histograms = tuple(p for h in batch.histograms if len(p := _slice(h, lo, hi)))
        end = (starts[i + 1] if i + 1 < len(starts) else len(seq)) - 1
        chunk = dataclasses.replace(batch, scalars=scalars, histograms=histograms, session_starts=())
        out.append((float(wall[end]), int(step[end]), chunk))
    return out


def replay(read_result: Any, config: Any = None) -> list[tuple[Any, int]]:
    """Every alert with the step of the newest point of its scenario fed when it was raised."""
    from tbmon.analyzers import Engine

    by_scenario: dict[str, list[tuple[float, int, int, RunBatch]]] = {}
    for index, batch in enumerate(read_result.batches):
        if batch.scalars or batch.histograms:
            key = batch.run.split("/", 1)[0]
            by_scenario.setdefault(key, []).extend((w, index, s, c) for w, s, c in _chunks(batch))
    engine = Engine(config)
    noticed = []
    for chunks in by_scenario.values():
        chunks.sort(key=lambda c: (c[0], c[1]))  # wall time; a run's own order is kept (stable, same clock)
        for _, _, step, chunk in chunks:
            noticed += [(alert, step) for alert in engine.feed(chunk)]
    return noticed
