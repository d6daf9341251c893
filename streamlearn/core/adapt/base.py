"""What every test-time adaptation method shares: the entropy, the statistics pass.

A method (:class:`streamlearn.core.protocols.AdaptMethod`, re-exported here) adapts one expert's
network on unlabeled rows. The adapter owns one method object per expert and calls
``begin`` whenever the expert's anchor is taken: after labeled learning on the same object
(its optimizer state carries over), after a reset on a new one; then ``step`` once per
gathered batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from streamlearn.core.models import batch_norms
from streamlearn.core.protocols import AdaptMethod as AdaptMethod  # where it was defined before


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


def norm_statistics(state: Mapping[str, Tensor], module: nn.Module) -> dict[str, Tensor]:
    """The batch-norm running statistics (and batch counts) of ``module`` found in
    ``state``, a state dict of the same network."""
    layers = batch_norms(module)
    names = {
        f"{prefix}.{buffer}" if prefix else buffer
        for prefix, layer in module.named_modules()
        if layer in layers
        for buffer in ("running_mean", "running_var", "num_batches_tracked")
    }
    return {name: value for name, value in state.items() if name in names}


def update_norm_statistics(module: nn.Module, x: Tensor, momentum: float) -> Tensor:
    """Forward ``x`` re-estimating batch norm's running statistics; the outputs."""
    with statistics_mode(module, momentum), torch.no_grad():
        out: Tensor = module(x)
    return out
