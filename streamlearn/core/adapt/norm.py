"""Normalization-statistics adaptation (Schneider et al., 2020; "BN adapt").

Batch norm's running mean and variance follow the unlabeled inputs, with ``momentum`` per
step; no weight changes. The cheapest method, and on small networks most of what any
method gains: a shift in the inputs is largely a shift in the statistics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from streamlearn.core.adapt.base import update_norm_statistics
from streamlearn.core.protocols import StateDict

if TYPE_CHECKING:
    from streamlearn.core.protocols import AdaptMethod


class NormStats:
    """Normalization-statistics adaptation: batch norm's running mean and variance follow
    the unlabeled inputs (with ``momentum`` per step); no weight changes."""

    def __init__(self, momentum: float) -> None:
        self.momentum = momentum

    def begin(self, module: nn.Module, anchor: Mapping[str, Tensor]) -> None:
        """Nothing to set up: the statistics live in the module."""

    def step(self, module: nn.Module, x: Tensor, keep: Tensor, n_classes: int) -> int:
        update_norm_statistics(module, x, self.momentum)
        return 0

    def state_dict(self) -> StateDict:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Stateless beyond the module's own buffers."""


if TYPE_CHECKING:  # mypy holds NormStats to AdaptMethod (see streamlearn.core.protocols)

    def _conforms(method: NormStats) -> AdaptMethod:
        return method
