"""Immutable serving snapshots, built by the learner and swapped in by one assignment.

The learner thread calls :meth:`SnapshotBoard.publish_from` every
``serve.publish_interval_ms`` and after each checkpoint. A snapshot owns deep copies of
everything a prediction needs (network in eval mode, scaler statistics, label names), so
the learner can go on stepping while any number of request threads read it. Readers take
``board.current`` once per request and use only that object: a request never sees half of
one model version and half of the next, and never waits for a learning step.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from streamlearn.experts.expert import NeuralExpert
from streamlearn.experts.selector import FrozenRouter
from streamlearn.logging import get_logger
from streamlearn.preprocess import RunningStandardizer
from streamlearn.types import Label

if TYPE_CHECKING:
    from streamlearn.engine import Engine
    from streamlearn.experts.pool import ExpertPool
    from streamlearn.metrics import Metrics

Forward = Callable[[Tensor], Tensor]

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ExpertInfo:
    """What ``/v1/experts`` says about one expert."""

    id: str
    created: float
    samples_learned: int
    last_active: float | None
    active: bool
    wins: int = 0
    # Mean window loss this expert shows on its own regime; None until it learned enough.
    loss_band: tuple[float, float] | None = None
    accuracy: float | None = None  # prequential, over about the last 1000 answers
    created_sample: int = 0  # stream positions (labeled samples taken in)
    last_active_sample: int = 0


@dataclass(frozen=True, slots=True)
class Output:
    """One batch's answer: class labels (or values) and, for classifiers, probabilities."""

    predictions: list[Label]
    probabilities: Tensor | None  # [rows, classes seen], float32
    experts: list[str]  # the expert that answered each row


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    created: float  # wall clock, for humans
    task: str
    n_features: int
    feature_names: tuple[str, ...] | None
    labels: tuple[Label, ...]
    expert_id: str  # the active expert: it answers wherever the selector is unsure
    experts: tuple[ExpertInfo, ...]
    device: torch.device
    forwards: Mapping[str, Forward] = field(repr=False)
    router: FrozenRouter | None = field(repr=False)  # None: the active expert answers all
    scaler: RunningStandardizer | None = field(repr=False)
    target_scaler: RunningStandardizer | None = field(repr=False)

    def predict(self, x: Tensor) -> Output:
        """Predict a float32 batch ``[rows, n_features]``; safe from any number of threads."""
        with torch.inference_mode():
            if self.scaler is not None:
                x = self.scaler.transform(x)
            x = x.to(self.device)
            experts = (self.router.route(x) if self.router is not None
                       else [self.expert_id] * x.shape[0])
            out = self._outputs(x, experts)
            if self.task == "regression":
                values = out.reshape(-1, 1)
                if self.target_scaler is not None:
                    values = self.target_scaler.inverse(values)
                return Output(values.reshape(-1).tolist(), None, experts)
            n = len(self.labels)
            if n == 0:  # nothing learned yet: no class exists to predict
                return Output([], torch.zeros(x.shape[0], 0), experts)
            probabilities = torch.softmax(out[:, :n], dim=1)
            indices = probabilities.argmax(dim=1).tolist()
            return Output([self.labels[i] for i in indices], probabilities, experts)

    def _outputs(self, x: Tensor, experts: list[str]) -> Tensor:
        first = experts[0] if experts else self.expert_id
        if all(e == first for e in experts):  # the common case: one forward pass
            return self.forwards[first](x).cpu()
        rows: dict[str, list[int]] = {}
        for row, expert in enumerate(experts):
            rows.setdefault(expert, []).append(row)
        parts = {e: self.forwards[e](x[r]).cpu() for e, r in rows.items()}
        sample = next(iter(parts.values()))
        out = sample.new_zeros((x.shape[0], *sample.shape[1:]))
        for expert, part in parts.items():
            out[rows[expert]] = part
        return out


