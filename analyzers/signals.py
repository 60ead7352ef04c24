"""Which tags mean what: tag patterns → signals (contract: "Tags it understands without configuration").

Patterns are case-insensitive globs over the whole tag; ``*`` stands for the parameter
(layer) name, which the rules use to name layers in their messages. Keras writes the same
tag ``epoch_loss`` for training and validation and tells them apart only by the run
directory (``train``/``validation``), so those patterns apply only to runs with that role.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

TRAIN_LOSS = "train_loss"
VAL_LOSS = "val_loss"
LEARNING_RATE = "learning_rate"
GRAD_HISTOGRAM = "grad_histogram"
GRAD_NORM = "grad_norm"
# Extra per-parameter scalars written by tbmon's trainer shim.
WEIGHT_NORM = "weight_norm"
UPDATE_RATIO = "update_ratio"
GRAD_ZERO_FRAC = "grad_zero_frac"
GRAD_NONFINITE = "grad_nonfinite"

HISTOGRAM_SIGNALS = frozenset({GRAD_HISTOGRAM})

VALIDATION_WORDS = ("val", "valid", "validation", "eval", "evaluation", "test", "dev", "holdout")
"""How people name a held-out split: PyTorch's own docs log ``Loss/test``, HF ``eval/loss``."""
_SEPARATORS = ("/", "_", "-", ".", " ")


def epoch_level(tag: str) -> bool:
    """Whether a loss tag holds one mean per epoch (Keras ``epoch_loss``, Lightning ``*_epoch``): its points
    are already averaged over many batches and come one per epoch, so the rules count them in epochs and do
    not smooth them as per-step minibatch losses."""
    return "epoch" in tag.lower()


def _validation_loss_patterns() -> tuple[str, ...]:
    """``<word><sep>loss`` and ``loss<sep><word>`` for every validation word and separator, plus
    Lightning's ``<word>_loss_epoch``; case is ignored by the matcher."""
    out: list[str] = []
    for word in VALIDATION_WORDS:
        for sep in _SEPARATORS:
            out += [f"{word}{sep}loss", f"loss{sep}{word}"]
        out.append(f"{word}_loss_epoch")
    return tuple(out)


DEFAULT_PATTERNS: Mapping[str, tuple[str, ...]] = {
    TRAIN_LOSS: (
        "loss", "train/loss", "train_loss", "loss/train", "train/loss_step", "train_loss_step", "train_loss_epoch",
    ),
    VAL_LOSS: _validation_loss_patterns(),
    LEARNING_RATE: ("lr", "learning_rate", "train/learning_rate", "lr-*", "epoch_learning_rate"),
    GRAD_HISTOGRAM: ("grad/*", "grads/*", "gradients/*", "*.grad", "*/grad", "*_grad"),
    GRAD_NORM: ("grad_norm", "train/grad_norm", "grad_norm/*", "grad_2.0_norm/*", "grad_2.0_norm_total"),
    WEIGHT_NORM: ("weight_norm/*",),
    UPDATE_RATIO: ("update_ratio/*",),
    GRAD_ZERO_FRAC: ("grad_zero_frac/*",),
    GRAD_NONFINITE: ("grad_nonfinite/*", "grad_nonfinite"),
}

ROLE_PATTERNS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    # Keras `tf.keras.callbacks.TensorBoard`: same tag names, told apart by the run directory.
    "train": {TRAIN_LOSS: ("epoch_loss", "batch_loss")},
    "validation": {VAL_LOSS: ("epoch_loss", "evaluation_loss_vs_iterations")},
}

SIGNALS = tuple(DEFAULT_PATTERNS)


@dataclass(frozen=True, slots=True)
class Match:
    """A tag's meaning: its signal and, for per-layer tags, the layer (``None`` = whole model)."""

    signal: str
    param: str | None


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> re.Pattern[str]:
    parts = [re.escape(p) for p in pattern.lower().split("*")]
    return re.compile("(.+)".join(parts) + r"\Z", re.DOTALL)


class SignalMatcher:
    """Classifies tags into signals; remembers answers because a run has few distinct tags."""

    def __init__(self, patterns: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self.patterns = dict(DEFAULT_PATTERNS if patterns is None else patterns)
        self._cache: dict[tuple[str, bool, str | None], Match | None] = {}

    def classify(self, tag: str, *, histogram: bool, role: str | None = None) -> Match | None:
        key = (tag, histogram, role)
        if key not in self._cache:
            self._cache[key] = self._classify(tag, histogram, role)
        return self._cache[key]

    def _classify(self, tag: str, histogram: bool, role: str | None) -> Match | None:
        low = tag.lower()
        sources = [ROLE_PATTERNS.get(role or "", {}), self.patterns]
        for table in sources:
            for signal, patterns in table.items():
                if (signal in HISTOGRAM_SIGNALS) != histogram:
                    continue
                for pattern in patterns:
                    found = _compile(pattern).match(low)
                    if found:
                        # Report the layer name with the tag's own spelling.
                        param = tag[found.start(1) : found.end(1)] if found.groups() else None
                        return Match(signal, param)
        return None
