"""Online input preparation: running feature standardization and a growing label index."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from streamlearn.types import Label

# Below this many samples a feature's spread is too noisy to divide by.
_MIN_COUNT_FOR_SCALE = 2
_EPS = 1e-8
# Standardized inputs are clipped to this many standard deviations. A feature that was
# (almost) constant so far, such as a border pixel, would otherwise turn its first non-zero
# value into a number in the millions and one sample's gradient into the whole step.
MAX_Z = 10.0


class RunningStandardizer:
    """Per-feature mean and variance, updated a batch at a time (Chan et al.'s merge).

    Statistics are float64 so a long stream does not drift numerically; ``transform`` uses
    the statistics *before* the current batch, which keeps test-then-train honest.
    """

    def __init__(self, n_features: int) -> None:
        self.count = 0
        self.mean = torch.zeros(n_features, dtype=torch.float64)
        self.m2 = torch.zeros(n_features, dtype=torch.float64)

    def transform(self, x: Tensor) -> Tensor:
        if self.count < _MIN_COUNT_FOR_SCALE:
            return x
        std = (self.m2 / self.count).sqrt().clamp_min(_EPS)
        z = (x.double() - self.mean.to(x.device)) / std.to(x.device)
        return z.clamp(-MAX_Z, MAX_Z).to(x.dtype)

    def inverse(self, z: Tensor) -> Tensor:
        if self.count < _MIN_COUNT_FOR_SCALE:
            return z
        std = (self.m2 / self.count).sqrt().clamp_min(_EPS)
        return (z.double() * std.to(z.device) + self.mean.to(z.device)).to(z.dtype)

    def update(self, x: Tensor) -> None:
        n = x.shape[0]
        if n == 0:
            return
        xd = x.detach().double().cpu()
        batch_mean = xd.mean(dim=0)
        batch_m2 = ((xd - batch_mean) ** 2).sum(dim=0)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * (n / total)
        self.m2 += batch_m2 + delta**2 * (self.count * n / total)
        self.count = total

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean.clone(), "m2": self.m2.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.count = int(state["count"])
        self.mean = state["mean"].clone().double()
        self.m2 = state["m2"].clone().double()


class LabelIndex:
    """Maps labels (ints or strings) to output indices in order of first appearance."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.labels: list[Label] = []
        self._index: dict[Label, int] = {}

    def __len__(self) -> int:
        return len(self.labels)

    def encode(self, label: Label) -> int | None:
        """The label's index, adding it if new; None once ``capacity`` labels exist."""
        index = self._index.get(label)
        if index is None:
            if len(self.labels) >= self.capacity:
                return None
            index = len(self.labels)
            self.labels.append(label)
            self._index[label] = index
        return index

    def decode(self, index: int) -> Label:
        return self.labels[index]

    def state_dict(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "labels": list(self.labels)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.capacity = int(state["capacity"])
        self.labels = list(state["labels"])
        self._index = {label: i for i, label in enumerate(self.labels)}
