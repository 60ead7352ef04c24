"""Tiny models; their parameter names are the realistic `nn.Sequential` ones (`net.0.weight`, ...)."""

from __future__ import annotations

import torch
from torch import nn

_ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def _rescale_init(module: nn.Module, gain: float | None) -> None:
    """`gain` multiplies He-normal weights (gain 1 = He); None keeps PyTorch's default init."""
    if gain is None:
        return
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            with torch.no_grad():
                layer.weight.mul_(gain)
                layer.bias.zero_()


class MLP(nn.Module):
    def __init__(self, inputs: int, hidden: tuple[int, ...], outputs: int, act: str,
                 dropout: float = 0.0, batchnorm: bool = False, init_gain: float | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = inputs
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batchnorm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(_ACTIVATIONS[act]())
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, outputs))
        self.net = nn.Sequential(*layers)
        _rescale_init(self, init_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class CNN(nn.Module):
    """Conv stack for 8x8 digits: `convs` 3x3 conv layers (8 channels, 2x2 pool after the first)."""

    def __init__(self, convs: int, act: str, outputs: int = 10, init_gain: float | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, 8, 3, padding=1), _ACTIVATIONS[act](), nn.MaxPool2d(2)]
        for _ in range(convs - 1):
            layers += [nn.Conv2d(8, 8, 3, padding=1), _ACTIVATIONS[act]()]
        layers += [nn.Flatten(), nn.Linear(8 * 4 * 4, outputs)]
        self.net = nn.Sequential(*layers)
        _rescale_init(self, init_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class RecurrentClassifier(nn.Module):
    """GRU, or an Elman RNN whose recurrent weights are scaled by `recurrent_gain` (> 1: explodes in time)."""

    def __init__(self, features: int, hidden: int, outputs: int, cell: str = "gru",
                 recurrent_gain: float | None = None) -> None:
        super().__init__()
        if cell == "gru":
            self.rnn: nn.Module = nn.GRU(features, hidden, batch_first=True)
        else:
            self.rnn = nn.RNN(features, hidden, nonlinearity=cell, batch_first=True)
        if recurrent_gain is not None:
            with torch.no_grad():
                nn.init.orthogonal_(self.rnn.weight_hh_l0)
                self.rnn.weight_hh_l0.mul_(recurrent_gain)
        self.head = nn.Linear(hidden, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])
