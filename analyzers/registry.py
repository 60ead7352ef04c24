"""The rules tbmon runs: one tuple of built-ins, plus third-party rules from entry points.

A third-party package registers a rule class under the entry-point group ``tbmon.rules``
(see docs/analyzers.md); it then runs by default and is configured under its ``name``
like a built-in.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from importlib.metadata import entry_points
from types import MappingProxyType

from tbmon.analyzers.base import Rule
from tbmon.analyzers.dead_units import DeadUnits
from tbmon.analyzers.divergence import Divergence
from tbmon.analyzers.exploding_gradients import ExplodingGradients
from tbmon.analyzers.loss_plateau import LossPlateau
from tbmon.analyzers.not_learning import NotLearning
from tbmon.analyzers.overfitting import Overfitting
from tbmon.analyzers.vanishing_gradients import VanishingGradients

ENTRY_POINT_GROUP = "tbmon.rules"

BUILTIN_RULES: tuple[type[Rule], ...] = (
    Divergence, Overfitting, VanishingGradients, ExplodingGradients, DeadUnits, LossPlateau, NotLearning,
)


@lru_cache(maxsize=1)
def available_rules() -> Mapping[str, type[Rule]]:
    """Built-ins first, then installed plug-ins; a plug-in cannot shadow a built-in name."""
    rules: dict[str, type[Rule]] = {cls.name: cls for cls in BUILTIN_RULES}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        cls = ep.load()
        missing = [a for a in ("name", "scope", "defaults", "feed", "reset", "state_dict", "load_state_dict")
                   if not hasattr(cls, a)]
        if missing:
            raise ValueError(f"rule plug-in {ep.value!r} lacks {', '.join(missing)} (see docs/analyzers.md)")
        if cls.name in rules:
            raise ValueError(f"rule plug-in {ep.value!r} reuses the rule name {cls.name!r}")
        rules[cls.name] = cls
    return MappingProxyType(rules)
