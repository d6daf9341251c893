"""The board that holds the snapshot being served, and snapshots built in-process.

Publishers contend on a lock; readers take ``board.current`` once per request and never
lock. A serving process is fed from the learner's files (``runtime/snapshots.py``); tests
and tools publish straight from an engine in their own process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from streamlearn.core.logging import get_logger
from streamlearn.serve.frozen import InProcessFreezer
from streamlearn.serve.snapshot import Snapshot

if TYPE_CHECKING:
    from streamlearn.core.engine import Engine
    from streamlearn.metrics import Metrics

log = get_logger(__name__)


def build_snapshot(engine: Engine) -> Snapshot | None:
    """A frozen copy of what serving needs from ``engine``; None before the model exists."""
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
