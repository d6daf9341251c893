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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from streamlearn.engine import ACTIVE_EXPERT
from streamlearn.experts.expert import NeuralExpert
from streamlearn.logging import get_logger
from streamlearn.preprocess import RunningStandardizer
from streamlearn.types import Label

if TYPE_CHECKING:
    from streamlearn.engine import Engine
    from streamlearn.metrics import Metrics

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
    loss_band: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class Output:
    """One batch's answer: class labels (or values) and, for classifiers, probabilities."""

    predictions: list[Label]
    probabilities: Tensor | None  # [rows, classes seen], float32


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    created: float  # wall clock, for humans
    task: str
    n_features: int
    feature_names: tuple[str, ...] | None
    labels: tuple[Label, ...]
    expert_id: str
    experts: tuple[ExpertInfo, ...]
    device: torch.device
    forward: Callable[[Tensor], Tensor] = field(repr=False)
    scaler: RunningStandardizer | None = field(repr=False)
    target_scaler: RunningStandardizer | None = field(repr=False)

    def predict(self, x: Tensor) -> Output:
        """Predict a float32 batch ``[rows, n_features]``; safe from any number of threads."""
        with torch.inference_mode():
            if self.scaler is not None:
                x = self.scaler.transform(x)
            out = self.forward(x.to(self.device)).cpu()
            if self.task == "regression":
                values = out.reshape(-1, 1)
                if self.target_scaler is not None:
                    values = self.target_scaler.inverse(values)
                return Output(values.reshape(-1).tolist(), None)
            n = len(self.labels)
            if n == 0:  # nothing learned yet: no class exists to predict
                return Output([], torch.zeros(x.shape[0], 0))
            probabilities = torch.softmax(out[:, :n], dim=1)
            indices = probabilities.argmax(dim=1).tolist()
            return Output([self.labels[i] for i in indices], probabilities)


def build_snapshot(engine: Engine) -> Snapshot | None:
    """A frozen copy of what serving needs from ``engine``; None before the model exists."""
    if engine.expert is None or engine.n_features is None:
        return None
    features = engine.settings.features
    return Snapshot(
        version=engine.version,
        created=time.time(),
        task=engine.settings.task,
        n_features=engine.n_features,
        feature_names=tuple(features) if features is not None else None,
        labels=tuple(engine.labels.labels),
        expert_id=ACTIVE_EXPERT,
        experts=(ExpertInfo(ACTIVE_EXPERT, engine.created_at, engine.samples_learned,
                            engine.last_learned_at, active=True),),
        device=engine.device,
        forward=_frozen_forward(engine.expert),
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
            snapshot = build_snapshot(engine)
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
