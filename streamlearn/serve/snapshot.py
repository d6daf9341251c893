"""Immutable serving snapshots, and the board that holds the one being served.

A snapshot owns frozen copies of everything a prediction needs (networks in eval mode, the
selector, scaler statistics, label names) behind one :class:`~streamlearn.predictor.Predictor`,
the same forward path the learner uses. It is built from plain state (see
:mod:`streamlearn.serve.frozen`): in a serving process from the files the learner publishes,
in-process straight from an engine. Readers take ``board.current`` once per request and use
only that object: a request never sees half of one model version and half of the next, and
never waits for a learning step.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torch import Tensor

from streamlearn.logging import get_logger
from streamlearn.predictor import Output, Predictor
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
    # Mean window loss this expert shows on its own regime; None until it learned enough.
    loss_band: tuple[float, float] | None = None
    accuracy: float | None = None  # prequential, over about the last 1000 answers
    created_sample: int = 0  # stream positions (labeled samples taken in)
    last_active_sample: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One published model version, frozen: everything a prediction needs.

    Immutable and shared by request threads; the learner publishes a new one, never edits it.
    """

    version: int
    created: float  # wall clock when the learner published it
    task: str
    n_features: int
    feature_names: tuple[str, ...] | None
    labels: tuple[Label, ...]
    expert_id: str  # the active expert: it answers wherever the selector is unsure
    experts: tuple[ExpertInfo, ...]
    predictor: Predictor = field(repr=False)
    # The learner run that made it: a restarted learner restores an older checkpoint, and
    # its versions start below the last one served without being stale.
    generation: str = ""

    def predict(self, x: Tensor) -> Output:
        """Predict a float32 batch ``[rows, n_features]``; safe from any number of threads."""
        return self.predictor.predict(x)


def build_snapshot(engine: Engine) -> Snapshot | None:
    """A frozen copy of what serving needs from ``engine``; None before the model exists."""
    from streamlearn.serve.frozen import InProcessFreezer

    return InProcessFreezer(engine).freeze()


class SnapshotBoard:
    """Holds the snapshot being served. Publishers contend on a lock; readers never lock.

    ``publish_from`` builds snapshots from an engine in this process (tests, tools); a
    serving process is fed by :class:`~streamlearn.runtime.snapshots.SnapshotReader` instead.
    """

    def __init__(
        self, metrics: Metrics | None = None, on_publish: Callable[[Snapshot], None] | None = None
    ) -> None:
        self.current: Snapshot | None = None
        self._metrics = metrics
        self._on_publish = on_publish
        self._fresh_at = time.monotonic()  # when the learner last confirmed it current
        self._lock = threading.Lock()

    def age(self) -> float:
        """Seconds since the served snapshot was last known to match the learner."""
        return time.monotonic() - self._fresh_at if self.current is not None else 0.0

    def confirm(self, fresh_at: float) -> None:
        """The learner said, at monotonic time ``fresh_at``, that the snapshot is current."""
        self._fresh_at = max(self._fresh_at, fresh_at)

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
            self._count("ok")
        return snapshot

    def publish(self, snapshot: Snapshot) -> None:
        with self._lock:
            current = self.current
            if (
                current is not None
                and snapshot.generation == current.generation
                and snapshot.version < current.version
            ):
                return  # never go backwards within one learner run
            self.current = snapshot  # the single reference assignment readers rely on
            self._fresh_at = time.monotonic()
        if self._on_publish is not None:
            self._on_publish(snapshot)

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.snapshot_publishes.labels(result=result).inc()
