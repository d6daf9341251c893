"""Online input preparation: running feature standardization and a bounded label index."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from streamlearn.core.types import Label

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
        std = self.scale()
        z = (x.double() - self.mean.to(x.device)) / std.to(x.device)
        return z.clamp(-MAX_Z, MAX_Z).to(x.dtype)

    def inverse(self, z: Tensor) -> Tensor:
        if self.count < _MIN_COUNT_FOR_SCALE:
            return z
        std = self.scale()
        return (z.double() * std.to(z.device) + self.mean.to(z.device)).to(z.dtype)

    def scale(self) -> Tensor:
        """Per-feature standard deviation (float64) ``transform`` divides by; ones before
        there are statistics to scale with."""
        if self.count < _MIN_COUNT_FOR_SCALE:
            return torch.ones_like(self.mean)
        return (self.m2 / self.count).sqrt().clamp_min(_EPS)

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


class LabelError(Exception):
    """A label this model cannot take: ``reason`` is a dead-letter reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Recycled:
    """A class slot handed from a rarely learned label to a new one."""

    index: int
    old: Label
    old_count: int  # samples of ``old`` taken in: what the slot's weights learned of it
    new: Label


class LabelIndex:
    """Maps labels to output indices in order of first appearance, one slot per class.

    A model's labels are all integers or all strings, as the first label decides: ``1`` and
    ``"1"`` as two classes is a producer's bug, not two concepts. Each slot counts the samples
    it took in. With every slot taken, a new label takes over the slot learned the fewest
    times (the least recently among equals) if that is under ``rare`` samples, so a burst of
    junk labels cannot lock real classes out; ``rare=0`` refuses new labels instead. A slot
    used in the current batch (:meth:`new_batch`) is never handed over within it.
    """

    def __init__(self, capacity: int, rare: int = 0) -> None:
        self.capacity = capacity
        self.rare = rare
        self.labels: list[Label] = []
        self.counts: list[int] = []  # UNKNOWN_COUNT: from a checkpoint without counts
        self.last: list[int] = []  # the tick each slot last took a sample at
        self.tick = 0
        self._batch_start = 0
        self._index: dict[Label, int] = {}
        self.recycled: list[Recycled] = []  # since the caller last took them

    def __len__(self) -> int:
        return len(self.labels)

    def new_batch(self) -> None:
        self._batch_start = self.tick

    def encode(self, label: Label) -> int:
        """The label's index, adding it if new; raises :class:`LabelError`."""
        index = self._index.get(label)
        if index is None or type(label) is not type(self.labels[index]):  # True == 1
            index = self._add(label)
        self.tick += 1
        if self.counts[index] != UNKNOWN_COUNT:
            self.counts[index] += 1
        self.last[index] = self.tick
        return index

    def find(self, label: Label) -> int | None:
        """The slot of ``label`` if it has one; nothing changes."""
        index = self._index.get(label)
        return index if index is not None and type(label) is type(self.labels[index]) else None

    def add(self, label: Label) -> int:
        """The label's slot, given one if it is new, counting no sample (a group of
        replicas agreeing on slots at a round); raises :class:`LabelError`. A slot given
        is used in the current batch: no later label of it takes the slot back."""
        index = self.find(label)
        if index is None:
            index = self._add(label)
            self.tick += 1
            self.last[index] = self.tick
        return index

    def check_kind(self, label: Label) -> None:
        """Raises :class:`LabelError` unless ``label`` could be one of this model's classes."""
        self._check_kind(label)

    def decode(self, index: int) -> Label:
        return self.labels[index]

    def take_recycled(self) -> list[Recycled]:
        taken, self.recycled = self.recycled, []
        return taken

    def _add(self, label: Label) -> int:
        self._check_kind(label)
        if len(self.labels) < self.capacity:
            self.labels.append(label)
            self.counts.append(0)
            self.last.append(0)
            self._index[label] = len(self.labels) - 1
            return len(self.labels) - 1
        victim = self._victim()
        if victim is None:
            raise LabelError(
                "too_many_classes",
                f"y: {show(label)} would be class "
                f"{self.capacity + 1} > model.max_classes={self.capacity}",
            )
        old = self.labels[victim]
        self.recycled.append(Recycled(victim, old, self.counts[victim], label))
        del self._index[old]
        self.labels[victim] = label
        self._index[label] = victim
        self.counts[victim] = 0
        return victim

    def _victim(self) -> int | None:
        """The slot a new label may take over: the least learned under ``rare``, if any."""
        candidates = [
            i
            for i, count in enumerate(self.counts)
            if 0 <= count < self.rare and self.last[i] <= self._batch_start
        ]
        if not candidates:
            return None
        return min(candidates, key=lambda i: (self.counts[i], self.last[i]))

    def _check_kind(self, label: Label) -> None:
        kind = _KINDS.get(type(label))
        if kind is None:
            raise LabelError(
                "bad_label",
                f"y: class labels are integers or strings, got "
                f"{type(label).__name__} {show(label)}",
            )
        if self.labels:
            first = _KINDS.get(type(self.labels[0]))
            if kind != first:
                raise LabelError(
                    "bad_label",
                    f"y: this model's classes are {first}s; got "
                    f"the {kind} {show(label)} (the first label learned "
                    "decides: integers or strings, never both)",
                )

    def state_dict(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "labels": list(self.labels),
            "counts": list(self.counts),
            "last": list(self.last),
            "tick": self.tick,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.capacity = int(state["capacity"])
        self.labels = list(state["labels"])
        self._index = {label: i for i, label in enumerate(self.labels)}
        # Written before counts were kept: how often those classes were learned is unknown,
        # so none of them is ever taken for a rare one.
        n = len(self.labels)
        self.counts = [int(c) for c in state.get("counts", [UNKNOWN_COUNT] * n)]
        self.last = [int(t) for t in state.get("last", [0] * n)]
        self.tick = int(state.get("tick", 0))
        self._batch_start = self.tick
        self.recycled = []


UNKNOWN_COUNT = -1
_KINDS: dict[type, str] = {int: "integer", str: "string"}


def show(label: Label) -> str:
    """A label for a message: hostile ones are long."""
    text = repr(label)
    return text if len(text) <= 40 else f"{text[:40]}... ({len(text)} chars)"
