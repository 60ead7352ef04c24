"""Third-party rules plug in through the `tbmon.rules` entry-point group (the docs' example, run for real)."""

from __future__ import annotations

import numpy as np
import pytest

from tbmon.analyzers import AnalyzerConfig, Engine, registry
from tbmon.analyzers.base import BaseRule
from tests.analyzers.streams import scalar_run


class LrTooHigh(BaseRule):  # the example of docs/analyzers.md, verbatim in substance
    name, scope, defaults = "lr_too_high", "run", {"max_lr": 1.0, "rearm": 100}

    def feed(self, view):
        out = []
        for item in view.signal("learning_rate"):
            s = item.series
            for i in self.events(self.name, s.tag, (s.value > self.p["max_lr"]).astype(int), s.step, self.p["rearm"]):
                out.append(self.alert(kind=self.name, level=1, step=s.step[i], wall_time=s.wall_time[i],
                                      tag=s.tag, message=f"{s.tag} = {s.value[i]:.3g} > {self.p['max_lr']}", evidence={}))
        return out


class FakeEntryPoint:
    def __init__(self, name: str, obj: object) -> None:
        self.name, self.value, self._obj = name, f"tests:{name}", obj

    def load(self) -> object:
        return self._obj


@pytest.fixture
def plugged(monkeypatch: pytest.MonkeyPatch):
    def install(obj: object) -> None:
        monkeypatch.setattr(registry, "entry_points", lambda group: [FakeEntryPoint("x", obj)])
        registry.available_rules.cache_clear()

    yield install
    registry.available_rules.cache_clear()


def test_plugin_runs_and_is_configurable(plugged) -> None:
    plugged(LrTooHigh)
    lr = np.concatenate([np.full(50, 0.1), np.full(50, 3.0)])
    batch = scalar_run({"lr": lr}, 100).batches()[0]
    assert [(a.kind, a.step) for a in Engine().feed(batch)] == [("lr_too_high", 50)]
    cfg = AnalyzerConfig.from_mapping({"lr_too_high": {"max_lr": 5.0}})
    assert Engine(cfg).feed(batch) == []


def test_broken_plugin_is_a_clear_error(plugged) -> None:
    plugged(object)
    with pytest.raises(ValueError, match="lacks name"):
        registry.available_rules()


def test_builtin_registry_order() -> None:
    assert list(registry.available_rules())[:4] == [
        "divergence", "overfitting", "vanishing_gradients", "exploding_gradients"]
