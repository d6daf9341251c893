"""Bounded samples of the past: uniform reservoirs, and the per-expert replay buffer.

A :class:`Reservoir` keeps a uniform random sample of every row it was offered (Vitter's
Algorithm R) in fixed memory, so an expert that learned one regime for a million samples
replays all of that regime, not just its last minutes. The selector's (input, expert) pairs
use the same reservoirs, one per expert, held together in a :class:`PairMemory`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
        n, seen = x.shape[0], self.seen
        # One uniform draw per row offered, used or not: what is kept does not depend on
        # how the rows were batched, nor on whether the reservoir was still filling.
        draws = torch.rand(n, generator=self.rng)
        if seen + n <= self.capacity:  # still filling: the rows take the next slots in turn
            self._put(slice(seen, seen + n), x, y)
        else:
            self._replace(draws, x, y)
        self.seen += n
        self.size = min(self.capacity, self.seen)

    def _replace(self, draws: Tensor, x: Tensor, y: Tensor) -> None:
        """Algorithm R: the row at stream position p takes a uniform slot of p + 1, kept if
        it is a real one; in order, a later row wins its slot. One indexed write."""
        seen = self.seen
        picks = (draws * torch.arange(seen + 1, seen + x.shape[0] + 1)).long().tolist()
        winners: dict[int, int] = {}
        for row, pick in enumerate(picks):
            slot = seen + row if seen + row < self.capacity else pick
            if slot < self.capacity:
                winners[slot] = row
        if winners:
            rows = torch.tensor(list(winners.values()))
            self._put(torch.tensor(list(winners)), x[rows.to(x.device)], y[rows.to(y.device)])

    def _put(self, into: slice | Tensor, x: Tensor, y: Tensor) -> None:
        """Store rows ``x`` and labels ``y`` at slots ``into``."""
        assert self.x is not None and self.y is not None
        x_at = into.to(self.x.device) if isinstance(into, Tensor) else into
        y_at = into.to(self.y.device) if isinstance(into, Tensor) else into
        self.x[x_at] = x.to(self.x.device, self.x.dtype)
        self.y[y_at] = y.to(self.y.device, self.y.dtype)

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


class PairMemory:
    """The selector's (input, expert) pairs: a :class:`Reservoir` per expert slot, whose rows
    are all blocks of one tensor ``[slots, capacity, ...]``.

    A training step draws an equal share from every expert: with one tensor that is one
    indexing whatever the pool's size, not a few calls per expert. Labels are implied by
    the block (a pair's label is its slot). The tensor grows (rarely: when a slot beyond it
    appears) and the rows held move with it.
    """

    def __init__(self, capacity: int, seed: int, max_slots: int) -> None:
        self.capacity = capacity
        self.seed = seed
        self.max_slots = max_slots
        self.reservoirs: dict[int, Reservoir] = {}  # slot -> its pairs (a view of the stack)
        self._stack: Tensor | None = None

    def add(self, slot: int, x: Tensor) -> None:
        """Offer rows ``x`` (CPU tensors) learned by the expert in ``slot``."""
        reservoir = self.reservoirs.get(slot)
        if reservoir is None:
            reservoir = self.reservoirs[slot] = Reservoir(self.capacity, self.seed + slot + 1)
        if reservoir.x is None:  # new (or restored empty): its block of the stack first
            self.adopt(x)
        reservoir.add(x, torch.full((x.shape[0],), slot, dtype=torch.long))

    def draw(
        self, slots: Sequence[int], share: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """``share`` rows drawn uniformly, with replacement, from the pairs of each of
        ``slots`` (each must hold some), and their labels: the slots."""
        assert self._stack is not None
        sizes = torch.tensor([self.reservoirs[s].size for s in slots], dtype=torch.float64)
        where = torch.tensor(slots)
        # float64 draws times a size never round up to the size itself.
        draws = torch.rand(len(slots), share, generator=generator, dtype=torch.float64)
        rows = (draws * sizes[:, None]).long() + where[:, None] * self._stack.shape[1]
        return self._stack.flatten(0, 1)[rows.flatten()], where.repeat_interleave(share)

    def forget(self, slot: int) -> None:
        self.reservoirs.pop(slot, None)

    def move(self, source: int, target: int) -> None:
        """Offer ``source``'s pairs to ``target`` as its own, then drop ``source``."""
        moved = self.reservoirs.pop(source, None)
        if moved is not None and (held := moved.rows()) is not None:
            self.add(target, held[0])

    def adopt(self, like: Tensor | None = None) -> None:
        """Give every reservoir its block of the stack (after a new slot or a load), growing
        the stack when a slot or a capacity does not fit. ``like``: a row batch, for the
        shape of a stack not allocated yet."""
        if like is None:
            like = next((r.x for r in self.reservoirs.values() if r.x is not None), None)
        if like is None or not self.reservoirs:
            return
        stack = self._fitting(like)
        for slot, reservoir in self.reservoirs.items():
            block = stack[slot, : reservoir.capacity]
            if reservoir.x is not None and reservoir.size:
                block[: reservoir.size] = reservoir.x[: reservoir.size]
            reservoir.x = block
            if reservoir.y is None:
                reservoir.y = torch.zeros(reservoir.capacity, dtype=torch.long)
        self._stack = stack

    def _fitting(self, like: Tensor) -> Tensor:
        """The stack, or a bigger one where the slots or capacities held do not fit (slots
        doubled, up to ``max_slots``: a growing pool reallocates a few times at most)."""
        slots = max(self.reservoirs) + 1
        capacity = max(r.capacity for r in self.reservoirs.values())
        stack = self._stack
        if (
            stack is not None
            and slots <= stack.shape[0]
            and capacity <= stack.shape[1]
            and stack.shape[2:] == like.shape[1:]
        ):
            return stack
        held = stack.shape[0] if stack is not None else 0
        rows = max(slots, min(2 * held, self.max_slots))
        return torch.zeros((rows, capacity, *like.shape[1:]), dtype=like.dtype)

    @property
    def nbytes(self) -> int:
        labels = sum(
            r.y.numel() * r.y.element_size() for r in self.reservoirs.values() if r.y is not None
        )
        stack = self._stack.numel() * self._stack.element_size() if self._stack is not None else 0
        return stack + labels

    def state_dict(self) -> StateDict:
        return {str(slot): r.state_dict() for slot, r in self.reservoirs.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.reservoirs = {}
        for slot, reservoir_state in state.items():
            reservoir = Reservoir(int(reservoir_state["capacity"]), 0)
            reservoir.load_state_dict(reservoir_state, torch.device("cpu"))
            self.reservoirs[int(slot)] = reservoir
        self._stack = None
        self.adopt()
