"""Replay a corpus to tbmon's engine the way `tbmon watch` sees it: a training step at a time.

An alert's `step` is, by contract, where its condition began — it may be dated back to the start of the
episode. How late a live watcher *notices* is a different figure: the step of the newest point it had
been given when the alert came out. Runs of one scenario (Keras train/validation) are interleaved by
wall time, as their writers produced them.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Iterator
from typing import Any

import numpy as np

from tbmon.analyzers.series import RunBatch, seq_slice


def step_bounds(batch: RunBatch) -> np.ndarray:
    """The seq numbers where the step changes in arrival order, then one past the last point."""
    series = [*batch.scalars, *batch.histograms]
    seq = np.concatenate([s.seq for s in series])
    order = np.argsort(seq, kind="stable")
    seq, step = seq[order], np.concatenate([s.step for s in series])[order]
    return np.append(seq[np.r_[True, step[1:] != step[:-1]]], seq[-1] + 1)


def split(batch: RunBatch, bounds: np.ndarray) -> Iterator[RunBatch]:
    """The batch cut at these seq numbers: each piece continues every tag where the last stopped."""
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        yield dataclasses.replace(
            batch, session_starts=(),
            scalars=tuple(p for s in batch.scalars if len(p := seq_slice(s, lo, hi))),
            histograms=tuple(p for h in batch.histograms if len(p := seq_slice(h, lo, hi))),
        )


def _chunks(batch: RunBatch) -> list[tuple[float, int, RunBatch]]:
    """One chunk per run of consecutive same-step points in arrival order: (wall time, last step, batch)."""
    out = []
    for chunk in split(batch, step_bounds(batch)):
        last = max((*chunk.scalars, *chunk.histograms), key=lambda s: int(s.seq[-1]))
        out.append((float(last.wall_time[-1]), int(last.step[-1]), chunk))
    return out


def replay(read_result: Any, config: Any = None) -> list[tuple[Any, int]]:
    """Every alert with the step of the newest point of its scenario fed when it was raised."""
    from tbmon.analyzers import Engine

    by_scenario: dict[str, list[list[tuple[float, int, RunBatch]]]] = {}
    for batch in read_result.batches:
        if batch.scalars or batch.histograms:
            by_scenario.setdefault(batch.run.split("/", 1)[0], []).append(_chunks(batch))
    engine = Engine(config)
    noticed = []
    for runs in by_scenario.values():
        # The runs interleaved by wall time; each run's own chunks in its order, as a watcher reads them (two
        # writers in one directory interleave their wall times, and a sort by them fed a run's points out of
        # order: the engine takes a run's points in seq order).
        for _, step, chunk in heapq.merge(*runs, key=lambda c: c[0]):
            noticed += [(alert, step) for alert in engine.feed(chunk)]
    return noticed
