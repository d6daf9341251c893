"""FedAvg with server momentum over nested state dicts (FedAvgM, Hsu et al. 2019).

At a sync round every replica holds the same template (the deciding replica's state) and its
own local state. Each averaged tensor is the mean over the replicas whose local state has it
at the same path with the same shape: a replica without an expert the template holds (it was
spawned elsewhere) adds nothing to it, rather than pulling it towards zero.

Expert weights then take a server-momentum step from the last global weights ``g``:
``delta = g - mean``, ``v = momentum * v + delta``, ``g' = g - server_lr * v``; momentum 0 and
server_lr 1 give the plain mean. N replicas each take 1/N of the stream's steps; server_lr N
adds their updates instead of averaging them (first order: the steps one learner would
take). Optimizer state, the selector and the scaler statistics are plainly averaged. The
momentum's ``g`` and ``v`` are identical on every replica, and checkpointed with the state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import Tensor

# Paths ("/"-joined keys) whose floating tensors are averaged; everything else is the template's.
AVERAGED = (
    "pool/members/*/expert/module/*",
    "pool/members/*/expert/optimizer/state/*",
    "pool/selector/net/*",
    "pool/selector/optimizer/state/*",
    "scaler/mean",
    "scaler/m2",
    "target_scaler/mean",
    "target_scaler/m2",
)
# The weights that take the server-momentum step.
WITH_MOMENTUM = ("pool/members/*/expert/module/*",)

SumFn = Callable[[Tensor], Tensor]  # a tensor -> its sum over replicas


def floating(state: Any, prefix: str = "") -> dict[str, Tensor]:
    """Every floating-point tensor in a nested state, by its "/"-joined path."""
    found: dict[str, Tensor] = {}
    if isinstance(state, Tensor):
        if state.is_floating_point():
            found[prefix] = state
    elif isinstance(state, Mapping):
        for key, value in state.items():
            found.update(floating(value, f"{prefix}/{key}" if prefix else str(key)))
    elif isinstance(state, list | tuple):
        for i, value in enumerate(state):
            found.update(floating(value, f"{prefix}/{i}" if prefix else str(i)))
    return found


def replaced(state: Any, values: Mapping[str, Tensor], prefix: str = "") -> Any:
    """A copy of ``state`` with the tensors at ``values``' paths replaced."""
    if prefix in values:
        return values[prefix]
    if isinstance(state, Mapping):
        return {
            k: replaced(v, values, f"{prefix}/{k}" if prefix else str(k)) for k, v in state.items()
        }
    if isinstance(state, list | tuple):
        items = [
            replaced(v, values, f"{prefix}/{i}" if prefix else str(i)) for i, v in enumerate(state)
        ]
        return type(state)(items) if isinstance(state, tuple) else items
    return state


def _matches(path: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(path, p) for p in patterns)


class Averager:
    """The mean of the replicas' states, with server momentum on expert weights."""

    def __init__(self, momentum: float, server_lr: float = 1.0) -> None:
        self.momentum = momentum
        self.server_lr = server_lr
        self.global_weights: dict[str, Tensor] = {}  # g: the weights of the last sync
        self.velocity: dict[str, Tensor] = {}  # v
        # Of the last round: RMS distance of this replica's expert weights from the mean,
        # local tensors the template lacks, bytes of the averaged vector.
        self.divergence = 0.0
        self.dropped = 0
        self.nbytes = 0

    def average(self, template: Mapping[str, Any], local: Mapping[str, Any], sum_fn: SumFn) -> Any:
        """``template`` with its averaged tensors replaced by the group's (collective: every
        replica must call it in the same round with the same template)."""
        targets = {p: t for p, t in floating(template).items() if _matches(p, AVERAGED)}
        mine = floating(local)
        paths = sorted(targets)
        parts, weights = [], []
        for path in paths:
            own = mine.get(path)
            if own is not None and own.shape == targets[path].shape:
                parts.append(own.detach().double().cpu().flatten())
                weights.append(1.0)
            else:  # not here: this replica adds nothing to it
                parts.append(torch.zeros(targets[path].numel(), dtype=torch.float64))
                weights.append(0.0)
        packed = torch.cat([*parts, torch.tensor(weights, dtype=torch.float64)])
        summed = sum_fn(packed)
        counts = summed[-len(paths) :] if paths else summed[:0]
        means: dict[str, Tensor] = {}
        offset, squares, elements = 0, 0.0, 0
        for i, path in enumerate(paths):
            target = targets[path]
            n = target.numel()
            total = summed[offset : offset + n].view(target.shape)
            offset += n
            mean = total / counts[i] if counts[i] > 0 else target.double()
            own = mine.get(path)
            if weights[i] and own is not None and _matches(path, WITH_MOMENTUM):
                squares += float((own.detach().double().cpu() - mean).pow(2).sum())
                elements += n
            means[path] = self._step(path, mean).to(target.dtype)
        self.divergence = math.sqrt(squares / elements) if elements else 0.0
        self.dropped = sum(1 for p in mine if p not in targets and _matches(p, AVERAGED))
        self.nbytes = packed.numel() * packed.element_size()
        self.global_weights = {p: g for p, g in self.global_weights.items() if p in means}
        self.velocity = {p: v for p, v in self.velocity.items() if p in means}
        return replaced(template, means)

    def _step(self, path: str, mean: Tensor) -> Tensor:
        """The server-momentum update of one tensor (the plain mean when momentum is 0)."""
        if (not self.momentum and self.server_lr == 1.0) or not _matches(path, WITH_MOMENTUM):
            return mean
        before = self.global_weights.get(path)
        if before is None or before.shape != mean.shape:
            after = mean  # a new expert: its first global weights are the mean
            self.velocity[path] = torch.zeros_like(mean)
        else:
            velocity = self.momentum * self.velocity.get(path, torch.zeros_like(mean)) + (
                before - mean
            )
            self.velocity[path] = velocity
            after = before - self.server_lr * velocity
        self.global_weights[path] = after.clone()
        return after

    def state_dict(self) -> dict[str, Any]:
        return {"global": dict(self.global_weights), "velocity": dict(self.velocity)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.global_weights = {p: t.double() for p, t in state["global"].items()}
        self.velocity = {p: t.double() for p, t in state["velocity"].items()}