class FrozenExperts:
    """Frozen copies of the pool's experts, remade only for experts that learned since.

    Only the active expert learns (and few adapt), so a publish copies one network or a few,
    however many exist.
    """

    def __init__(self) -> None:
        self._copies: dict[str, tuple[tuple[int, int], Forward]] = {}

    def update(self, pool: ExpertPool) -> dict[str, Forward]:
        fresh: dict[str, tuple[tuple[int, int], Forward]] = {}
        for id_, member in pool.members.items():
            cached = self._copies.get(id_)
            changes = (member.steps, member.adaptations)
            fresh[id_] = (cached if cached is not None and cached[0] == changes
                          else (changes, _frozen_forward(member.expert)))
        self._copies = fresh
        return {id_: forward for id_, (_, forward) in fresh.items()}


def expert_infos(pool: ExpertPool) -> tuple[ExpertInfo, ...]:
    s = pool.settings
    return tuple(
        ExpertInfo(m.id, m.created, m.samples_learned, m.last_active, m.id == pool.active_id,
                   m.wins,
                   m.band.bounds(s.decision_window, s.band_z, s.band_tolerance)
                   if m.band.ready else None,
                   None if m.accuracy != m.accuracy else m.accuracy,  # NaN: no answers yet
                   m.created_sample, m.last_active_sample)
        for m in pool.members.values())


def build_snapshot(engine: Engine, frozen: FrozenExperts | None = None) -> Snapshot | None:
    """A frozen copy of what serving needs from ``engine``; None before the model exists."""
    pool = engine.pool
    if pool is None or engine.n_features is None:
        return None
    features = engine.settings.features
    return Snapshot(
        version=engine.version,
        created=time.time(),
        task=engine.settings.task,
        n_features=engine.n_features,
        feature_names=tuple(features) if features is not None else None,
        labels=tuple(engine.labels.labels),
        expert_id=pool.active_id,
        experts=expert_infos(pool),
        device=engine.device,
        forwards=(frozen or FrozenExperts()).update(pool),
        router=pool.frozen_router(),
        scaler=copy.deepcopy(engine.scaler),
        target_scaler=copy.deepcopy(engine.target_scaler),
    )


def _frozen_forward(expert: object) -> Callable[[Tensor], Tensor]:
    if isinstance(expert, NeuralExpert):
        module = copy.deepcopy(expert.module).eval()
        module.requires_grad_(False)
        if expert.task == "classification":
            return module
        return lambda x: _squeeze(module, x)
    # A custom Expert: its predict must not mutate (the conformance checks say so).
    frozen = copy.deepcopy(expert)
    predict: Callable[[Tensor], Tensor] = frozen.predict  # type: ignore[attr-defined]
    return predict


def _squeeze(module: nn.Module, x: Tensor) -> Tensor:
    out: Tensor = module(x)
    return out.squeeze(-1)


class SnapshotBoard:
    """Holds the snapshot being served. One writer (the learner), any number of readers."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.current: Snapshot | None = None
        self._metrics = metrics
        self._fresh_at = time.monotonic()  # when the learner last confirmed it current
        self._lock = threading.Lock()  # only publishers contend; readers never lock
        self._frozen = FrozenExperts()  # used by the learner thread only

    def age(self) -> float:
        """Seconds since the served snapshot was last known to match the learner."""
        return time.monotonic() - self._fresh_at if self.current is not None else 0.0

    def publish_from(self, engine: Engine) -> Snapshot | None:
        """Publish ``engine``'s state unless it is already served; failures keep the old one."""
        current = self.current
        if current is not None and current.version == engine.version:
            self._fresh_at = time.monotonic()
            return current
        try:
            snapshot = build_snapshot(engine, self._frozen)
        except Exception as exc:  # any failure must leave the previous snapshot serving
            log.error("snapshot_failed", error=repr(exc), version=engine.version)
            self._count("failed")
            return current
        if snapshot is not None:
            self.publish(snapshot)
        return snapshot

    def publish(self, snapshot: Snapshot) -> None:
        with self._lock:
            if self.current is not None and snapshot.version < self.current.version:
                return  # never go backwards, whatever the order publishers ran in
            self.current = snapshot  # the single reference assignment readers rely on
            self._fresh_at = time.monotonic()
        self._count("ok")
        if self._metrics is not None:
            self._metrics.served_model_version.set(snapshot.version)

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.snapshot_publishes.labels(result=result).inc()
