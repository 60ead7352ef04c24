"""Tag → signal classification: the contract's default table, Keras roles, layer names."""

from __future__ import annotations

import pytest

from tbmon.analyzers.signals import SignalMatcher


@pytest.mark.parametrize(
    ("tag", "histogram", "role", "signal", "param"),
    [
        ("Train/Loss", False, None, "train_loss", None),
        ("train_loss_epoch", False, None, "train_loss", None),
        ("loss/valid", False, None, "val_loss", None),
        ("eval/loss", False, None, "val_loss", None),
        ("lr-Adam/pg1", False, None, "learning_rate", "adam/pg1"),
        ("grad/Layer0.weight", True, None, "grad_histogram", "Layer0.weight"),
        ("fc1.weight.grad", True, None, "grad_histogram", "fc1.weight"),
        ("conv/grad", True, None, "grad_histogram", "conv"),
        ("grad_norm", False, None, "grad_norm", None),
        ("grad_2.0_norm/fc.weight", False, None, "grad_norm", "fc.weight"),
        ("grad_2.0_norm_total", False, None, "grad_norm", None),
        ("update_ratio/fc.weight", False, None, "update_ratio", "fc.weight"),
        ("grad_zero_frac/fc.weight", False, None, "grad_zero_frac", "fc.weight"),
        ("grad_nonfinite/fc.weight", False, None, "grad_nonfinite", "fc.weight"),
        ("weight_norm/fc.weight", False, None, "weight_norm", "fc.weight"),
        ("epoch_loss", False, "train", "train_loss", None),
        ("epoch_loss", False, "validation", "val_loss", None),
        ("evaluation_loss_vs_iterations", False, "validation", "val_loss", None),
    ],
)
def test_default_patterns(tag: str, histogram: bool, role: str | None, signal: str, param: str | None) -> None:
    match = SignalMatcher().classify(tag, histogram=histogram, role=role)
    assert match is not None and match.signal == signal
    assert (match.param or "").lower() == (param or "").lower()


@pytest.mark.parametrize(
    ("tag", "histogram", "role"),
    [("epoch_loss", False, None), ("accuracy", False, None), ("grad/fc", False, None), ("loss", True, None),
     ("train/loss_sum", False, None)],
)
def test_non_matches(tag: str, histogram: bool, role: str | None) -> None:
    assert SignalMatcher().classify(tag, histogram=histogram, role=role) is None
