"""The pool's open decision (the samples held after a drift) and what one pool step did.

:class:`Decision` is the bookkeeping of ``ExpertPool``'s decision window; :class:`PoolStep`
is what ``ExpertPool.step`` hands back to the engine, which owns the drift detectors, the
adapter and the model version and so must act on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from streamlearn.core.experts.member import PoolEvent
from streamlearn.core.protocols import StateDict


@dataclass(frozen=True, slots=True)
class Learned:
    """Rows an expert learned, as it saw them: its adaptation anchor must move."""

    expert: str
    x: Tensor
    y: Tensor


@dataclass(slots=True)
class PoolStep:
    """What the pool did with one labeled batch (``ExpertPool.step``).

    ``held`` batches went to an open decision: no expert learned them yet, so their losses
    must not feed a drift detector. The chunks in ``learned`` are in the order learned.
    """

    losses: Tensor  # per sample: the learner's before its step; the leader's while held
    held: bool
    # Held in a window a replica of a group opened on its own alarm, before the group
    # confirmed it (docs/scaling.md): ``losses`` are the active expert's, and the detectors
    # are fed them as if learned (the group's test needs them).
    tentative: bool = False
    steps: int = 0  # optimizer steps taken: the model version moves by as many
    events: list[PoolEvent] = field(default_factory=list)  # from a decision that closed
    learned: list[Learned] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class GroupScores:
    """A decision window held by a group of replicas (docs/scaling.md): each expert's mean
    loss over every held sample that scored it, and how many samples the group held."""

    means: dict[str, float]
    count: int

    @classmethod
    def combine(cls, votes: Sequence[Mapping[str, list[float]]], count: int) -> GroupScores:
        """From every replica's :meth:`Decision.vote`; an expert scored nowhere is never
        chosen."""
        sums: dict[str, float] = {}
        scored: dict[str, float] = {}
        for vote in votes:
            for e, (loss, n) in vote.items():
                sums[e] = sums.get(e, 0.0) + loss
                scored[e] = scored.get(e, 0.0) + n
        means = {e: sums[e] / scored[e] if scored[e] else math.inf for e in sums}
        return cls(means, count)


class Decision:
    """The samples held after a drift and every expert's summed loss on them."""

    def __init__(self, sample: int, experts: list[str], tentative: bool = False) -> None:
        self.sample = sample
        # Opened by a replica of a group on its own alarm: the next sync round confirms it
        # or hands the samples back to the active expert. Never saved: a round that
        # checkpoints settles it first.
        self.tentative = tentative
        self.x: list[Tensor] = []
        self.raw: list[Tensor] = []  # the same inputs unscaled, for the selector
        self.y: list[Tensor] = []
        self.loss_sums = dict.fromkeys(experts, 0.0)
        self.count = 0

    def leader(self, fallback: str) -> str:
        if not self.count:
            return fallback
        return min(self.loss_sums, key=lambda e: (self.loss_sums[e], e != fallback))

    def means(self) -> dict[str, float]:
        return {e: s / max(self.count, 1) for e, s in self.loss_sums.items()}

    def rekeyed(self, experts: list[str]) -> Decision:
        """This window over another set of experts (a group's, after a sync round): an
        expert it did not score here is out of its vote."""
        self.loss_sums = {e: self.loss_sums.get(e, math.inf) for e in experts}
        return self

    def vote(self) -> dict[str, list[float]]:
        """Each expert's [loss sum, samples scored] for a group's decision (JSON-safe: an
        expert that could not be scored here counts no samples)."""
        return {
            e: [s, float(self.count)] if math.isfinite(s) else [0.0, 0.0]
            for e, s in self.loss_sums.items()
        }

    def state_dict(self) -> StateDict:
        return {
            "sample": self.sample,
            "x": torch.cat(self.x).cpu() if self.x else None,
            "raw": torch.cat(self.raw).cpu() if self.raw else None,
            "y": torch.cat(self.y).cpu() if self.y else None,
            "loss_sums": dict(self.loss_sums),
            "count": self.count,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], device: torch.device) -> Decision:
        decision = cls(int(state["sample"]), list(state["loss_sums"]))
        decision.loss_sums = {e: float(v) for e, v in state["loss_sums"].items()}
        decision.count = int(state["count"])
        if state["x"] is not None:
            decision.x, decision.y = [state["x"].to(device)], [state["y"].to(device)]
            decision.raw = [state["raw"]]
        return decision
