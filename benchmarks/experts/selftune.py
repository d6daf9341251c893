"""A self-tuning step size, as a ``model.factory``: no library change, no rate to pick.

``multi_rate`` builds an Expert that trains the same network at several Adam learning
rates side by side (``RATES``, 1e-3, 3e-3 and 1e-2), one copy each, every copy on every
batch. Each copy's loss on a batch is measured before that copy learns it (test-then-train,
so it is an honest prequential loss), and an exponential moving average of it per copy
(half-life ``HALF_LIFE`` samples) picks the copy that answers: ``predict`` is the leader's
output, ``learn`` returns the leader's pre-step losses (what the drift detector and the
pool's loss bands are fed). A fast rate leads right after a change, a slow one once the
concept is learned; the switch is free because all copies kept learning.

Cost: K forward and backward passes a step instead of one, K times the weights and Adam
state. Use it with ``model.factory: selftune:multi_rate`` (the folder on ``sys.path``, as
the benchmark scripts put it).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from streamlearn.core.experts.expert import NeuralExpert
from streamlearn.core.models import build_mlp
from streamlearn.core.protocols import StateDict
from streamlearn.settings import ModelSettings

RATES = (1e-3, 3e-3, 1e-2)
HALF_LIFE = 500  # samples: how far back a copy's loss average reaches


class MultiRateExpert:
    """K copies of one network at K learning rates; the one with the lowest recent
    prequential loss answers. Every copy learns every batch."""

    def __init__(
        self, members: list[NeuralExpert], rates: tuple[float, ...], half_life: int = HALF_LIFE
    ) -> None:
        self.members = members
        self.rates = rates
        self.half_life = half_life
        self.average = [math.nan] * len(members)  # EMA of each copy's pre-step mean loss
        self.task = members[0].task
        self.skipped: str | None = None

    @property
    def module(self) -> torch.nn.Module:
        """The leader's network: what ``predict`` answers with."""
        return self.members[self.leader].module

    @property
    def leader(self) -> int:
        known = [(a, i) for i, a in enumerate(self.average) if not math.isnan(a)]
        return min(known)[1] if known else len(self.members) // 2

    def predict(self, x: Tensor) -> Tensor:
        return self.members[self.leader].predict(x)

    def learn(self, x: Tensor, y: Tensor) -> Tensor:
        leader = self.leader
        out = None
        decay = 0.5 ** (x.shape[0] / self.half_life)
        for i, member in enumerate(self.members):
            losses = member.learn(x, y)
            mean = float(losses.double().mean())
            if math.isfinite(mean):
                old = self.average[i]
                self.average[i] = mean if math.isnan(old) else decay * old + (1 - decay) * mean
            if i == leader:
                out, self.skipped = losses, member.skipped
        assert out is not None
        return out

    def state_dict(self) -> StateDict:
        return {
            "members": [m.state_dict() for m in self.members],
            "average": list(self.average),
            "rates": list(self.rates),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for member, member_state in zip(self.members, state["members"], strict=True):
            member.load_state_dict(member_state)
        self.average = [float(a) for a in state["average"]]


def multi_rate(
    n_features: int, n_outputs: int, settings: ModelSettings, half_life: int = HALF_LIFE
) -> MultiRateExpert:
    """The factory: ``settings`` describe the network (hidden, activation, ...); its
    learning rate is replaced by each of ``RATES``. Every copy starts from the same
    weights (the engine seeds torch before calling). MLPs only (``model.architecture``)."""
    first = build_mlp(n_features, n_outputs, settings.hidden, settings.activation, settings.norm)
    members: list[NeuralExpert] = []
    for rate in RATES:
        module = first if not members else copy.deepcopy(first)
        optimizer = torch.optim.Adam(
            module.parameters(), lr=rate, weight_decay=settings.weight_decay
        )
        members.append(NeuralExpert(module, optimizer, settings.task))
    return MultiRateExpert(members, RATES, half_life)


def multi_rate_fast(n_features: int, n_outputs: int, settings: ModelSettings) -> MultiRateExpert:
    """``multi_rate`` with a 100-sample half-life: follows a change five times sooner."""
    return multi_rate(n_features, n_outputs, settings, half_life=100)
