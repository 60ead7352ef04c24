"""`AnalyzerConfig.from_mapping`: the TOML table users write, and the errors they get for typos."""

from __future__ import annotations

import numpy as np
import pytest

from tbmon.analyzers import AnalyzerConfig, Engine
from tests.analyzers.streams import healthy_loss, scalar_run


def test_defaults_are_the_contract_table() -> None:
    cfg = AnalyzerConfig.from_mapping({})
    assert "train/loss" in cfg.patterns["train_loss"] and "eval_loss" in cfg.patterns["val_loss"]
    assert "divergence" in cfg.rule_names()


def test_replace_and_extra_tags_change_what_is_watched() -> None:
    loss = healthy_loss(300)
    loss[200:] = np.nan
    stream = scalar_run({"objective": loss}, 300)
    assert Engine().feed(stream.batches()[0]) == []
    cfg = AnalyzerConfig.from_mapping({"extra_tags": {"train_loss": ["objective"]}})
    assert [a.step for a in Engine(cfg).feed(stream.batches()[0])] == [200]
    only = AnalyzerConfig.from_mapping({"tags": {"train_loss": "objective"}})
    assert only.patterns["train_loss"] == ("objective",)


def test_rule_parameters_and_disable() -> None:
    cfg = AnalyzerConfig.from_mapping({"divergence": {"spike_sigma": 8}, "disable": ["divergence"]})
    assert cfg.rule_params("divergence")["spike_sigma"] == 8.0
    assert "divergence" not in cfg.rule_names()
    assert AnalyzerConfig.from_mapping({"enable": ["divergence"]}).rule_names() == ["divergence"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"thresholds": 1}, "unknown key 'thresholds'"),
        ({"divergence": {"spike_sigmaa": 3}}, "unknown parameter 'spike_sigmaa' for rule 'divergence'"),
        ({"divergence": {"spike_window": 1.5}}, "divergence.spike_window must be int"),
        ({"divergence": 3}, "must be a table"),
        ({"disable": ["divergenc"]}, "unknown rule 'divergenc'"),
        ({"tags": {"loss": ["x"]}}, "unknown signal 'loss'"),
        ({"extra_tags": {"train_loss": [3]}}, "must be a list of non-empty tag patterns"),
    ],
)
def test_bad_config_is_a_clear_value_error(data: dict, expected: str) -> None:
    with pytest.raises(ValueError, match=expected.replace("(", r"\(").replace(".", r"\.")):
        AnalyzerConfig.from_mapping(data)
