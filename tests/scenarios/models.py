"""Tiny models; their parameter names are the realistic `nn.Sequential` ones (`net.0.weight`, ...)."""

from __future__ import annotations

import torch
from torch import nn

_ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU, "leaky_relu": nn.LeakyReLU}


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
                 dropout: float = 0.0, batchnorm: bool = False, init_gain: float | None = None,
                 layernorm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = inputs
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batchnorm:
                layers.append(nn.BatchNorm1d(h))
            if layernorm:
                layers.append(nn.LayerNorm(h))
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
    """Plain (residual-free) conv stack for 8x8 digits: `convs` 3x3 conv layers, 2x2 pool after the first."""

    def __init__(self, convs: int, act: str, outputs: int = 10, init_gain: float | None = None,
                 channels: int = 8) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, channels, 3, padding=1), _ACTIVATIONS[act](), nn.MaxPool2d(2)]
        for _ in range(convs - 1):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), _ACTIVATIONS[act]()]
        layers += [nn.Flatten(), nn.Linear(channels * 4 * 4, outputs)]
        self.net = nn.Sequential(*layers)
        _rescale_init(self, init_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class RecurrentClassifier(nn.Module):
    """GRU, LSTM, or an Elman RNN whose recurrent weights are scaled by `recurrent_gain` (> 1: explodes in time)."""

    def __init__(self, features: int, hidden: int, outputs: int, cell: str = "gru",
                 recurrent_gain: float | None = None) -> None:
        super().__init__()
        if cell == "gru":
            self.rnn: nn.Module = nn.GRU(features, hidden, batch_first=True)
        elif cell == "lstm":
            self.rnn = nn.LSTM(features, hidden, batch_first=True)
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


class TinyGPT(nn.Module):
    """A character-level causal transformer (pre-norm blocks, learned positions): next-token logits per position."""

    def __init__(self, vocab: int, context: int, width: int, blocks: int, heads: int = 2) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Parameter(torch.zeros(context, width))
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(context), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        h = self.tok(x) + self.pos[:t]
        return self.head(self.norm(self.blocks(h, mask=self.mask[:t, :t], is_causal=True)))
