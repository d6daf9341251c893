"""The selector: a small network that learns which expert fits an input (as TAME does).

Labeled samples need no selector: the active expert learns them. Unlabeled samples and
served requests carry no label and no task, so the selector routes them. It trains online
on a bounded memory of (input, expert) pairs: a uniform reservoir per expert, so an expert
that has not been active for a long time still has its share of pairs and the selector does
not forget its regime. Each step draws equally from every expert's pairs, so a long-lived
expert does not drown a young one. Pairs keep the raw inputs and are scaled with the
engine's current statistics (the :class:`Scaler` it was given) when drawn: inputs scaled
when they arrived would disagree with today's scaling, most of all for the first regime.

The selector keeps its own cadence: every learning step adds its pairs, but a training step
is taken only once ``batch`` new pairs have come in since the last one (at most one per
learning step), and never while fewer than two experts have pairs (there is nothing to
route between). At the default engine batch of 32 that is a step every other learning step.
While an expert's pairs are still filling (its regime is new to the selector) it steps at
every learning step: that is when routing is learned, and it lasts ``pairs_per_expert``
samples.

Before a learning step adds its pairs, the selector routes those inputs: how often it
names the expert that then learns them is its routing accuracy. The network only changes
at a training step, so the routes are scored together, in one pass, just before the
network next changes (or when the accuracy or the state is read): the same answers as
scoring each batch as it comes, for a fraction of the calls.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from streamlearn.core.experts.guard import StepGuard
from streamlearn.core.experts.prototypes import nearest
from streamlearn.core.experts.replay import PairMemory, Reservoir
from streamlearn.core.experts.settings import SelectorSettings
from streamlearn.core.models import build_mlp, seed_weights
from streamlearn.core.prequential import RollingMean
from streamlearn.core.protocols import StateDict

Router = Callable[[Tensor], list[str]]  # rows -> the expert id per row
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
    net: nn.Module,
    x: Tensor,
    ids: Mapping[int, str],
    fallback: str,
    threshold: float,
    nearest: Router | None = None,
) -> list[str]:
    """The expert id per row: the selector's choice among ``ids`` (slot -> id) where its
    confidence reaches ``threshold``; below it ``nearest``'s choice if given (the experts'
    prototypes), else ``fallback``."""
    slots = sorted(ids)
    with torch.inference_mode():
        probs = torch.softmax(net(x)[:, slots], dim=1)
    confidence, best = probs.max(dim=1)
    chosen = [
        ids[slots[b]] if c >= threshold else None
        for b, c in zip(best.tolist(), confidence.tolist(), strict=True)
    ]
    unsure = [row for row, c in enumerate(chosen) if c is None]
    second = nearest(x[unsure]) if nearest is not None and unsure else [fallback] * len(unsure)
    for row, id_ in zip(unsure, second, strict=True):
        chosen[row] = id_
    return [c if c is not None else fallback for c in chosen]


@dataclass(frozen=True, slots=True)
class FrozenRouter:
    """A read-only copy of the selector for serving snapshots; safe from any thread."""

    net: nn.Module
    ids: Mapping[int, str]
    fallback: str
    threshold: float
    # Expert id -> its prototype weights, when they route the rows the selector is unsure of.
    prototypes: Mapping[str, Tensor] | None = None

    def route(self, x: Tensor) -> list[str]:
        near = None if self.prototypes is None else partial(nearest, self.prototypes)
        return route(self.net, x, self.ids, self.fallback, self.threshold, near)


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
            seed_weights(seed)
            # Linear layers and activations only: nothing acts differently in training, so the
            # network is never switched between train and eval mode (each switch walks every
            # module: about 70 us here, as much as a forward pass).
            self.net = build_mlp(n_features, max_experts, settings.hidden).to(device)
        self.optimizer = _adam(list(self.net.parameters()), settings.learning_rate)
        self.guard = StepGuard(self.net, self.optimizer)
        self.skipped: str | None = None  # why the last training step was skipped, if it was
        self.memory = PairMemory(settings.pairs_per_expert, seed, max_experts)
        self.rng = torch.Generator().manual_seed(seed)
        self.recent = RollingMean(ROUTING_WINDOW)
        self.hits = 0
        self.scored = 0
        self.steps = 0
        self.fresh = 0  # pairs added since the last training step: the selector's cadence
        # Inputs routed by the network as it is now and not scored yet, with the expert that
        # learned them, and the experts that were alive then (they bound the choice).
        self._unscored: list[tuple[Tensor, int]] = []
        self._unscored_alive: tuple[int, ...] = ()
        self._masks: dict[tuple[int, ...], Tensor] = {}  # alive slots -> logit mask

    @property
    def pairs(self) -> dict[int, Reservoir]:
        """Expert slot -> its (input, slot) pairs."""
        return self.memory.reservoirs

    @property
    def trained(self) -> bool:
        return self.steps > 0

    def observe(self, x: Tensor, raw: Tensor, slot: int, alive: Sequence[int]) -> None:
        """``x`` (scaled; ``raw`` as it came) is being learned by the expert in ``slot``:
        score the route, keep the pairs, and take a training step when one is due."""
        self.skipped = None
        if len(alive) > 1 and self.trained:
            self._defer_score(x, slot, tuple(alive))
        self.memory.add(slot, raw.detach().cpu())
        self.fresh += raw.shape[0]
        if self._due(alive):
            self._train_step(alive)
            # At most one step per learning step: a big batch leaves no debt of steps.
            self.fresh = max(0, min(self.fresh - self.settings.batch, self.settings.batch - 1))

    def _due(self, alive: Sequence[int]) -> bool:
        """Whether a training step is due: never while fewer than two experts have pairs;
        once ``batch`` new pairs came in; and at every learning step while an expert's pairs
        are still filling (a regime new to the selector, which must learn it quickly)."""
        held = [self.pairs[s] for s in alive if s in self.pairs]
        if len(held) < 2:
            return False
        return self.fresh >= self.settings.batch or any(r.size < r.capacity for r in held)

    def route(
        self, x: Tensor, ids: Mapping[int, str], fallback: str, nearest: Router | None = None
    ) -> list[str]:
        if len(ids) < 2 or not self.trained:
            return [fallback] * x.shape[0]
        return route(self.net, x, ids, fallback, self.settings.threshold, nearest)

    def freeze(
        self,
        ids: Mapping[int, str],
        fallback: str,
        prototypes: Mapping[str, Tensor] | None = None,
    ) -> FrozenRouter | None:
        if len(ids) < 2 or not self.trained:
            return None
        net = copy.deepcopy(self.net).eval()
        net.requires_grad_(False)
        return FrozenRouter(net, dict(ids), fallback, self.settings.threshold, prototypes)

    def forget(self, slot: int) -> None:
        """The expert in ``slot`` is gone: drop its pairs and reset its output."""
        self._flush_scores()  # routed by the network before this change
        self.memory.forget(slot)
        last = self._output_layer()
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            seed_weights(self.seed + slot)
            fresh = nn.Linear(last.in_features, last.out_features).to(last.weight.device)
            last.weight[slot] = fresh.weight[slot]
            last.bias[slot] = fresh.bias[slot]

    def move(self, source: int, target: int) -> None:
        """Relabel ``source``'s pairs as ``target``'s (merging one expert into another)."""
        self.memory.move(source, target)
        self.forget(source)

    @property
    def accuracy(self) -> tuple[float, float]:
        """Routing accuracy: rolling and cumulative (NaN before any scored route)."""
        self._flush_scores()
        cumulative = self.hits / self.scored if self.scored else float("nan")
        return self.recent.mean(), cumulative

    @property
    def nbytes(self) -> int:
        weights = sum(p.numel() * p.element_size() for p in self.net.parameters())
        return 3 * weights + self.memory.nbytes  # Adam: 2 moments

    def _defer_score(self, x: Tensor, slot: int, alive: tuple[int, ...]) -> None:
        """Keep ``x`` to be scored with the network as it is now; a change of the alive
        experts, or a batch's worth kept, scores what was kept first."""
        if alive != self._unscored_alive or sum(r.shape[0] for r, _ in self._unscored) >= (
            self.settings.batch
        ):
            self._flush_scores()
        self._unscored_alive = alive
        self._unscored.append((x, slot))

    def _flush_scores(self) -> None:
        """Score every kept route in one pass: did the network name the expert that learned
        the input? Call before the network changes."""
        if self._unscored:
            x, learners = self._take_unscored()
            with torch.inference_mode():
                self._score(self.net(x), learners)

    def _take_unscored(self) -> tuple[Tensor, int | Tensor]:
        """The kept inputs in one tensor, and the expert that learned them (one slot, or a
        slot per row)."""
        kept, self._unscored = self._unscored, []
        x = torch.cat([rows for rows, _ in kept]) if len(kept) > 1 else kept[0][0]
        learners = {slot for _, slot in kept}
        if len(learners) == 1:  # the usual case: one expert learned them all
            return x, learners.pop()
        return x, torch.cat([torch.full((rows.shape[0],), s) for rows, s in kept])

    def _score(self, logits: Tensor, learners: int | Tensor) -> None:
        masked = logits.detach() + self._mask(self._unscored_alive)
        hit = masked.argmax(dim=1).cpu() == learners  # the alive slot chosen, right or not
        self.recent.extend(hit)
        self.hits += int(hit.sum())
        self.scored += hit.numel()

    def _train_step(self, alive: Sequence[int]) -> None:
        experts = [s for s in alive if s in self.pairs and self.pairs[s].size]
        # An equal share from every expert, so a long-lived expert does not drown a young one.
        share = max(1, self.settings.batch // len(experts))
        x, y = self.memory.draw(experts, share, self.rng)
        x = scaled(self.scaler, x).to(self.device)
        if self._unscored_alive != tuple(alive):
            self._flush_scores()
        if not self._unscored:
            logits = self.net(x)
        else:
            # The kept routes are scored in this step's forward pass: the network is still
            # the one that routed them, and one pass costs less than two.
            routed, learners = self._take_unscored()
            logits = self.net(torch.cat([routed, x]))
            self._score(logits[: routed.shape[0]], learners)
            logits = logits[routed.shape[0] :]
        loss = nn.functional.cross_entropy(logits + self._mask(alive), y.to(self.device))
        self.skipped = self.guard.step(loss)
        self.steps += 1

    def _mask(self, alive: Sequence[int]) -> Tensor:
        """Logits of the slots not alive at minus infinity: the choice is among the alive."""
        key = tuple(alive)
        if key not in self._masks:
            width = self._output_layer().out_features
            mask = torch.full((width,), float("-inf"), device=self.device)
            mask[list(key)] = 0.0
            self._masks = {key: mask}  # the alive set changes only at a decision
        return self._masks[key]

    def _output_layer(self) -> nn.Linear:
        last = [m for m in self.net.modules() if isinstance(m, nn.Linear)][-1]
        return last

    def state_dict(self) -> StateDict:
        self._flush_scores()
        return {
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "pairs": self.memory.state_dict(),
            "rng": self.rng.get_state(),
            "hits": self.hits,
            "scored": self.scored,
            "steps": self.steps,
            "fresh": self.fresh,
            "recent": self.recent.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.guard.reset()
        self.memory.load_state_dict(state["pairs"])
        self.rng.set_state(state["rng"])
        self.hits, self.scored = int(state["hits"]), int(state["scored"])
        self.steps = int(state["steps"])
        self.fresh = int(state.get("fresh", 0))  # absent before the selector's cadence
        self._unscored = []  # routes of the lineage being replaced
        self.recent.load_state_dict(state["recent"])


def _adam(params: list[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam, fused where the device has the kernel: one call instead of a dozen per tensor
    (measured on the default selector, CPU: 85 us a step against 235)."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except RuntimeError:  # a device without the fused kernel
        return torch.optim.Adam(params, lr=lr)


def rows_by_expert(experts: Sequence[str]) -> dict[str, list[int]]:
    """Row indices per routed expert, experts in first-seen order."""
    parts: dict[str, list[int]] = {}
    for row, expert in enumerate(experts):
        parts.setdefault(expert, []).append(row)
    return parts
