"""Checkpoints with their offsets, and the rebalance that moves partitions in and out.

Checkpoint order (the promise in docs/operations.md):

1. the sinks flush: every prediction and dead letter of a processed record has landed;
2. the state (engine + next offsets of every partition this lineage has read) is written
   durably by the store (tmp, fsync, rename, fsync dir);
3. only then are the same offsets committed to Kafka, for lag and cold start only;
4. a serving snapshot of the checkpointed state is published.

If step 1 fails (broker down) the checkpoint is skipped and retried later: a checkpoint's
offsets never run ahead of outputs that did not land.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from streamlearn.buffer import InputBuffer
from streamlearn.checkpoint import FileCheckpointStore
from streamlearn.checkpoint.state import CheckpointState
from streamlearn.daemon.endpoints import Endpoints
from streamlearn.engine import Engine
from streamlearn.logging import get_logger
from streamlearn.metrics import Metrics
from streamlearn.settings import Settings
from streamlearn.types import DecodedRecord, Offsets, TopicPartition

log = get_logger(__name__)


class Checkpointer:
    """Owns the offsets bookkeeping and decides when, and whether, a checkpoint is written.

    ``publish_snapshot`` is step 4 of the checkpoint order, called after a durable save.
    """

    def __init__(self, settings: Settings, metrics: Metrics, engine: Engine,
                 buffer: InputBuffer, endpoints: Endpoints,
                 publish_snapshot: Callable[[], None]) -> None:
        self.settings = settings
        self.metrics = metrics
        self.engine = engine
        self.buffer = buffer
        self.endpoints = endpoints
        self.publish_snapshot = publish_snapshot
        self.store = (FileCheckpointStore(settings.checkpoint.dir, settings.checkpoint.keep,
                                          on_fallback=self._on_checkpoint_fallback)
                      if settings.checkpoint.enabled else None)
        self.positions: Offsets = {}  # assigned partitions: next offset to learn
        self.known: Offsets = {}  # partitions not assigned now: where this lineage stopped
        self.checkpoints = 0  # saved since start
        self.last_path: str | None = None
        self._dirty = False
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()

    @property
    def dirty(self) -> bool:
        """Whether something was learned (or adapted) since the last checkpoint."""
        return self._dirty

    def mark_dirty(self, samples: int = 0) -> None:
        """Note state worth a checkpoint; ``samples`` count towards ``every_samples``."""
        self._dirty = True
        self._since_checkpoint += samples

    def advance(self, records: list[DecodedRecord]) -> None:
        """The records are learned: each partition's next offset moves past them."""
        for record in records:
            self.positions[record.record.tp] = record.record.offset + 1

    def resume(self, offsets: Offsets) -> None:
        """Where the restored lineage stopped; a partition seeks there once assigned."""
        self.known = dict(offsets)

    def offsets(self) -> Offsets:
        """The next offset of every partition this lineage has read."""
        return {**self.known, **self.positions}

    # -- checkpoints -----------------------------------------------------------------------

    def maybe_checkpoint(self) -> None:
        cfg = self.settings.checkpoint
        if self._dirty and (self._since_checkpoint >= cfg.every_samples or
                            time.monotonic() - self._last_checkpoint >= cfg.every_seconds):
            self.checkpoint("interval")

    def checkpoint(self, reason: str, flush_timeout_s: float | None = None) -> bool:
        """Flush outputs, save state durably, then commit offsets. False if it did not."""
        sink = self.endpoints.sink
        if not self._dirty or sink is None:
            return True
        timeout = flush_timeout_s or self.settings.kafka.flush_timeout_s
        if not sink.flush(timeout):
            self.metrics.checkpoints.labels(result="outputs_pending").inc()
            log.warning("checkpoint_deferred", reason=reason, why="outputs not yet landed")
            return False
        if self.store is None:
            return self._commit()
        state = CheckpointState(offsets=self.offsets(),
                                engine=self.engine.state_dict(),
                                model_settings=self.settings.model.model_dump(mode="json"))
        began = time.perf_counter()
        try:
            path = self.store.save(state.to_dict())
        except OSError as exc:
            self.metrics.checkpoints.labels(result="failed").inc()
            log.error("checkpoint_failed", reason=reason, error=str(exc))
            return False
        elapsed = time.perf_counter() - began
        self.metrics.checkpoint_duration.observe(elapsed)
        self.metrics.checkpoints.labels(result="ok").inc()
        self.metrics.checkpoint_bytes.set(path.stat().st_size)
        self.metrics.checkpoint_done()
        self.checkpoints += 1
        self.last_path = str(path)
        log.info("checkpoint_saved", reason=reason, path=str(path), seconds=round(elapsed, 4),
                 samples_learned=self.engine.samples_learned)
        committed = self._commit()
        self.publish_snapshot()
        return committed

    def _commit(self) -> bool:
        if self.endpoints.source is not None:
            self.endpoints.source.commit(dict(self.positions))
        self._dirty = False
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        return True

    def _on_checkpoint_fallback(self, path: Any, error: str) -> None:
        self.metrics.checkpoint_fallbacks.inc()

    # -- rebalance (runs on the client's IO thread while the learner waits in poll) --------

    def on_assigned(self, partitions: list[TopicPartition]) -> None:
        source = self.endpoints.source
        assert source is not None
        seek = {tp: self.known.pop(tp) for tp in partitions if tp in self.known}
        if seek:
            source.seek(seek)
            self.positions.update(seek)
        self.metrics.rebalances.labels(kind="assigned").inc()
        log.info("partitions_assigned", partitions=[f"{tp.topic}/{tp.partition}"
                                                    for tp in partitions],
                 seek={f"{tp.topic}/{tp.partition}": o for tp, o in seek.items()})

    def on_revoked(self, partitions: list[TopicPartition]) -> None:
        self.checkpoint("revoke")
        dropped = self.buffer.drop(partitions)
        for tp in partitions:
            if tp in self.positions:
                self.known[tp] = self.positions.pop(tp)
        self.metrics.rebalances.labels(kind="revoked").inc()
        log.info("partitions_revoked", partitions=[f"{tp.topic}/{tp.partition}"
                                                   for tp in partitions],
                 buffered_records_dropped=dropped)
