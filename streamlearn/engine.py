"""The learning step: batch -> predict -> score -> learn, and predictions for unlabeled data.

Prequential (test-then-train): every labeled sample is predicted with the model as it was
before the sample, scored, and only then learned. Scaling follows the same rule for the
prediction: a batch is scaled with the statistics from before it. The statistics then take
the batch in and the learning step sees it scaled with them, so the very first batches
(when the statistics know nothing yet) never reach the network unscaled.
The engine owns no I/O; the daemon feeds it and publishes what it returns.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from streamlearn.drift.monitor import DriftEvent, DriftMonitor
from streamlearn.experts.expert import build_expert, resolve_device
from streamlearn.preprocess import LabelIndex, RunningStandardizer
from streamlearn.prequential import PrequentialStats
from streamlearn.protocols import Expert, StateDict
from streamlearn.settings import DriftSettings, EngineSettings, ModelSettings
from streamlearn.types import Prediction, Sample

#: The one expert until the expert pool exists; served and published as the answering expert.
ACTIVE_EXPERT = "0"


@dataclass(slots=True)
class Rejection:
    index: int  # position in the batch given to ``process``
    reason: str
    detail: str


@dataclass(slots=True)
class StepResult:
    labeled: int = 0
    correct: int = 0
    losses: Tensor | None = None  # per labeled sample, before the step: drift detectors' food
    predictions: list[Prediction] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    drift_events: list[DriftEvent] = field(default_factory=list)


class Engine:
    def __init__(self, model: ModelSettings, engine: EngineSettings | None = None,
                 drift: DriftSettings | None = None) -> None:
        self.settings = model
        drift = drift or DriftSettings()
        self.drift = DriftMonitor(drift) if drift.enabled else None
        self._watch_errors = drift.signal == "error"  # else the per-sample losses
        self.device = resolve_device(model.device)
        self.labels = LabelIndex(model.max_classes)
        self.stats = PrequentialStats((engine or EngineSettings()).rolling_window)
        self.version = 0  # optimizer steps taken; served and published as the model version
        self.samples_learned = 0
        self.samples_predicted = 0
        self.created_at = time.time()
        self.last_learned_at: float | None = None
        self.n_features: int | None = None
        self.expert: Expert | None = None
        self.scaler: RunningStandardizer | None = None
        self.target_scaler: RunningStandardizer | None = None
        if (count := model.feature_count()) is not None:
            self._build(count)

    @property
    def is_classifier(self) -> bool:
        return self.settings.task == "classification"

    def _build(self, n_features: int) -> None:
        self.n_features = n_features
        self.expert = build_expert(self.settings, n_features, self.device)
        if self.settings.standardize:
            self.scaler = RunningStandardizer(n_features)
            if not self.is_classifier:
                self.target_scaler = RunningStandardizer(1)

    def process(self, samples: Sequence[Sample]) -> StepResult:
        result = StepResult()
        if samples and self.expert is None:
            self._build(len(samples[0].x))
        kept, targets = self._admit(samples, result)
        if not kept:
            return result
        x = torch.tensor([samples[i].x for i in kept], dtype=torch.float32)
        x_test, x_train = x, x
        if self.scaler is not None:
            x_test = self.scaler.transform(x)
            self.scaler.update(x)
            x_train = self.scaler.transform(x)
        x_test, x_train = x_test.to(self.device), x_train.to(self.device)
        labeled = [j for j, i in enumerate(kept) if targets[i] is not None]
        unlabeled = [j for j, i in enumerate(kept) if targets[i] is None]
        if labeled:
            y = [targets[kept[j]] for j in labeled]
            self._learn(x_test[labeled], x_train[labeled], y, result)
        if unlabeled:
            ids = [samples[kept[j]].id for j in unlabeled]
            result.predictions = self._predict(x_train[unlabeled], ids)
        return result

    def _admit(self, samples: Sequence[Sample], result: StepResult
               ) -> tuple[list[int], dict[int, float | int | None]]:
        """Indices of usable samples and their encoded targets; the rest are rejected."""
        kept: list[int] = []
        targets: dict[int, float | int | None] = {}
        for i, sample in enumerate(samples):
            if len(sample.x) != self.n_features:
                result.rejections.append(Rejection(
                    i, "feature_count", f"x: {len(sample.x)} features, expected {self.n_features}"))
                continue
            target: float | int | None = None
            if sample.y is not None:
                if self.is_classifier:
                    target = self.labels.encode(sample.y)
                    if target is None:
                        result.rejections.append(Rejection(
                            i, "too_many_classes",
                            f"y: {sample.y!r} would be class {len(self.labels) + 1} "
                            f"> model.max_classes={self.labels.capacity}"))
                        continue
                else:
                    target = float(sample.y)
            kept.append(i)
            targets[i] = target
        return kept, targets

    def _learn(self, x_test: Tensor, x_train: Tensor, y_values: list[Any],
               result: StepResult) -> None:
        assert self.expert is not None
        out = self.expert.predict(x_test)
        if self.is_classifier:
            y = torch.tensor(y_values, dtype=torch.long, device=self.device)
            correct = out[:, : len(self.labels)].argmax(dim=1) == y
            losses = self.expert.learn(x_train, y)
            self.stats.update(losses.cpu(), correct=correct.cpu())
            result.correct = int(correct.sum())
            watched = (~correct).float() if self._watch_errors else losses
        else:
            y_raw = torch.tensor(y_values, dtype=torch.float32).unsqueeze(1)
            pred, y_scaled = out.cpu().unsqueeze(1), y_raw
            if self.target_scaler is not None:
                pred = self.target_scaler.inverse(pred)
                self.target_scaler.update(y_raw)
                y_scaled = self.target_scaler.transform(y_raw)
            losses = self.expert.learn(x_train, y_scaled.squeeze(1).to(self.device))
            self.stats.update(losses.cpu(), abs_error=(pred - y_raw).abs().squeeze(1))
            watched = losses
        if self.drift is not None:
            result.drift_events = self.drift.observe(ACTIVE_EXPERT, watched,
                                                     self.samples_learned, self.version)
        self.version += 1
        self.samples_learned += len(y_values)
        self.last_learned_at = time.time()
        result.labeled = len(y_values)
        result.losses = losses

    def _predict(self, x: Tensor, ids: list[str | None]) -> list[Prediction]:
        assert self.expert is not None
        out = self.expert.predict(x).cpu()
        self.samples_predicted += len(ids)
        if not self.is_classifier:
            values = out.unsqueeze(1)
            if self.target_scaler is not None:
                values = self.target_scaler.inverse(values)
            return [Prediction(id_, float(v), None, self.version)
                    for id_, v in zip(ids, values.squeeze(1).tolist(), strict=True)]
        n = len(self.labels)
        if n == 0:
            return [Prediction(id_, None, None, self.version) for id_ in ids]
        probs = torch.softmax(out[:, :n], dim=1)
        names = [str(label) for label in self.labels.labels]
        return [
            Prediction(id_, self.labels.decode(int(row.argmax())),
                       dict(zip(names, row.tolist(), strict=True)), self.version)
            for id_, row in zip(ids, probs, strict=True)
        ]

    def state_dict(self) -> StateDict:
        return {
            "n_features": self.n_features,
            "version": self.version,
            "samples_learned": self.samples_learned,
            "samples_predicted": self.samples_predicted,
            "created_at": self.created_at,
            "last_learned_at": self.last_learned_at,
            "labels": self.labels.state_dict(),
            "stats": self.stats.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "target_scaler": self.target_scaler.state_dict() if self.target_scaler else None,
            "expert": self.expert.state_dict() if self.expert else None,
            "drift": self.drift.state_dict() if self.drift else None,
            "rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state["n_features"] is not None:
            self._build(int(state["n_features"]))
        assert (self.expert is None) == (state["expert"] is None)
        if self.expert is not None:
            self.expert.load_state_dict(state["expert"])
        for name in ("scaler", "target_scaler"):
            part = getattr(self, name)
            if part is not None and state[name] is not None:
                part.load_state_dict(state[name])
        self.labels.load_state_dict(state["labels"])
        self.stats.load_state_dict(state["stats"])
        self.version = int(state["version"])
        self.samples_learned = int(state["samples_learned"])
        self.samples_predicted = int(state["samples_predicted"])
        # Absent from checkpoints written before serving existed.
        self.created_at = float(state.get("created_at", self.created_at))
        self.last_learned_at = state.get("last_learned_at")
        if self.drift is not None and state.get("drift") is not None:  # absent before drift
            self.drift.load_state_dict(state["drift"])
        torch.set_rng_state(state["rng"])
