"""A multi-layer perceptron: the default expert network for tabular streams."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
_NORMS: dict[str, type[nn.Module]] = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}


def build_mlp(
    n_features: int,
    n_outputs: int,
    hidden: Sequence[int],
    activation: str = "relu",
    norm: str = "none",
) -> nn.Sequential:
    """Linear layers of the given widths with an activation between; no hidden = linear.

    ``norm`` ("batch" or "layer") puts a normalization layer between each hidden linear
    layer and its activation.
    """
    layers: list[nn.Module] = []
    width = n_features
    for size in hidden:
        layers.append(nn.Linear(width, size))
        if norm != "none":
            layers.append(_NORMS[norm](size))
        layers.append(_ACTIVATIONS[activation]())
        width = size
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)
