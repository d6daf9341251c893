"""Checkpoints with their offsets, and the rebalance that moves partitions in and out.

Checkpoint order (the promise in docs/operations.md):

1. the sinks flush: every prediction and dead letter of a processed record has landed;
2. the state (engine + next offsets of every partition this lineage has read) is written
   durably by the store (tmp, fsync, rename, fsync dir);
3. only then are the same offsets committed to Kafka, for lag and cold start only;
4. a serving snapshot of the checkpointed state is published.

If step 1 fails (broker down) the checkpoint is deferred; if step 2 fails (disk full) it is
failed. Either way a checkpoint's offsets never run ahead of outputs that did not land, and
the next try waits ``retry_min_s``, doubling up to ``retry_max_s``.

A checkpoint is taken only at a record boundary: while a record is being learned (a batch
record spans several learning steps) the state holds part of it and offsets that do not,
so :meth:`Checkpointer.learning` marks that span, and a span that raised never closes: the
shutdown after a crash mid-record saves nothing, and the restart learns the record whole.

Rebalances: the client calls :meth:`on_revoked` and :meth:`on_assigned` on its IO thread,
which also sends the heartbeats, so they only move bookkeeping. The revoke checkpoint runs on
the learner thread right after the poll that revoked. The partitions given up are no longer
committed, so their new owner starts at the last checkpoint's commit and learns the records
since in its own lineage.

Every commit carries the lineage's id as its metadata. A partition assigned to this lineage
resumes where the lineage stopped, unless the group's commit is another lineage's and lies
further on: then another member learned those records, and this one resumes after them.
A commit of the lineage's own that lies further on (its newest checkpoint was lost and an
older one restored) is ignored, so those records are learned again, once. A partition the
restored checkpoint never read, whose commit is the lineage's own, was first read after that
checkpoint: it starts from its beginning (offset 0, or the reset policy where retention
deleted it), not from the commit, which would skip records the restored model never learned.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from streamlearn.checkpoint import FileCheckpointStore
from streamlearn.checkpoint.state import Barrier, CheckpointState
from streamlearn.core.engine import Engine
from streamlearn.core.logging import get_logger
from streamlearn.core.protocols import CheckpointStore
from streamlearn.core.types import DecodedRecord, Offsets, Record, TopicPartition
from streamlearn.daemon.buffer import InputBuffer
from streamlearn.daemon.endpoints import Endpoints
from streamlearn.metrics import Metrics
from streamlearn.settings import Settings

log = get_logger(__name__)


class Handoff(Protocol):
    """Partitions moving between replicas of one group (docs/scaling.md): a revoked
    partition's next offset is left for the replica that is assigned it next, which waits
    for it where the last holder has not left the partition yet (streamlearn/sync/handoff.py)."""

    def left(self, positions: Offsets) -> None: ...
    def resumes(self, partitions: list[TopicPartition]) -> tuple[Offsets, set[TopicPartition]]: ...
    def arrived(self, waiting: list[TopicPartition]) -> Offsets: ...


class Checkpointer:
    """Owns the offsets bookkeeping and decides when, and whether, a checkpoint is written.

    ``publish_snapshot`` is step 4 of the checkpoint order, called after a durable save;
    ``extra_state`` gives the late labels' state, saved in the same file as the engine's.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        engine: Engine,
        buffer: InputBuffer,
        endpoints: Endpoints,
        publish_snapshot: Callable[[], None],
        extra_state: Callable[[], dict[str, Any] | None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.engine = engine
        self.buffer = buffer
        self.endpoints = endpoints
        self.publish_snapshot = publish_snapshot
        self.extra_state = extra_state  # late labels' state, saved with the engine's
        self.store: CheckpointStore | None = (
            FileCheckpointStore(
                settings.checkpoint.dir,
                settings.checkpoint.keep,
                on_fallback=self._on_checkpoint_fallback,
            )
            if settings.checkpoint.enabled
            else None
        )
        # Replicas (sync.enabled) checkpoint only at sync rounds, all with one id.
        self.coordinated = settings.sync.enabled
        self.positions: Offsets = {}  # assigned partitions: next offset to learn
        self.known: Offsets = {}  # partitions not assigned now: where this lineage stopped
        self.lineage = uuid.uuid4().hex  # a cold start begins a new line of descent
        self.handoff: Handoff | None = None  # set by a replica of a group
        self._resuming: Offsets = {}  # assigned at a known offset, not yet checked
        self._unread: set[TopicPartition] = set()  # assigned with no offset of the lineage's
        # Assigned while another replica still holds them: no record is learned until its
        # handoff comes; the offset each must not start below (its checkpoint's).
        self._awaiting: Offsets = {}
        self.checkpoints = 0  # saved since start
        self.last_path: str | None = None
        self._dirty = False
        self._revoked = False  # a revoke asks for a checkpoint on the learner thread
        self._open_spans = 0  # records being learned now: no checkpoint may be taken
        self._failures = 0  # in a row: sets the backoff
        self._next_try = 0.0
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

    @contextmanager
    def learning(self) -> Iterator[None]:
        """Marks state changes that are whole only at the end; a span that raises stays
        open, so no checkpoint is taken of the half-learned state afterwards."""
        self._open_spans += 1
        self._dirty = True
        yield
        self._open_spans -= 1

    def advance(self, records: list[DecodedRecord]) -> None:
        """The records are learned: each partition's next offset moves past them."""
        for record in records:
            self.positions[record.record.tp] = record.record.offset + 1

    def resume(self, state: CheckpointState) -> None:
        """Where the restored lineage stopped; a partition seeks there once assigned."""
        self.known = dict(state.offsets)
        self.lineage = state.lineage or self.lineage

    def offsets(self) -> Offsets:
        """The next offset of every partition this lineage has read."""
        return {**self.known, **self.positions}

    # -- checkpoints -----------------------------------------------------------------------

    @property
    def due(self) -> bool:
        """A checkpoint is due: a revoke, or ``every_samples`` / ``every_seconds`` passed."""
        cfg = self.settings.checkpoint
        return self._revoked or (
            self._dirty
            and (
                self._since_checkpoint >= cfg.every_samples
                or time.monotonic() - self._last_checkpoint >= cfg.every_seconds
            )
        )

    @property
    def ready(self) -> bool:
        """A checkpoint is due and the backoff after a failed one has passed."""
        return self.due and time.monotonic() >= self._next_try

    def maybe_checkpoint(self) -> None:
        if self.coordinated:
            return  # the next sync round takes it, on every replica at once
        if self.ready:
            self.checkpoint("revoke" if self._revoked else "interval")

    def checkpoint(
        self,
        reason: str,
        flush_timeout_s: float | None = None,
        barrier: Barrier | None = None,
        landed: bool = False,
    ) -> bool:
        """Flush outputs, save state durably, then commit offsets. False if it did not.

        A replica (``coordinated``) saves only at a ``barrier``, once every replica's
        outputs landed (``landed``: the round checked them on all, replica.py)."""
        sink = self.endpoints.sink
        if self.coordinated and barrier is None:
            log.info("checkpoint_at_next_sync", reason=reason)
            return False
        if (not self._dirty and barrier is None) or sink is None:
            self._revoked = False
            return True
        if not (landed or self.landed(reason, flush_timeout_s)):
            return False
        if self.store is None:
            return self._commit()
        return self._save(reason, barrier)

    def landed(self, reason: str, flush_timeout_s: float | None = None) -> bool:
        """Whether the state may be saved now: no record is half learned and every output
        of the records learned has landed. False is counted, logged and backed off."""
        sink = self.endpoints.sink
        if sink is None:
            return True
        if self._open_spans:
            self.metrics.checkpoints.labels(result="mid_record").inc()
            log.warning(
                "checkpoint_refused",
                reason=reason,
                why="a record was only partly learned; the last checkpoint stands",
            )
            return False
        if not sink.flush(flush_timeout_s or self.settings.kafka.flush_timeout_s):
            return self._failed("outputs_pending", reason, "outputs not yet landed")
        return True

    def deferred(self, reason: str, why: str) -> None:
        """This checkpoint waits for something outside this process (a peer's outputs)."""
        self._failed("outputs_pending", reason, why)

    def _save(self, reason: str, barrier: Barrier | None) -> bool:
        assert self.store is not None
        state = CheckpointState(
            offsets=self.offsets() if barrier is None else barrier.offsets,
            engine=self.engine.state_dict(),
            model_settings=self.settings.model.model_dump(mode="json"),
            lineage=self.lineage,
            labels=self.extra_state(),
            sync=None if barrier is None else {"round": barrier.round, **barrier.sync},
        )
        began = time.perf_counter()
        try:
            path = self.store.save(state.to_dict())
        except OSError as exc:
            return self._failed("failed", reason, str(exc))
        elapsed = time.perf_counter() - began
        self.metrics.checkpoint_duration.observe(elapsed)
        self.metrics.checkpoints.labels(result="ok").inc()
        self.metrics.checkpoint_bytes.set(path.stat().st_size)
        self.metrics.checkpoint_done()
        self.checkpoints += 1
        self.last_path = str(path)
        log.info(
            "checkpoint_saved",
            reason=reason,
            path=str(path),
            seconds=round(elapsed, 4),
            samples_learned=self.engine.samples_learned,
        )
        committed = self._commit()
        self.publish_snapshot()
        return committed

    def _failed(self, result: str, reason: str, why: str) -> bool:
        cfg = self.settings.checkpoint
        self._failures += 1
        wait = min(cfg.retry_min_s * 2 ** (self._failures - 1), cfg.retry_max_s)
        self._next_try = time.monotonic() + wait
        self.metrics.checkpoints.labels(result=result).inc()
        level = log.error if result == "failed" else log.warning
        level(
            "checkpoint_" + ("failed" if result == "failed" else "deferred"),
            reason=reason,
            why=why,
            retry_in_s=round(wait, 3),
            failures=self._failures,
        )
        return False

    def _commit(self) -> bool:
        # A replica commits only what the whole group saved (commit_group, at a round).
        if self.endpoints.source is not None and not self.coordinated:
            self.endpoints.source.commit(dict(self.positions), self.lineage)
        self._dirty = self._revoked = False
        self._failures = 0
        self._next_try = 0.0
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        return True

    def commit_group(self, offsets: Offsets) -> None:
        """Every replica saved the checkpoint just saved: commit its offsets of the
        partitions assigned here, and keep its file past pruning until the next such id, so
        the newest id Kafka's commits reach stays held while a replica fails to save for
        longer than ``checkpoint.keep`` rounds."""
        if self.store is not None and self.last_path is not None:
            self.store.protect(Path(self.last_path))
        mine = {tp: o for tp, o in offsets.items() if tp in self.positions}
        if self.endpoints.source is not None and mine:
            self.endpoints.source.commit(mine, self.lineage)

    def _on_checkpoint_fallback(self, path: Any, error: str) -> None:
        self.metrics.checkpoint_fallbacks.inc()

    # -- rebalance: bookkeeping on the client's IO thread, the rest on the learner's -------

    def on_assigned(self, partitions: list[TopicPartition]) -> None:
        source = self.endpoints.source
        assert source is not None
        seek = {tp: self.known.pop(tp) for tp in partitions if tp in self.known}
        if self.handoff is not None:
            ready, waiting = self.handoff.resumes(partitions)
            for tp, offset in ready.items():
                seek[tp] = max(seek.get(tp, 0), offset)
            self._awaiting.update({tp: seek.pop(tp, 0) for tp in waiting})
        if seek:
            source.seek(seek)
            self.positions.update(seek)
            self._resuming.update(seek)
        self._unread.update(tp for tp in partitions if tp not in seek and tp not in self._awaiting)
        self.metrics.rebalances.labels(kind="assigned").inc()
        log.info(
            "partitions_assigned",
            partitions=_names(partitions),
            seek=_named(seek),
        )

    def on_revoked(self, partitions: list[TopicPartition]) -> None:
        dropped = self.buffer.drop(partitions)
        for tp in partitions:
            self._resuming.pop(tp, None)
            self._unread.discard(tp)
            self._awaiting.pop(tp, None)
            if tp in self.positions:
                self.known[tp] = self.positions.pop(tp)
            self.metrics.forget_partition(tp.topic, tp.partition)
        if self.handoff is not None:
            self.handoff.left({tp: self.known[tp] for tp in partitions if tp in self.known})
        self._revoked = self._dirty
        self.metrics.rebalances.labels(kind="revoked").inc()
        log.info(
            "partitions_revoked", partitions=_names(partitions), buffered_records_dropped=dropped
        )

    def reconcile(self, records: list[Record]) -> list[Record]:
        """After a poll, on the learner thread: a partition assigned at this lineage's offset
        moves on to the group's commit if another lineage committed further on. The poll's
        records of such a partition are dropped: the seek fetches them again from there."""
        if self._awaiting:
            records = self._await_handoffs(records)
        if not (self._resuming or self._unread):
            return records
        source = self.endpoints.source
        assert source is not None
        ahead: Offsets = {}
        for tp, ours in self._resuming.items():
            commit = source.committed(tp)
            if commit is not None and commit[0] > ours and commit[1] != self.lineage:
                ahead[tp] = commit[0]
        restart: Offsets = {}
        for tp in self._unread:
            commit = source.committed(tp)
            if commit is not None and commit[0] > 0 and commit[1] == self.lineage:
                restart[tp] = 0
        self._resuming, self._unread = {}, set()
        if ahead:
            log.info("partitions_resumed_from_group", offsets=_named(ahead))
        if restart:
            log.warning(
                "partitions_restarted",
                offsets=_named(restart),
                why="committed by a newer checkpoint of this lineage than the one restored",
            )
        moved = {**ahead, **restart}
        if not moved:
            return records
        source.seek(moved)
        self.positions.update(moved)
        return [r for r in records if r.tp not in moved]

    def _await_handoffs(self, records: list[Record]) -> list[Record]:
        """Partitions another replica still held when assigned here: those whose handoff
        came seek to it; the records polled of any of them are dropped (the seek, or the
        next, fetches them again)."""
        assert self.handoff is not None and self.endpoints.source is not None
        arrived = self.handoff.arrived(list(self._awaiting))
        moved = {tp: max(self._awaiting.pop(tp), offset) for tp, offset in arrived.items()}
        if moved:
            self.endpoints.source.seek(moved)
            self.positions.update(moved)
        stale = set(moved) | set(self._awaiting)
        return [r for r in records if r.tp not in stale]


def _named(offsets: Offsets) -> dict[str, int]:
    return {f"{tp.topic}/{tp.partition}": o for tp, o in offsets.items()}


def _names(partitions: list[TopicPartition]) -> list[str]:
    return [f"{tp.topic}/{tp.partition}" for tp in partitions]
