"""A multi-layer perceptron: the default expert network for tabular streams."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def build_mlp(n_features: int, n_outputs: int, hidden: Sequence[int],
              activation: str = "relu") -> nn.Sequential:
    """Linear layers of the given widths with an activation between; no hidden = linear."""
    layers: list[nn.Module] = []
    width = n_features
    for size in hidden:
        layers += [nn.Linear(width, size), _ACTIVATIONS[activation]()]
        width = size
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)
