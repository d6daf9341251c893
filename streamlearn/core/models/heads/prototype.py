"""Class prototypes: the nearest class mean in feature space, a head with no learning rate.

Each class keeps the sum and the count of its feature rows; a row's score for class c is
``-1/2 |phi - mu_c|^2`` up to a term shared by all classes, which is linear in phi:
``phi^T mu_c - 1/2 |mu_c|^2``. So the prototypes fit the same linear head as the other closed-form
heads, serve as it does, and a new class is usable after one sample. Classes this expert
never saw score ``UNSEEN``: below any seen class at a plausible distance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

DTYPE = torch.float64
UNSEEN = -1e4  # the score of a class without a prototype (its weights are zero)


class PrototypeHead:
    """Per-class feature means over ``width`` features (the bias column included, ignored)."""

    def __init__(self, width: int, n_outputs: int) -> None:
        self.sums = torch.zeros(n_outputs, width, dtype=DTYPE)
        self.counts = torch.zeros(n_outputs, dtype=DTYPE)

    def update(self, x: Tensor, y: Tensor) -> None:
        """Rows ``x`` [n, width] with one-hot targets ``y`` [n, n_outputs]."""
        self.sums += y.T @ x
        self.counts += y.sum(dim=0)

    def weights(self) -> Tensor:
        """[width, n_outputs]: mu_c on the features, -1/2 |mu_c|^2 on the bias column."""
        seen = self.counts > 0
        means = self.sums / self.counts.clamp(min=1).unsqueeze(1)
        means[:, -1] = 0.0  # the bias column is the constant 1: not a feature
        out = means.T.clone()
        out[-1] = torch.where(
            seen, -0.5 * means.pow(2).sum(dim=1), torch.full_like(self.counts, UNSEEN)
        )
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"sums": self.sums.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.sums = state["sums"].to("cpu", DTYPE).clone()
        self.counts = state["counts"].to("cpu", DTYPE).clone()
