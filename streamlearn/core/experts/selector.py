"""The selector: a small network that learns which expert fits an input (as TAME does).

Labeled samples need no selector: the active expert learns them. Unlabeled samples and
served requests carry no label and no task, so the selector routes them. It trains online,
one step per learning step, on a bounded memory of (input, expert) pairs: a uniform
reservoir per expert, so an expert that has not been active for a long time still has its
share of pairs and the selector does not forget its regime. Each step draws equally from
every expert's pairs, so a long-lived expert does not drown a young one. Pairs keep the raw
inputs and are scaled with the engine's current statistics (the :class:`Scaler` it was
given) when drawn: inputs scaled when they arrived would disagree with today's scaling,
most of all for the first regime.

Before a learning step adds its pairs, the selector routes those inputs: how often it
names the expert that then learns them is its routing accuracy.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from streamlearn.core.experts.guard import StepGuard
from streamlearn.core.experts.replay import Reservoir
from streamlearn.core.experts.settings import SelectorSettings
from streamlearn.core.models import build_mlp
from streamlearn.core.prequential import RollingMean
from streamlearn.core.protocols import StateDict

# Routing accuracy is reported over this many of the latest samples (and cumulatively).
ROUTING_WINDOW = 1_000


class Scaler(Protocol):
    """Raw inputs -> what the networks take, with the statistics as they are now.

    The engine's ``RunningStandardizer`` is one; None where one is expected means identity.
    """

    def transform(self, x: Tensor) -> Tensor: ...


def scaled(scaler: Scaler | None, x: Tensor) -> Tensor:
    """``x`` as the networks take it."""
    return scaler.transform(x) if scaler is not None else x


def route(
    net: nn.Module, x: Tensor, ids: Mapping[int, str], fallback: str, threshold: float
) -> list[str]:
    """The expert id per row: the selector's choice among ``ids`` (slot -> id), or
    ``fallback`` where its confidence is below ``threshold``."""
    slots = sorted(ids)
    with torch.inference_mode():
        probs = torch.softmax(net(x)[:, slots], dim=1)
    confidence, best = probs.max(dim=1)
    return [
        ids[slots[b]] if c >= threshold else fallback
        for b, c in zip(best.tolist(), confidence.tolist(), strict=True)
    ]


@dataclass(frozen=True, slots=True)
class FrozenRouter:
    """A read-only copy of the selector for serving snapshots; safe from any thread."""

    net: nn.Module
    ids: Mapping[int, str]
    fallback: str
    threshold: float

    def route(self, x: Tensor) -> list[str]:
        return route(self.net, x, self.ids, self.fallback, self.threshold)


class Selector:
    """Learns which expert fits an input, to route unlabeled samples and served requests.

    Trains on the learner thread; serving uses a frozen copy, never this object.
    """

    def __init__(
        self,
        settings: SelectorSettings,
        n_features: int,
        max_experts: int,
        device: torch.device,
        seed: int,
        scaler: Scaler | None = None,
    ) -> None:
        self.settings = settings
        self.seed = seed
        self.device = device
        self.scaler = scaler  # pairs keep raw inputs: scaled when drawn
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = build_mlp(n_features, max_experts, settings.hidden).to(device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=settings.learning_rate)
        self.guard = StepGuard(self.net, self.optimizer)
        self.skipped: str | None = None  # why the last training step was skipped, if it was
        self.pairs: dict[int, Reservoir] = {}  # expert slot -> its (input, slot) pairs
        self.rng = torch.Generator().manual_seed(seed)
        self.recent = RollingMean(ROUTING_WINDOW)
        self.hits = 0
        self.scored = 0
        self.steps = 0

    @property
    def trained(self) -> bool:
        return self.steps > 0

    def observe(self, x: Tensor, raw: Tensor, slot: int, alive: Sequence[int]) -> None:
        """``x`` (scaled; ``raw`` as it came) is being learned by the expert in ``slot``:
        score the route, keep the pairs, take a training step."""
        self.skipped = None
        if len(alive) > 1 and self.trained:
            self._score(x, slot, alive)
        if slot not in self.pairs:
            self.pairs[slot] = Reservoir(self.settings.pairs_per_expert, self.seed + slot + 1)
        raw = raw.detach().cpu()
        self.pairs[slot].add(raw, torch.full((raw.shape[0],), slot, dtype=torch.long))
        if sum(1 for s in alive if s in self.pairs) > 1:
            self._train_step(alive)

    def route(self, x: Tensor, ids: Mapping[int, str], fallback: str) -> list[str]:
        if len(ids) < 2 or not self.trained:
            return [fallback] * x.shape[0]
        self.net.eval()
        return route(self.net, x, ids, fallback, self.settings.threshold)

    def freeze(self, ids: Mapping[int, str], fallback: str) -> FrozenRouter | None:
        if len(ids) < 2 or not self.trained:
            return None
        net = copy.deepcopy(self.net).eval()
        net.requires_grad_(False)
        return FrozenRouter(net, dict(ids), fallback, self.settings.threshold)

    def forget(self, slot: int) -> None:
        """The expert in ``slot`` is gone: drop its pairs and reset its output."""
        self.pairs.pop(slot, None)
        last = self._output_layer()
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + slot)
            fresh = nn.Linear(last.in_features, last.out_features).to(last.weight.device)
            last.weight[slot] = fresh.weight[slot]
            last.bias[slot] = fresh.bias[slot]

    def move(self, source: int, target: int) -> None:
        """Relabel ``source``'s pairs as ``target``'s (merging one expert into another)."""
        moved = self.pairs.get(source)
        if moved is not None and (held := moved.rows()) is not None:
            if target not in self.pairs:
                self.pairs[target] = Reservoir(
                    self.settings.pairs_per_expert, self.seed + target + 1
                )
            self.pairs[target].add(held[0], torch.full_like(held[1], target))
        self.forget(source)

    @property
    def accuracy(self) -> tuple[float, float]:
        """Routing accuracy: rolling and cumulative (NaN before any scored route)."""
        cumulative = self.hits / self.scored if self.scored else float("nan")
        return self.recent.mean(), cumulative

    @property
    def nbytes(self) -> int:
        weights = sum(p.numel() * p.element_size() for p in self.net.parameters())
        return 3 * weights + sum(r.nbytes for r in self.pairs.values())  # Adam: 2 moments

    def _score(self, x: Tensor, slot: int, alive: Sequence[int]) -> None:
        self.net.eval()
        with torch.inference_mode():
            chosen = self.net(x)[:, list(alive)].argmax(dim=1)
        hit = (torch.tensor(list(alive), device=x.device)[chosen] == slot).double().cpu()
        self.recent.extend(hit)
        self.hits += int(hit.sum())
        self.scored += hit.numel()

    def _train_step(self, alive: Sequence[int]) -> None:
        experts = [s for s in alive if s in self.pairs and self.pairs[s].size]
        share = max(1, self.settings.batch // len(experts))
        drawn = [self.pairs[s].sample(share) for s in experts]
        x = scaled(self.scaler, torch.cat([d[0] for d in drawn])).to(self.device)
        y = torch.cat([d[1] for d in drawn]).to(self.device)
        self.net.train()
        logits = self.net(x)
        mask = torch.full((logits.shape[1],), float("-inf"), device=logits.device)
        mask[list(alive)] = 0.0
        loss = nn.functional.cross_entropy(logits + mask, y)
        self.skipped = self.guard.step(loss)
        self.steps += 1

    def _output_layer(self) -> nn.Linear:
        last = [m for m in self.net.modules() if isinstance(m, nn.Linear)][-1]
        return last

    def state_dict(self) -> StateDict:
        return {
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "pairs": {str(s): r.state_dict() for s, r in self.pairs.items()},
            "rng": self.rng.get_state(),
            "hits": self.hits,
            "scored": self.scored,
            "steps": self.steps,
            "recent": self.recent.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.guard.reset()
        self.pairs = {}
        for slot, pairs_state in state["pairs"].items():
            reservoir = Reservoir(int(pairs_state["capacity"]), 0)
            reservoir.load_state_dict(pairs_state, torch.device("cpu"))
            self.pairs[int(slot)] = reservoir
        self.rng.set_state(state["rng"])
        self.hits, self.scored = int(state["hits"]), int(state["scored"])
        self.steps = int(state["steps"])
        self.recent.load_state_dict(state["recent"])


def rows_by_expert(experts: Sequence[str]) -> dict[str, list[int]]:
    """Row indices per routed expert, experts in first-seen order."""
    parts: dict[str, list[int]] = {}
    for row, expert in enumerate(experts):
        parts.setdefault(expert, []).append(row)
    return parts
