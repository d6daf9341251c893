"""Snapshots as plain state: what the learner hands to serving, and how serving rebuilds them.

A snapshot crosses as a *head* (version, labels, the experts' bookkeeping, the selector's and
the scalers' state, one stamp per expert) and one *weights* state per expert. A stamp changes
whenever the expert's weights do (a learning step, an adaptation step or reset), so a publish
writes, and a reader loads, only the experts that changed. Everything is tensors and plain
Python values: it round-trips through ``torch.save`` and ``torch.load(weights_only=True)``,
and nothing executable crosses. The reader rebuilds each network from the settings it shares
with the learner, then loads the weights into it.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from streamlearn.core.experts.expert import build_network
from streamlearn.core.experts.selector import FrozenRouter
from streamlearn.core.experts.settings import ExpertsSettings
from streamlearn.core.models import build_mlp
from streamlearn.core.models.heads import variances
from streamlearn.core.models.settings import ModelSettings
from streamlearn.core.predictor import Forward, Predictor, fixed_route
from streamlearn.core.preprocess import RunningStandardizer
from streamlearn.core.protocols import Expert, StateDict
from streamlearn.serve.snapshot import ExpertInfo, Snapshot

if TYPE_CHECKING:
    from streamlearn.core.engine import Engine
    from streamlearn.core.experts.member import Member
    from streamlearn.core.experts.pool import ExpertPool

HEAD_FORMAT = 1
#: Where a reader finds one expert's weights: (expert id, stamp) -> weights state.
WeightsOf = Callable[[str, str], StateDict]


def snapshot_head(engine: Engine, generation: str) -> StateDict | None:
    """Everything but the experts' weights; None before the model exists."""
    pool = engine.pool
    if pool is None or engine.n_features is None:
        return None
    features = engine.settings.features
    router = pool.frozen_router()
    return {
        "format": HEAD_FORMAT,
        "generation": generation,
        "version": engine.version,
        "created": time.time(),
        "task": engine.settings.task,
        "n_features": engine.n_features,
        "feature_names": list(features) if features is not None else None,
        "labels": list(engine.labels.labels),
        "expert_id": pool.active_id,
        "experts": [dataclasses.asdict(info) for info in expert_infos(pool)],
        "stamps": {id_: expert_stamp(m) for id_, m in pool.members.items()},
        "router": None
        if router is None
        else {
            "state": router.net.state_dict(),
            "ids": dict(router.ids),
            "fallback": router.fallback,
            "threshold": router.threshold,
            "prototypes": None if router.prototypes is None else dict(router.prototypes),
        },
        "scaler": engine.scaler.state_dict() if engine.scaler is not None else None,
        "target_scaler": (
            engine.target_scaler.state_dict() if engine.target_scaler is not None else None
        ),
    }


def expert_stamp(member: Member) -> str:
    return f"{member.steps}.{member.adaptations}"


def expert_weights(expert: Expert) -> StateDict:
    """What serving needs of one expert: its network's weights (the Expert protocol's
    ``module``: serving runs its forward pass), or, without one, the expert's state."""
    module = expert.module
    if module is not None:
        return {
            "kind": "module",
            "state": {k: v.detach().clone() for k, v in module.state_dict().items()},
        }
    return {"kind": "expert", "state": copy.deepcopy(expert.state_dict())}


def expert_infos(pool: ExpertPool) -> tuple[ExpertInfo, ...]:
    s = pool.settings
    return tuple(
        ExpertInfo(
            m.id,
            m.created,
            m.samples_learned,
            m.last_active,
            m.id == pool.active_id,
            m.wins,
            m.band.bounds(s.decision_window, s.band_z, s.band_tolerance) if m.band.ready else None,
            None if m.accuracy != m.accuracy else m.accuracy,  # NaN: no answers yet
            m.created_sample,
            m.last_active_sample,
        )
        for m in pool.members.values()
    )


