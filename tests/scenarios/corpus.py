"""Train every scenario once into a directory (one sub-directory per scenario) and label it from the data."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from .catalog import SCENARIOS, Scenario
from .labels import onsets, signals
from .training import parameter_order, train

_SOURCES = ("catalog.py", "data.py", "models.py", "styles.py", "training.py")


@dataclass(frozen=True)
class Labelled:
    scenario: Scenario
    path: Path
    onsets: dict[str, int]  # every kind whose criterion holds on the data → onset step
    run_length: int  # steps from the first to the last logged point


def corpus_key() -> str:
    """Hash of the code that decides the event files: a changed scenario invalidates the cache."""
    import torch

    digest = hashlib.sha256(torch.__version__.encode())
    for name in _SOURCES:
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()[:12]


def label(scenario: Scenario, path: Path) -> Labelled:
    sig = signals(path, scenario.style, parameter_order(scenario.recipe))
    return Labelled(scenario, path, onsets(sig), sig.run_length)


def build(root: Path, scenarios: tuple[Scenario, ...] = SCENARIOS) -> list[Labelled]:
    """Train into `root/<name>/` unless a complete corpus with the same key is already there."""
    marker = root / "COMPLETE"
    key = corpus_key()
    if not (marker.exists() and marker.read_text() == key):
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        # Both writers complain about every NaN they are given; the corpus is data, not output.
        nan_logger = logging.getLogger("tensorboardX.x2num")
        level = nan_logger.level
        nan_logger.setLevel(logging.ERROR)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                for scenario in scenarios:
                    train(scenario.recipe, scenario.style, scenario.writer, root / scenario.name)
        finally:
            nan_logger.setLevel(level)
        marker.write_text(key)
    return [label(s, root / s.name) for s in scenarios]
