"""One expert in the pool, with what the pool knows about it."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from streamlearn.core.experts.band import LossBand
from streamlearn.core.experts.prototypes import InputPrototypes
from streamlearn.core.experts.replay import ReplayBuffer
from streamlearn.core.protocols import Expert, StateDict

# Per-expert prequential accuracy is an exponentially weighted mean over about this many
# samples: the same horizon as the daemon's rolling window default.
ACCURACY_MEMORY = 1_000


@dataclass(frozen=True, slots=True)
class PoolEvent:
    """A decision of the pool: ``switch``, ``spawn``, ``keep``, ``prune`` or ``merge``."""

    kind: str
    expert: str  # the expert now active; for prune and merge the one removed
    previous: str | None  # the expert active before; for merge the one that absorbed it
    sample: int  # stream position (labeled samples taken in before the decision)
    time: float
    scores: dict[str, float] = field(default_factory=dict)  # mean window loss per expert

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Member:
    """An expert together with what the pool tracks about it: slot, band, replay and usage."""

    def __init__(
        self,
        id_: str,
        slot: int,
        expert: Expert,
        band: LossBand,
        replay: ReplayBuffer,
        sample: int,
        prototypes: InputPrototypes | None = None,
    ) -> None:
        self.id = id_
        self.slot = slot  # its output of the selector network
        self.expert = expert
        self.band = band
        self.replay = replay
        self.prototypes = prototypes  # class means of its inputs (classification only)
        self.created = time.time()
        self.created_sample = sample
        self.samples_learned = 0
        self.steps = 0  # learning steps taken: a changed count means changed weights
        self.adaptations = 0  # test-time adaptation steps and resets: they change weights too
        self.last_active: float | None = None
        self.last_active_sample = sample
        self.wins = 1  # times the pool chose it (its spawn is the first)
        self.accuracy = float("nan")

    def learned(self, losses: Tensor, sample: int) -> None:
        self.band.update(losses)
        self.samples_learned += losses.numel()
        self.steps += 1
        self.last_active = time.time()
        self.last_active_sample = sample

    def scored(self, correct: Tensor) -> None:
        """Prequential accuracy of the answers this expert gave to labeled samples."""
        hits = correct.double().cpu()
        weight = 1 - (1 - 1 / ACCURACY_MEMORY) ** hits.numel()
        mean = float(hits.mean())
        self.accuracy = (
            mean if math.isnan(self.accuracy) else (self.accuracy + weight * (mean - self.accuracy))
        )

    def usefulness(self, sample: int, half_life: int) -> float:
        """Wins, halved for every ``half_life`` samples since the expert was last active."""
        idle = max(0, sample - self.last_active_sample)
        return float(self.wins * 0.5 ** (idle / half_life))

    def nbytes(self) -> int:
        weights = sum(t.numel() * t.element_size() for t in _tensors(self.expert.state_dict()))
        return weights + self.replay.nbytes

    def state_dict(self) -> StateDict:
        return {
            "slot": self.slot,
            "expert": self.expert.state_dict(),
            "band": self.band.state_dict(),
            "replay": self.replay.state_dict(),
            "created": self.created,
            "created_sample": self.created_sample,
            "samples_learned": self.samples_learned,
            "steps": self.steps,
            "last_active": self.last_active,
            "last_active_sample": self.last_active_sample,
            "wins": self.wins,
            "accuracy": self.accuracy,
            "prototypes": self.prototypes.state_dict() if self.prototypes is not None else None,
        }

    def load_state_dict(self, state: Mapping[str, Any], device: torch.device) -> None:
        self.expert.load_state_dict(state["expert"])
        self.band.load_state_dict(state["band"])
        self.replay.load_state_dict(state["replay"], device)
        self.created = float(state["created"])
        self.created_sample = int(state["created_sample"])
        self.samples_learned, self.steps = int(state["samples_learned"]), int(state["steps"])
        self.last_active = state["last_active"]
        self.last_active_sample = int(state["last_active_sample"])
        self.wins, self.accuracy = int(state["wins"]), float(state["accuracy"])
        # Absent before prototypes were kept: they then start empty and fill as it learns.
        if self.prototypes is not None and state.get("prototypes") is not None:
            self.prototypes.load_state_dict(state["prototypes"])


def _tensors(state: Any) -> list[Tensor]:
    """Every tensor inside a nested state dict."""
    if isinstance(state, Tensor):
        return [state]
    if isinstance(state, Mapping):
        return [t for v in state.values() for t in _tensors(v)]
    if isinstance(state, list | tuple):
        return [t for v in state for t in _tensors(v)]
    return []
