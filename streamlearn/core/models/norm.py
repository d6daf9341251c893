"""Normalization layers: what test-time adaptation works through.

Batch norm keeps running statistics (re-estimated by norm adaptation) and, like layer and
group norm, an affine scale and shift (what TENT trains). One row carries no batch
statistics, so a batch-norm network learns from a single row with its statistics frozen.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
NORMS = (*BATCH_NORMS, nn.LayerNorm, nn.GroupNorm)


def batch_norms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, BATCH_NORMS)]


def norm_affine_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The scale and shift of every normalization layer (TENT's only trainable part)."""
    return [
        p
        for m in module.modules()
        if isinstance(m, NORMS)
        for p in (m.weight, m.bias)
        if isinstance(p, nn.Parameter)
    ]


@contextmanager
def training(module: nn.Module, rows: int) -> Iterator[None]:
    """Train mode for a step on ``rows`` rows; batch norm stays in eval mode for one row."""
    module.train()
    frozen = batch_norms(module) if rows < 2 else []
    for layer in frozen:
        layer.eval()
    try:
        yield
    finally:
        for layer in frozen:
            layer.train()


@contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    """Eval mode without autograd for a prediction; the module's mode is put back after."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


def predict_with(module: nn.Module, x: Tensor, task: str) -> Tensor:
    """An expert's prediction by its network: outputs in eval mode, [n] for regression."""
    with evaluating(module):
        out: Tensor = module(x)
    return out if task == "classification" else out.squeeze(-1)
