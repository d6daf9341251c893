"""A multi-layer perceptron: the default expert network for tabular streams."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
_NORMS: dict[str, type[nn.Module]] = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}


def seed_weights(seed: int) -> None:
    """Seed the generators a network's weights may be drawn from: the CPU's, and CUDA's
    where there is CUDA (a user's factory may build on the GPU). ``torch.manual_seed`` does
    the same and also queues a seed for every other accelerator torch knows (XPU, MTIA),
    each of which formats a stack trace on a machine without one: 3 ms a call, and a sync
    round rebuilds every expert (docs/scaling.md, "Time per round")."""
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


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
