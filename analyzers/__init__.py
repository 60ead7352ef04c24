"""tbmon's detection rules: pure logic over columnar batches (no I/O, no printing, no clock).

``analyze(logdir_or_read_result)`` is the one-shot entry point; ``Engine`` is the incremental
one that ``tbmon watch`` feeds batch by batch and checkpoints with ``state_dict()``;
``alerts_frame(alerts)`` turns alerts into a pandas DataFrame.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from tbmon.analyzers.alerts import Alert, alerts_frame
from tbmon.analyzers.config import AnalyzerConfig
from tbmon.analyzers.engine import Engine

__all__ = ["Alert", "AnalyzerConfig", "Engine", "alerts_frame", "analyze"]


def analyze(logdir_or_read_result: Any, config: AnalyzerConfig | None = None) -> list[Alert]:
    """All alerts for a logdir (read with ``tbmon.monitor.read``) or for a ``ReadResult``.

    Each alert's evidence also says how long its episode lasted (``episode_points``: how
    many points met the condition; ``episode_last_step``), which a live watcher cannot know
    when it raises the alert.
    """
    source = logdir_or_read_result
    if isinstance(source, (str, os.PathLike)):
        from tbmon.monitor import read  # the monitor does the I/O; imported only when asked to

        source = read(source, histograms="summary")  # the rules use moments, not buckets
    engine = Engine(config)
    alerts: list[Alert] = []
    for batch in source.batches:
        alerts += engine.feed(batch)
    episodes = engine.episodes()
    latest: dict[tuple[str, str, str], Alert] = {}
    for alert in alerts:  # an episode's count belongs to the last alert of its (run, kind, tag)
        latest[(alert.run, alert.kind, alert.tag)] = alert
    out = []
    for alert in alerts:
        key = (alert.run, alert.kind, alert.tag)
        ep = episodes.get(key)
        if ep is not None and latest[key] is alert:
            evidence = {**alert.evidence, "episode_points": ep["count"], "episode_last_step": ep["last_step"]}
            alert = dataclasses.replace(alert, evidence=evidence)
        out.append(alert)
    return sorted(out, key=lambda a: (a.run, a.step, a.kind, a.tag))
