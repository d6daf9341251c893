"""What every test-time adaptation method offers, and the entropy they all measure.

A method adapts one expert's network on unlabeled rows. The adapter owns one method object
per expert and calls ``begin`` whenever the expert's anchor is taken: after labeled
learning on the same object (its optimizer state carries over), after a reset on a new one;
then ``step`` once per gathered batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from streamlearn.models import batch_norms
from streamlearn.protocols import StateDict


class AdaptMethod(Protocol):
    """A test-time adaptation method for one expert's network.

    It must not touch the module before ``begin`` has named it and its anchor.
    """

    def begin(self, module: nn.Module, anchor: Mapping[str, Tensor]) -> None:
        """Start over from ``module`` as it is now; ``anchor`` is its state to restore to."""

    def step(self, module: nn.Module, x: Tensor, keep: Tensor, n_classes: int) -> int:
        """Adapt on ``x``; only rows where ``keep`` is true may teach. Returns rows used."""

    def state_dict(self) -> StateDict: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def normalized_entropy(logits: Tensor, n_classes: int) -> Tensor:
    """Each row's prediction entropy over the classes seen, divided by its maximum (0..1)."""
    if n_classes < 2:
        return logits.new_zeros(logits.shape[0])
    log_p = torch.log_softmax(logits[:, :n_classes], dim=1)
    return -(log_p.exp() * log_p).sum(dim=1) / math.log(n_classes)


@contextmanager
def statistics_mode(module: nn.Module, momentum: float) -> Iterator[None]:
    """Batch norm normalizes with the batch's statistics and folds them into its running
    ones with ``momentum``; everything else stays in eval mode (dropout off)."""
    layers = batch_norms(module)
    was_training = module.training
    saved = [layer.momentum for layer in layers]
    module.eval()
    for layer in layers:
        layer.train()
        layer.momentum = momentum
    try:
        yield
    finally:
        for layer, value in zip(layers, saved, strict=True):
            layer.momentum = value
        module.train(was_training)


def update_norm_statistics(module: nn.Module, x: Tensor, momentum: float) -> Tensor:
    """Forward ``x`` re-estimating batch norm's running statistics; the outputs."""
    with statistics_mode(module, momentum), torch.no_grad():
        out: Tensor = module(x)
    return out