class Assembler:
    """Rebuilds snapshots from heads, reusing the frozen networks of unchanged experts."""

    def __init__(
        self, model: ModelSettings, experts: ExpertsSettings, device: torch.device
    ) -> None:
        self.model = model
        self.experts = experts
        self.device = device
        self._forwards: dict[tuple[str, str], Forward] = {}
        self._modules: dict[tuple[str, str], nn.Module] = {}  # the frozen networks among them

    def assemble(self, head: Mapping[str, Any], weights_of: WeightsOf) -> Snapshot:
        n_features = int(head["n_features"])
        forwards = {
            id_: self._forward(id_, stamp, n_features, weights_of)
            for id_, stamp in head["stamps"].items()
        }
        # Only the experts of this head stay cached: pruned ones and old stamps go.
        self._forwards = {(i, head["stamps"][i]): f for i, f in forwards.items()}
        self._modules = {k: m for k, m in self._modules.items() if k in self._forwards}
        spreads = variances({i: m for (i, _), m in self._modules.items()})
        router = self._router(head["router"], n_features)
        expert_id = str(head["expert_id"])
        predictor = Predictor(
            str(head["task"]),
            tuple(head["labels"]),
            forwards,
            router.route if router is not None else fixed_route(expert_id),
            self.device,
            _scaler(head["scaler"], n_features),
            _scaler(head["target_scaler"], 1),
            spreads,
        )
        names = head["feature_names"]
        return Snapshot(
            version=int(head["version"]),
            created=float(head["created"]),
            task=str(head["task"]),
            n_features=n_features,
            feature_names=tuple(names) if names is not None else None,
            labels=tuple(head["labels"]),
            expert_id=expert_id,
            experts=tuple(ExpertInfo(**info) for info in head["experts"]),
            predictor=predictor,
            generation=str(head["generation"]),
        )

    def _forward(self, id_: str, stamp: str, n_features: int, weights_of: WeightsOf) -> Forward:
        cached = self._forwards.get((id_, stamp))
        if cached is not None:
            return cached
        weights = weights_of(id_, stamp)
        # Building seeds torch's global generator: keep the caller's (a learner's) intact.
        with torch.random.fork_rng(devices=[]):
            built = build_network(self.model, n_features)
        if weights["kind"] == "module":
            module = built if isinstance(built, nn.Module) else built.module
            assert module is not None, "an expert with weights must build with a module"
            self._modules[(id_, stamp)] = module
            return self._frozen_module(module, weights["state"])
        assert not isinstance(built, nn.Module)
        built.load_state_dict(weights["state"])
        predict: Forward = built.predict  # the conformance checks: predict never mutates
        return predict

    def _frozen_module(self, module: nn.Module, state: StateDict) -> Forward:
        module.load_state_dict(state)
        module = module.to(self.device).eval()
        module.requires_grad_(False)
        if self.model.task == "classification":
            return module
        return lambda x: _squeeze(module, x)

    def _router(self, state: Mapping[str, Any] | None, n_features: int) -> FrozenRouter | None:
        if state is None:
            return None
        selector = self.experts.selector
        with torch.random.fork_rng(devices=[]):
            net = build_mlp(n_features, self.experts.max_experts, selector.hidden)
        net.load_state_dict(state["state"])
        net = net.to(self.device).eval()
        net.requires_grad_(False)
        ids = {int(slot): str(id_) for slot, id_ in state["ids"].items()}
        prototypes = state.get("prototypes")  # absent in snapshots before prototype routing
        return FrozenRouter(
            net, ids, str(state["fallback"]), float(state["threshold"]), prototypes or None
        )


class InProcessFreezer:
    """A snapshot of an engine in this process: the head and weights, without files."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def freeze(self) -> Snapshot | None:
        engine = self.engine
        head = snapshot_head(engine, generation="")
        if head is None:
            return None
        assert engine.pool is not None
        members = engine.pool.members
        experts = self._experts_settings()
        assembler = Assembler(engine.settings, experts, engine.device)
        return assembler.assemble(head, lambda id_, _: expert_weights(members[id_].expert))

    def _experts_settings(self) -> ExpertsSettings:
        pool = self.engine.pool
        assert pool is not None
        return pool.settings


def _scaler(state: StateDict | None, n_features: int) -> RunningStandardizer | None:
    if state is None:
        return None
    scaler = RunningStandardizer(n_features)
    scaler.load_state_dict(state)
    return scaler


def _squeeze(module: nn.Module, x: Tensor) -> Tensor:
    out: Tensor = module(x)
    return out.squeeze(-1)
