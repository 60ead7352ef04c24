"""`AnalyzerConfig`: tag patterns per signal, which rules run, and per-rule parameter overrides.

TOML shape (``[tool.tbmon]`` in pyproject.toml, or a ``--config`` file)::

    [tool.tbmon]
    disable = ["loss_plateau"]            # or: enable = ["divergence", "overfitting"]
    [tool.tbmon.tags]                     # replace a signal's patterns
    train_loss = ["objective/train"]
    [tool.tbmon.extra_tags]               # add patterns to the defaults
    val_loss = ["metrics/val_nll"]
    [tool.tbmon.divergence]               # override a rule's parameters
    spike_sigma = 8.0

Anything unknown is a ``ValueError`` naming the key and what is allowed, so a typo is
reported instead of silently running with defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tbmon.analyzers.registry import available_rules
from tbmon.analyzers.signals import DEFAULT_PATTERNS, SIGNALS

TOP_LEVEL_KEYS = ("enable", "disable", "tags", "extra_tags")


@dataclass(frozen=True)
class AnalyzerConfig:
    patterns: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_PATTERNS))
    enabled: tuple[str, ...] | None = None  # None = every available rule
    disabled: frozenset[str] = frozenset()
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def rule_names(self) -> list[str]:
        """Names of the rules to run, in registry order."""
        names = list(available_rules()) if self.enabled is None else list(self.enabled)
        return [n for n in names if n not in self.disabled]

    def rule_params(self, name: str) -> dict[str, Any]:
        """The rule's defaults with this config's overrides applied."""
        merged = dict(available_rules()[name].defaults)
        merged.update(self.params.get(name, {}))
        return merged

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> AnalyzerConfig:
        rules = available_rules()
        unknown = [k for k in data if k not in TOP_LEVEL_KEYS and k not in rules]
        if unknown:
            raise ValueError(
                f"unknown key {unknown[0]!r}; expected one of {', '.join(TOP_LEVEL_KEYS)} "
                f"or a rule name ({', '.join(rules)})"
            )
        patterns = {s: tuple(p) for s, p in DEFAULT_PATTERNS.items()}
        for signal, values in _signal_table(data, "tags").items():
            patterns[signal] = values
        for signal, values in _signal_table(data, "extra_tags").items():
            patterns[signal] = patterns[signal] + tuple(v for v in values if v not in patterns[signal])
        enabled = _rule_list(data, "enable", rules)
        disabled = frozenset(_rule_list(data, "disable", rules) or ())
        params = {name: _rule_params(name, data[name], rules[name].defaults) for name in rules if name in data}
        return cls(
            patterns=patterns,
            enabled=None if enabled is None else tuple(enabled),
            disabled=disabled,
            params=params,
        )


def _signal_table(data: Mapping[str, Any], key: str) -> dict[str, tuple[str, ...]]:
    table = data.get(key, {})
    if not isinstance(table, Mapping):
        raise ValueError(f"{key!r} must be a table of signal = [patterns], got {type(table).__name__}")
    out = {}
    for signal, values in table.items():
        if signal not in SIGNALS:
            raise ValueError(f"unknown signal {signal!r} in {key!r}; expected one of {', '.join(SIGNALS)}")
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            raise ValueError(f"{key}.{signal} must be a list of non-empty tag patterns")
        out[signal] = tuple(values)
    return out


def _rule_list(data: Mapping[str, Any], key: str, rules: Mapping[str, Any]) -> list[str] | None:
    if key not in data:
        return None
    values = data[key]
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{key!r} must be a list of rule names")
    for name in values:
        if name not in rules:
            raise ValueError(f"unknown rule {name!r} in {key!r}; known rules: {', '.join(rules)}")
    return values


def _rule_params(name: str, table: Any, defaults: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(table, Mapping):
        raise ValueError(f"[{name}] must be a table of parameters, got {type(table).__name__}")
    out = {}
    for key, value in table.items():
        if key not in defaults:
            raise ValueError(f"unknown parameter {key!r} for rule {name!r}; known: {', '.join(defaults)}")
        default = defaults[key]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise ValueError(
                f"{name}.{key} must be {type(default).__name__} like the default {default!r}, got {value!r}"
            )
        out[key] = value
    return out
