"""Test-then-train scores: cumulative, and over a rolling window of the last samples."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor


class RollingMean:
    """A fixed-size window of floats with a running sum, written a batch at a time."""

    def __init__(self, size: int) -> None:
        self.values = torch.zeros(size, dtype=torch.float64)
        self.pos = 0
        self.filled = 0

    def extend(self, batch: Tensor) -> None:
        batch = batch.detach().double().cpu().flatten()[-self.values.numel() :]
        size = self.values.numel()
        idx = (torch.arange(batch.numel()) + self.pos) % size
        self.values[idx] = batch
        self.pos = (self.pos + batch.numel()) % size
        self.filled = min(size, self.filled + batch.numel())

    def mean(self) -> float:
        return float(self.values.sum() / self.filled) if self.filled else float("nan")

    def state_dict(self) -> dict[str, Any]:
        return {"values": self.values.clone(), "pos": self.pos, "filled": self.filled}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.values = state["values"].clone()
        self.pos, self.filled = int(state["pos"]), int(state["filled"])


class PrequentialStats:
    """Accuracy (classification) or absolute error (regression), and loss."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.count = 0
        self.sums = {"correct": 0.0, "loss": 0.0, "abs_error": 0.0}
        self._rings = {name: RollingMean(window) for name in self.sums}

    def update(
        self, loss: Tensor, correct: Tensor | None = None, abs_error: Tensor | None = None
    ) -> None:
        self.count += loss.numel()
        for name, values in (("loss", loss), ("correct", correct), ("abs_error", abs_error)):
            if values is not None:
                self.sums[name] += float(values.double().sum())
                self._rings[name].extend(values)

    def cumulative(self, name: str) -> float:
        return self.sums[name] / self.count if self.count else float("nan")

    def rolling(self, name: str) -> float:
        return self._rings[name].mean()

    def summary(self) -> dict[str, float]:
        """Scores that have data (accuracy for classifiers, absolute error for regressors)."""
        out: dict[str, float] = {}
        for name in self.sums:
            if not self._rings[name].filled:
                continue
            out[f"{name}_cumulative"] = self.cumulative(name)
            out[f"{name}_rolling"] = self.rolling(name)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "sums": dict(self.sums),
            "rings": {name: r.state_dict() for name, r in self._rings.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.count = int(state["count"])
        self.sums = {k: float(v) for k, v in state["sums"].items()}
        for name, ring_state in state["rings"].items():
            ring = RollingMean(ring_state["values"].numel())
            ring.load_state_dict(ring_state)
            self._rings[name] = ring
