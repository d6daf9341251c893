"""A class-balanced memory of recent unlabeled rows: what each adaptation step looks at.

Adapting on the incoming batch alone fails when the stream arrives sorted by class (a
long run of one class, as when a sensor sees one kind of object for a while): batch-norm
statistics, and every pseudo-label, then describe one class and the model drifts towards
it. Instead each step uses this memory (after RoTTA's category-balanced bank, Yuan et al.,
2023): a new row replaces the oldest row of the class the memory holds most of, unless its
own (predicted) class is among those, in which case it replaces the oldest row of its own
class. Balanced streams refresh the memory with the newest rows; sorted streams leave
older rows of other classes in it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from streamlearn.protocols import StateDict


class BalancedMemory:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.x: Tensor | None = None
        self.label = torch.zeros(0, dtype=torch.long)  # predicted class of each held row
        self.age = torch.zeros(0, dtype=torch.long)  # arrival number: smaller is older
        self._arrivals = 0

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def add(self, x: Tensor, predicted: Tensor) -> None:
        for row, label in zip(x.detach(), predicted.cpu().tolist(), strict=True):
            self._add_one(row, int(label))

    def rows(self) -> Tensor:
        assert self.x is not None, "empty memory"
        return self.x

    def _add_one(self, row: Tensor, label: int) -> None:
        self._arrivals += 1
        arrival = torch.tensor([self._arrivals])
        if len(self) < self.capacity:
            self.x = row[None] if self.x is None else torch.cat([self.x, row[None]])
            self.label = torch.cat([self.label, torch.tensor([label])])
            self.age = torch.cat([self.age, arrival])
            return
        counts = torch.bincount(self.label)
        majority = int(counts.max())
        crowded = label < counts.shape[0] and int(counts[label]) == majority
        victim_class = label if crowded else int(counts.argmax())
        candidates = torch.nonzero(self.label == victim_class).squeeze(1)
        slot = int(candidates[self.age[candidates].argmin()])
        assert self.x is not None
        self.x[slot] = row
        self.label[slot] = label
        self.age[slot] = arrival

    def state_dict(self) -> StateDict:
        return {"x": self.x.cpu().clone() if self.x is not None else None,
                "label": self.label.clone(), "age": self.age.clone(),
                "arrivals": self._arrivals}

    def load_state_dict(self, state: Mapping[str, Any], device: torch.device) -> None:
        self.x = state["x"].to(device) if state["x"] is not None else None
        self.label, self.age = state["label"].clone(), state["age"].clone()
        self._arrivals = int(state["arrivals"])
