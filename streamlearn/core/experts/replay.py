"""Bounded samples of the past: uniform reservoirs, and the per-expert replay buffer.

A :class:`Reservoir` keeps a uniform random sample of every row it was offered (Vitter's
Algorithm R) in fixed memory, so an expert that learned one regime for a million samples
replays all of that regime, not just its last minutes. The selector's (input, expert) pairs
use the same reservoirs, one per expert.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from streamlearn.core.experts.settings import ReplaySettings
from streamlearn.core.protocols import StateDict


class Reservoir:
    """A uniform sample of at most ``capacity`` (x, y) rows out of all rows offered."""

    def __init__(self, capacity: int, seed: int) -> None:
        self.capacity = capacity
        self.seen = 0  # rows offered so far
        self.size = 0  # rows held
        self.x: Tensor | None = None  # allocated at the first row, [capacity, ...]
        self.y: Tensor | None = None
        self.rng = torch.Generator().manual_seed(seed)

    def add(self, x: Tensor, y: Tensor) -> None:
        if self.x is None or self.y is None:
            self.x = x.new_zeros((self.capacity, *x.shape[1:]))
            self.y = y.new_zeros((self.capacity, *y.shape[1:]))
        positions = torch.arange(self.seen, self.seen + x.shape[0])
        draws = (torch.rand(x.shape[0], generator=self.rng) * (positions + 1)).long()
        slots = torch.where(positions < self.capacity, positions, draws).tolist()
        # In order, a later row wins its slot; one indexed write then stores the winners.
        winners = {slot: row for row, slot in enumerate(slots) if slot < self.capacity}
        if winners:
            into = torch.tensor(list(winners), device=self.x.device)
            rows = torch.tensor(list(winners.values()), device=x.device)
            self.x[into] = x[rows].to(self.x.dtype)
            self.y[into.to(self.y.device)] = y[rows.to(y.device)].to(self.y.dtype)
        self.seen += x.shape[0]
        self.size = min(self.capacity, self.seen)

    def sample(self, k: int) -> tuple[Tensor, Tensor]:
        assert self.x is not None and self.y is not None and self.size > 0
        index = torch.randint(self.size, (k,), generator=self.rng)
        return self.x[index.to(self.x.device)], self.y[index.to(self.y.device)]

    def rows(self) -> tuple[Tensor, Tensor] | None:
        if self.x is None or self.y is None or self.size == 0:
            return None
        return self.x[: self.size], self.y[: self.size]

    def shrink(self, capacity: int) -> None:
        """Keep ``capacity`` rows. Slots hold a uniform sample, so any fixed subset does too."""
        self.capacity = capacity
        self.size = min(self.size, capacity)
        if self.x is not None and self.y is not None:
            self.x, self.y = self.x[:capacity].clone(), self.y[:capacity].clone()

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.x, self.y) if t is not None)

    def state_dict(self) -> StateDict:
        held = self.rows()
        return {
            "capacity": self.capacity,
            "seen": self.seen,
            "x": held[0].cpu().clone() if held else None,
            "y": held[1].cpu().clone() if held else None,
            "rng": self.rng.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any], device: torch.device) -> None:
        self.capacity, self.seen = int(state["capacity"]), int(state["seen"])
        self.x = self.y = None
        self.size = 0
        if state["x"] is not None:
            x, y = state["x"].to(device), state["y"].to(device)
            self.x = x.new_zeros((self.capacity, *x.shape[1:]))
            self.y = y.new_zeros((self.capacity, *y.shape[1:]))
            self.size = x.shape[0]
            self.x[: self.size], self.y[: self.size] = x, y
        self.rng.set_state(state["rng"])


class ReplayBuffer:
    """One expert's memory: a reservoir, or one per class with an equal share of the room."""

    def __init__(self, settings: ReplaySettings, seed: int) -> None:
        self.capacity = settings.capacity
        self.balanced = settings.class_balanced
        self.seed = seed
        self.reservoirs: dict[int, Reservoir] = {}
        self.rng = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return sum(r.size for r in self.reservoirs.values())

    @property
    def nbytes(self) -> int:
        return sum(r.nbytes for r in self.reservoirs.values())

    def add(self, x: Tensor, y: Tensor) -> None:
        if not self.balanced:
            self._reservoir(0).add(x, y)
            return
        for label in torch.unique(y).tolist():
            self._reservoir(int(label))
        for label, reservoir in self.reservoirs.items():
            rows = y == label
            if rows.any():
                reservoir.add(x[rows], y[rows])

    def sample(self, k: int) -> tuple[Tensor, Tensor] | None:
        """``k`` rows drawn uniformly from everything held; None while empty."""
        held = [r for r in self.reservoirs.values() if r.size]
        if not held or k <= 0:
            return None
        sizes = torch.tensor([r.size for r in held])
        owners = torch.multinomial(sizes.double(), k, replacement=True, generator=self.rng)
        parts = [
            held[i].sample(int(n))
            for i, n in enumerate(torch.bincount(owners, minlength=len(held)).tolist())
            if n
        ]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def absorb(self, other: ReplayBuffer) -> None:
        """Offer every row ``other`` holds to this buffer (merging an expert into another)."""
        for reservoir in other.reservoirs.values():
            if (held := reservoir.rows()) is not None:
                self.add(*held)

    def _reservoir(self, key: int) -> Reservoir:
        if key not in self.reservoirs:
            self.reservoirs[key] = Reservoir(self.capacity, self.seed * 1_000 + key + 1)
            share = self.capacity // len(self.reservoirs)
            for reservoir in self.reservoirs.values():
                reservoir.shrink(max(1, share))
        return self.reservoirs[key]

    def state_dict(self) -> StateDict:
        return {
            "reservoirs": {str(k): r.state_dict() for k, r in self.reservoirs.items()},
            "rng": self.rng.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any], device: torch.device) -> None:
        self.reservoirs = {}
        for key, reservoir_state in state["reservoirs"].items():
            reservoir = Reservoir(int(reservoir_state["capacity"]), 0)
            reservoir.load_state_dict(reservoir_state, device)
            self.reservoirs[int(key)] = reservoir
        self.rng.set_state(state["rng"])
