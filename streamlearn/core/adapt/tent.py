"""TENT (Wang et al., 2021): minimize prediction entropy over normalization layers only.

The batch-norm statistics follow the unlabeled batches (as in norm adaptation) and the
affine scale and shift of every normalization layer take a gradient step on the mean
entropy of the confident rows. All other weights stay as labeled learning left them, which
is what keeps TENT cheap and fairly safe. It is known to collapse on class-sorted streams
when it normalizes each single-class batch with that batch's own statistics; here answers
use the running statistics, steps use the class-balanced memory, and the guards watch for
what still goes wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from streamlearn.core.adapt.base import normalized_entropy, statistics_mode, update_norm_statistics
from streamlearn.core.models import norm_affine_parameters
from streamlearn.core.protocols import StateDict

if TYPE_CHECKING:
    from streamlearn.core.protocols import AdaptMethod


class Tent:
    """Entropy minimization over the normalization layers' scale and shift, nothing else.

    Every other weight is left as labeled learning made it.
    """

    def __init__(self, learning_rate: float, momentum: float) -> None:
        self.learning_rate = learning_rate
        self.momentum = momentum
        self._params: list[nn.Parameter] = []
        self._optimizer: torch.optim.Optimizer | None = None

    def begin(self, module: nn.Module, anchor: Mapping[str, Tensor]) -> None:
        """Adapt ``module``'s normalization parameters; the optimizer state carries over a
        new anchor of the same network (a new method object starts it afresh)."""
        params = norm_affine_parameters(module)
        if self._optimizer is None or [id(p) for p in params] != [id(p) for p in self._params]:
            self._optimizer = torch.optim.Adam(params, lr=self.learning_rate) if params else None
        self._params = params

    def step(self, module: nn.Module, x: Tensor, keep: Tensor, n_classes: int) -> int:
        if self._optimizer is None or not bool(keep.any()) or n_classes < 2:
            update_norm_statistics(module, x, self.momentum)
            return 0
        with statistics_mode(module, self.momentum):
            out = module(x)
        loss = normalized_entropy(out[keep], n_classes).mean()
        grads = torch.autograd.grad(loss, self._params)
        for param, grad in zip(self._params, grads, strict=True):
            param.grad = grad
        self._optimizer.step()
        self._optimizer.zero_grad(set_to_none=True)
        return int(keep.sum())

    def state_dict(self) -> StateDict:
        return {"optimizer": self._optimizer.state_dict() if self._optimizer else None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self._optimizer is not None and state.get("optimizer") is not None:
            self._optimizer.load_state_dict(state["optimizer"])


if TYPE_CHECKING:  # mypy holds Tent to AdaptMethod (see streamlearn.core.protocols)

    def _conforms(method: Tent) -> AdaptMethod:
        return method
