"""A class-balanced memory of recent unlabeled rows: what each adaptation step looks at.

Adapting on the incoming batch alone fails when the stream arrives sorted by class (a
long run of one class, as when a sensor sees one kind of object for a while): batch-norm
statistics, and every pseudo-label, then describe one class and the model drifts towards
it. Instead each step uses this memory, after RoTTA's category-balanced bank (Yuan et al.,
2023), with one change: "balanced" means in the proportions of the labels the expert
learned, not equal shares. Equal shares would be a shift of their own on an imbalanced
stream (measured: a 96/4 stream answered 1% rare class instead of 4%).

Each class has a quota, its share of the capacity. A new row of a class at or over its
quota replaces the oldest row of its own class; otherwise it replaces the oldest row of the
class furthest over its quota. Streams in the labels' proportions refresh the memory with
the newest rows; sorted streams leave older rows of other classes in it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from streamlearn.core.protocols import StateDict


class BalancedMemory:
    """Recent unlabeled rows, kept per predicted class, that each adaptation step learns from.

    When full, the oldest row of the class most over its share makes room, so a class-sorted
    stream cannot crowd the other classes out.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.x: Tensor | None = None  # [capacity, ...], allocated at the first row
        # Bookkeeping in plain lists: a step adds a few dozen rows one by one, and small
        # tensor operations would cost more than the forward passes they serve.
        self.labels: list[int] = []  # predicted class of each held row
        self.ages: list[int] = []  # arrival number: smaller is older
        self._counts: dict[int, int] = {}  # rows held per class
        self._arrivals = 0

    def __len__(self) -> int:
        return len(self.labels)

    def add(self, x: Tensor, predicted: Tensor, shares: Sequence[float] | None = None) -> None:
        """Take in rows with their predicted classes; ``shares[c]``: class c's share of the
        memory (equal shares when None)."""
        if self.x is None:
            self.x = x.new_zeros((self.capacity, *x.shape[1:]))
        slots: dict[int, int] = {}  # memory slot -> row of x that ends up in it
        for row, label in enumerate(predicted.tolist()):
            slots[self._slot_for(int(label), shares)] = row
        if slots:
            index = torch.tensor(list(slots), device=self.x.device)
            self.x[index] = x[torch.tensor(list(slots.values()), device=x.device)].detach()

    def clear(self) -> None:
        self.labels, self.ages, self._counts = [], [], {}

    def rows(self) -> Tensor:
        assert self.x is not None, "empty memory"
        return self.x[: len(self)]

    def _slot_for(self, label: int, shares: Sequence[float] | None) -> int:
        """Where a new row of class ``label`` goes, with the bookkeeping updated."""
        self._arrivals += 1
        counts = self._counts
        if len(self.labels) < self.capacity:
            self.labels.append(label)
            self.ages.append(self._arrivals)
            counts[label] = counts.get(label, 0) + 1
            return len(self.labels) - 1

        present = sorted(c for c, n in counts.items() if n > 0)
        equal = 1 / len(set(present) | {label})

        def excess(c: int) -> float:
            share = shares[c] if shares is not None and c < len(shares) else equal
            return counts.get(c, 0) - share * self.capacity

        own = counts.get(label, 0) > 0 and excess(label) >= 0
        victim = label if own else max(present, key=excess)
        slot = min(
            (i for i, held in enumerate(self.labels) if held == victim), key=self.ages.__getitem__
        )
        counts[victim] -= 1
        counts[label] = counts.get(label, 0) + 1
        self.labels[slot], self.ages[slot] = label, self._arrivals
        return slot

    def state_dict(self) -> StateDict:
        return {
            "x": self.rows().cpu().clone() if self.x is not None else None,
            "labels": torch.tensor(self.labels, dtype=torch.long),
            "ages": torch.tensor(self.ages, dtype=torch.long),
            "arrivals": self._arrivals,
        }

    def load_state_dict(self, state: Mapping[str, Any], device: torch.device) -> None:
        self.clear()
        self.x = None
        self._arrivals = int(state["arrivals"])
        if state["x"] is None:
            return
        # The newest rows, as many as fit: adapt.memory may be smaller than when saved.
        ages = state["ages"].tolist()
        keep = sorted(sorted(range(len(ages)), key=ages.__getitem__)[-self.capacity :])
        held = state["x"][keep].to(device)
        self.x = held.new_zeros((self.capacity, *held.shape[1:]))
        self.x[: len(keep)] = held
        for i in keep:
            label = int(state["labels"][i])
            self.labels.append(label)
            self.ages.append(int(ages[i]))
            self._counts[label] = self._counts.get(label, 0) + 1
