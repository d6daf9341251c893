"""The daemon's lifecycle and its learner loop: restore, connect, learn, shut down.

One learner thread (the one calling :meth:`Daemon.run`) owns the consumer, the engine and
every piece of mutable learning state. Other threads only call :meth:`Daemon.request_stop`
and read :attr:`Daemon.progress`, a frozen value replaced by one reference assignment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kafka.errors import KafkaError
from structlog.contextvars import bound_contextvars

from streamlearn.checkpoint.state import CheckpointState, check_compatible
from streamlearn.core.codecs import Codec
from streamlearn.core.drift.monitor import DriftEvent
from streamlearn.core.engine import Engine, StepResult
from streamlearn.core.errors import ModelError
from streamlearn.core.experts.member import PoolEvent
from streamlearn.core.logging import get_logger
from streamlearn.core.protocols import CheckpointStore, Sink, Source
from streamlearn.core.types import (
    DeadLetter,
    DecodedRecord,
    Label,
    Offsets,
    Record,
    Sample,
    TopicPartition,
)
from streamlearn.daemon.batching import AdaptiveBatch
from streamlearn.daemon.buffer import InputBuffer
from streamlearn.daemon.challenging import ChallengerKeeper
from streamlearn.daemon.checkpointer import Checkpointer
from streamlearn.daemon.endpoints import (
    Endpoints,
    SinkFactory,
    SnapshotPublisher,
    SourceFactory,
)
from streamlearn.daemon.gauges import Gauges, Progress
from streamlearn.daemon.guarding import GuardKeeper
from streamlearn.daemon.history import EventHistory
from streamlearn.daemon.labeling import LateLabels
from streamlearn.daemon.reporting import Reporter
from streamlearn.metrics import Metrics
from streamlearn.serve.board import SnapshotBoard
from streamlearn.serve.inbox import HTTP_RECORD, Inbox
from streamlearn.settings import Settings
from streamlearn.sync.replica import Replica, replica_settings

log = get_logger(__name__)

# On shutdown the broker may be gone: bound every wait so SIGTERM finishes inside 10 s
# (a scale-out replica's last round also waits for its peers: docs/operations.md, Shutdown).
_SHUTDOWN_FLUSH_S = 3.0
_SHUTDOWN_CLOSE_S = 2.0
# Polling more often than this between micro-batches buys nothing (heartbeats run on the
# client's own thread) and costs a fetch round each time.
_POLL_AT_LEAST_EVERY_S = 1.0


class Daemon:
    """Learns online from a source; made of four parts, each passed what it uses:

    - this class: lifecycle (start, restore, connect, run, shutdown, request_stop) and the
      learner loop (poll, decode, flow control, learn, serve the inbox, snapshots);
    - :class:`~streamlearn.daemon.checkpointer.Checkpointer`: checkpoints, the offsets
      bookkeeping (``positions``, ``known``) and the rebalance callbacks;
    - :class:`~streamlearn.daemon.reporting.Reporter`: metrics, logs, events, dead letters
      and histories of what each learning step did, and the counts it keeps;
    - :class:`~streamlearn.daemon.gauges.Gauges`: the gauges and :class:`Progress`.

    ``snapshots`` publishes serving snapshots (a :class:`SnapshotBoard` unless given).
    """

    def __init__(
        self,
        settings: Settings,
        source_factory: SourceFactory,
        sink_factory: SinkFactory,
        metrics: Metrics | None = None,
        *,
        snapshots: SnapshotPublisher | None = None,
    ) -> None:
        # A replica of a group learns in smaller steps (sync.split_batch; docs/scaling.md),
        # sized for the whole group until the one it joins says otherwise (restore).
        self._unsplit = settings
        settings = replica_settings(settings)
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.engine = Engine(
            settings.model, settings.engine, settings.drift, settings.experts, settings.adapt
        )
        self.codec = Codec.from_settings(settings.model, settings.engine)
        self._source_factory = source_factory
        self._sink_factory = sink_factory
        self.buffer = InputBuffer(settings.engine.max_batch, settings.engine.max_wait_ms / 1000)
        self.batching = AdaptiveBatch(
            settings.engine.max_batch,
            settings.engine.max_adaptive_batch,
            settings.engine.lag_budget_s,
        )
        self.metrics.batch_target.set(self.batching.size)
        # Samples per input record, smoothed: the consumer's lag is in records, the backlog
        # that sizes the batch in samples (batch records hold many).
        self._samples_per_record = 1.0
        self.endpoints = Endpoints()
        self.guard = GuardKeeper(
            settings.labels.guard,
            self.engine,
            self.metrics,
            self.endpoints,
            publish=self._publish_snapshot,
        )
        self.challenger = ChallengerKeeper(
            settings,
            self.engine,
            self.metrics,
            self.endpoints,
            publish=self._publish_snapshot,
            guard=self.guard,
        )
        self.late_labels = LateLabels(
            settings, self.metrics, self.codec, self.guard, self.challenger
        )
        self.checkpointer = Checkpointer(
            settings,
            self.metrics,
            self.engine,
            self.buffer,
            self.endpoints,
            publish_snapshot=self._publish_snapshot,
            extra_state=self.late_labels.state_dict,
        )
        # One of a group of replicas learning one model (sync.enabled; docs/scaling.md).
        self.replica = (
            Replica(
                settings.sync,
                self.engine,
                self.checkpointer,
                self.metrics,
                self._publish_snapshot,
                # The group's drift and pool events, reported where a step's are.
                report=lambda result: self.reporter.publish(result),
                learn=self._learn_held,
            )
            if settings.sync.enabled
            else None
        )
        self.ready = threading.Event()  # connected to the broker and learning
        # Restored and published: what serves this learner may answer for it from now on.
        self.restored = threading.Event()
        # Called on the thread that runs the daemon once it restored, before it connects
        # (the learner process installs its graceful stop there).
        self.on_restored: Callable[[], None] = lambda: None
        # Serving's two windows into the learner: snapshots out, samples and requests in.
        self.snapshots: SnapshotPublisher = (
            SnapshotBoard(self.metrics) if snapshots is None else snapshots
        )
        self.inbox = Inbox(settings.serve.learn_queue_samples)
        self.drift_history: EventHistory[DriftEvent] = EventHistory(settings.drift.history)
        self.expert_history: EventHistory[PoolEvent] = EventHistory(settings.experts.history)
        self.reporter = Reporter(
            self.metrics, self.engine, self.endpoints, self.drift_history, self.expert_history
        )
        self.gauges = Gauges(
            settings,
            self.metrics,
            self.engine,
            self.buffer,
            self.endpoints,
            self.checkpointer,
            self.reporter,
        )
        self.gauges.served_view = self.late_labels.view
        self._last_publish = 0.0
        # Slow steps must not keep poll() away past kafka.max_poll_interval_ms, or the group
        # takes the member out: poll at least every second, or a quarter of that interval.
        self._poll_every_s = min(
            _POLL_AT_LEAST_EVERY_S, settings.kafka.max_poll_interval_ms / 1000 / 4
        )
        self._stop = threading.Event()
        self._paused = False

    # -- the parts' state, where callers have always found it ------------------------------

    @property
    def source(self) -> Source | None:
        return self.endpoints.source

    @property
    def sink(self) -> Sink | None:
        return self.endpoints.sink

    @property
    def store(self) -> CheckpointStore | None:
        return self.checkpointer.store

    @property
    def positions(self) -> Offsets:
        return self.checkpointer.positions

    @property
    def known(self) -> Offsets:
        return self.checkpointer.known

    @property
    def progress(self) -> Progress:
        return self.gauges.progress

    @property
    def _last_gauges(self) -> float:  # tests force a gauge update by zeroing it
        return self.gauges.last_update

    @_last_gauges.setter
    def _last_gauges(self, value: float) -> None:
        self.gauges.last_update = value

    def checkpoint(self, reason: str, flush_timeout_s: float | None = None) -> bool:
        """Flush outputs, save state durably, then commit offsets. False if it did not."""
        return self.checkpointer.checkpoint(reason, flush_timeout_s)

    def on_assigned(self, partitions: list[TopicPartition]) -> None:
        self.checkpointer.on_assigned(partitions)

    def on_revoked(self, partitions: list[TopicPartition]) -> None:
        self.checkpointer.on_revoked(partitions)

    # -- lifecycle -------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Restore, connect, learn until asked to stop, then checkpoint and close."""
        if not self.start():  # stopped before the broker was reached: nothing to save
            log.info("daemon_stopped", samples_learned=self.engine.samples_learned, connected=False)
            return
        try:
            while not self._stop.is_set():
                self.step()
        finally:
            self.shutdown()

    def start(self) -> bool:
        """Restore the newest valid checkpoint and connect; False if stopped meanwhile."""
        self.restore()
        self._publish_snapshot()  # serving answers from the restored model, broker or not
        self._publish_progress()
        self.restored.set()
        self.on_restored()
        if not self._connect():
            return False
        self.ready.set()
        log.info(
            "daemon_ready",
            topic=self.settings.kafka.input_topic,
            group=self.settings.kafka.group_id,
        )
        return True

    def restore(self) -> None:
        """The newest valid checkpoint; a replica restores the newest id its group holds."""
        if self.store is not None:
            removed = self.store.remove_partial()
            if removed:
                log.warning("checkpoint_partial_removed", files=[str(p) for p in removed])
        if self.replica is not None:
            size = self.replica.join()
            if size != self.replica.world_max:
                self._learn_as_one_of(size)
            self.replica.restore(self._apply_checkpoint)
            return
        if self.store is None:
            return
        loaded = self.store.load_latest()
        if loaded is None:
            if self.store.files():
                log.warning("checkpoint_none_valid", action="cold start from committed offsets")
            else:
                log.warning("checkpoint_none", action="cold start from committed offsets")
            return
        state = CheckpointState.from_dict(loaded.state)
        self._apply_checkpoint(state, loaded.path, skipped=len(loaded.skipped))

    def _learn_as_one_of(self, size: int) -> None:
        """Step settings for a group that formed with ``size`` of its replicas (some did
        not come within sync.form_wait_s): the group then steps per sample as one learner
        would, as a whole one does. Nothing is learned yet: the network is built again."""
        settings = replica_settings(self._unsplit, size)
        self.settings = settings
        self.engine.reconfigure(settings.model, settings.engine)
        self.buffer.max_batch = settings.engine.max_batch
        self.batching = AdaptiveBatch(
            settings.engine.max_batch,
            settings.engine.max_adaptive_batch,
            settings.engine.lag_budget_s,
        )
        self.metrics.batch_target.set(self.batching.size)

    def _apply_checkpoint(self, state: CheckpointState, path: Path, skipped: int = 0) -> None:
        check_compatible(state, self.settings.model, path)
        self.engine.load_state_dict(state.engine)
        self.late_labels.load_state_dict(state.labels)
        self.checkpointer.resume(state)
        self._sync_codec()
        self.metrics.checkpoint_done()
        log.info(
            "checkpoint_restored",
            path=str(path),
            skipped=skipped,
            samples_learned=self.engine.samples_learned,
            offsets={f"{tp.topic}/{tp.partition}": o for tp, o in self.known.items()},
            **self.late_labels.restored(),
        )

    def _last_checkpoint(self) -> bool:
        """The shutdown's checkpoint: a replica's is its group's last round (every replica
        saves in it), a single learner's its own."""
        if self.replica is not None and self.replica.group is not None:
            return self.replica.leave()
        return self.checkpoint("shutdown", flush_timeout_s=_SHUTDOWN_FLUSH_S)

    def _connect(self) -> bool:
        delay = 0.5
        while not self._stop.is_set():
            try:
                self.endpoints.sink = self.sink or self._sink_factory(self.metrics)
                self.endpoints.source = self._source_factory(self)
                return True
            except KafkaError as exc:
                log.warning("broker_unreachable", error=str(exc), retry_in_s=delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
        return False

    def shutdown(self) -> None:
        """Learn what serving queued, checkpoint (outputs flushed first), commit, close."""
        if self.sink is not None:
            self._serve_inbox()
        if not self._last_checkpoint():
            log.warning(
                "checkpoint_skipped",
                reason="shutdown",
                why="the checkpoint could not be written (see above); the restart "
                "resumes from the last one",
            )
        if self.source is not None:
            # Commit only what the last checkpoint holds; never ahead of it (a replica's
            # last one may be an id not every replica saved: it commits none).
            held = not (self.checkpointer.dirty or self.checkpointer.coordinated)
            self.source.close(commit=dict(self.positions) if held else None)
        if self.sink is not None:
            self.sink.close()
        if self.replica is not None:
            self.replica.close()
        self._publish_progress()
        log.info("daemon_stopped", samples_learned=self.engine.samples_learned)

    # -- the loop --------------------------------------------------------------------------

    def step(self) -> None:
        assert self.source is not None
        busy = (self.buffer.due() and not self._outputs_full()) or self.inbox.pending()
        wait = (
            0.0
            if busy
            else min(self.buffer.wait_left(), self.settings.kafka.poll_timeout_ms / 1000)
        )
        records = self.checkpointer.reconcile(
            self.source.poll(self.settings.kafka.max_poll_records, wait)
        )
        if records:
            self._accept(records)
        self._flow_control()
        began = time.monotonic()
        while self.buffer.due() and not self._stop.is_set() and not self._outputs_full():
            self._learn(self.buffer.take())
            # A poll of batch records can hold a minute of work: /v1/status, the demo and
            # the gauges must not freeze for that long (each is rate-limited inside), and
            # checkpoints fall due between records as between polls.
            self._maybe_update_gauges()
            self.checkpointer.maybe_checkpoint()
            if self._paused or time.monotonic() - began >= self._poll_every_s:
                break  # back to poll(): the group must see this member within its interval
        self._serve_inbox()
        if self.replica is not None:
            self.replica.maybe_sync()
        self.checkpointer.maybe_checkpoint()
        self._maybe_publish_snapshot()
        self._maybe_update_gauges()

    def _accept(self, records: list[Any]) -> None:
        if self.late_labels.enabled:
            late = [r for r in records if self.late_labels.is_label(r)]
            if late:
                self._learn_labels(late)
                records = [r for r in records if not self.late_labels.is_label(r)]
                if not records:
                    return
        decoded = [self.codec.decode(record) for record in records]
        self.buffer.add(decoded)
        carried = sum(len(d.samples) + len(d.dead_letters) for d in decoded) / len(decoded)
        self._samples_per_record += 0.2 * (carried - self._samples_per_record)
        self.reporter.consumed(records[0].topic, len(records))

    def _flow_control(self) -> None:
        """Pause input while the learner is behind or outputs cannot land; keep polling, so
        the member stays in its group."""
        assert self.source is not None and self.sink is not None
        self.sink.retry()
        limit = self.settings.kafka.max_buffered_samples
        if not self._paused and (self.buffer.samples > limit or self._outputs_full()):
            self.source.pause()
            self._paused = True
            log.info(
                "input_paused", buffered=self.buffer.samples, outputs_pending=self.sink.pending
            )
        elif (
            self._paused
            and self.buffer.samples < limit // 2
            and self.sink.pending < self.settings.kafka.max_pending_outputs // 2
        ):
            self.source.resume()
            self._paused = False
            log.info("input_resumed", buffered=self.buffer.samples)
        self.metrics.partitions_paused.set(int(self._paused))

    def _outputs_full(self) -> bool:
        """Outputs waiting to land reached their bound: learning more would add to them."""
        return (
            self.sink is not None and self.sink.pending >= self.settings.kafka.max_pending_outputs
        )

    def _learn(self, records: list[DecodedRecord]) -> None:
        # Every line logged while this batch is handled names the records it came from.
        first, last = records[0].record, records[-1].record
        with bound_contextvars(
            topic=first.topic,
            partition=first.partition,
            offset=first.offset,
            last_partition=last.partition,
            last_offset=last.offset,
        ):
            self._learn_records(records)

    def _learn_records(self, records: list[DecodedRecord]) -> None:
        samples = [s for r in records for s in r.samples]
        origins = [(r.record, s.index) for r in records for s in r.samples]
        dead = [d for r in records for d in r.dead_letters]
        with self.checkpointer.learning():
            self._learn_samples(samples, origins, dead)
            self.checkpointer.advance(records)

    def _forget(self, samples: list[Sample], expert: str | None) -> dict[str, Any]:
        """Unlearn samples from an rls head (POST /v1/forget): the answer, or why not."""
        try:
            done = self.engine.forget(samples, expert)
        except ModelError as exc:
            return {"error_code": "not_forgotten", "detail": str(exc)}
        self.challenger.forget(samples, str(done["expert"]))
        self.guard.forgotten()  # its kept states hold the samples: none may come back
        self.checkpointer.mark_dirty()  # the next checkpoint holds the downdated head
        log.info("samples_forgotten", **done, model_version=self.engine.version)
        if self.endpoints.sink is not None:
            self.endpoints.sink.event("samples_forgotten", done)
        return done

    def _learn_labels(self, records: list[Record]) -> None:
        """Late labels, handled as soon as they are polled: each joins its sample, which
        is learned now, or waits in the store (state the checkpoint holds with the offset)."""
        samples, origins, dead = self.late_labels.take(records)
        with self.checkpointer.learning():
            self._learn_samples(samples, origins, dead)
            self.checkpointer.advance([DecodedRecord(r) for r in records])
        self.reporter.consumed(records[0].topic, len(records))

    def _learn_samples(
        self,
        samples: list[Sample],
        origins: list[tuple[Record, int | None]],
        dead: list[DeadLetter],
        held: bool = False,
    ) -> None:
        """Learn in micro-batches; ``origins[i]`` names where sample i came from.

        ``held``: a replica's samples learned inside a sync round. The round publishes the
        group's model once it averaged them in: a snapshot of this replica's own model in
        between would serve an answer no other replica gives. They counted towards
        ``checkpoint.every_samples`` when they were read."""
        step = self.batching.size
        for start in range(0, len(samples), step):
            chunk = samples[start : start + step]
            result, rivals = self._process(chunk, origins[start : start + step], dead)
            # Answered samples whose label came first join it now, and are learned.
            joined = self.late_labels.answered(chunk, result, origins[start : start + step], rivals)
            if joined:
                self._process(joined, [(self.late_labels.origin, None)] * len(joined), dead)
            if not held:
                self._maybe_publish_snapshot()  # a long backlog must not freeze serving
        if dead:
            self.reporter.dead_letter(dead)
        self._sync_codec()
        self.checkpointer.mark_dirty(0 if held else len(samples) + len(dead))
        self._resize_batch()

    def _process(
        self,
        chunk: list[Sample],
        origins: list[tuple[Record, int | None]],
        dead: list[DeadLetter],
    ) -> tuple[StepResult, dict[str, Label | None]]:
        """One learning step (the challenger's too); refused samples are added to ``dead``.
        The result, and the challenger's answers to the chunk's unlabeled samples by id."""
        began = time.perf_counter()
        result = self.engine.process(chunk)
        took = time.perf_counter() - began
        if self.replica is not None:
            self.replica.stepped()
        self.batching.observe(len(chunk), took)
        self.metrics.learn_latency.observe(took)
        self.metrics.batch_size.observe(len(chunk))
        if self.replica is not None:  # a new class waits for the group's slot
            result.rejections = self.replica.pending.hold(result.rejections, chunk, origins)
        dead += self.reporter.rejected(result, chunk, origins)
        self.reporter.publish(result)
        return result, self.challenger.shadow(chunk)

    def _learn_held(self, samples: list[Sample], origins: list[tuple[Record, int | None]]) -> None:
        """A replica's samples held for their class slots, learned at the round that gave
        them (streamlearn/sync/labels.py); their offsets moved on when they were read."""
        with self.checkpointer.learning():
            self._learn_samples(samples, origins, [], held=True)

    def _resize_batch(self) -> None:
        """Grow or shrink the learning step with the backlog (``daemon/batching.py``).

        While outputs wait to land the learner is not what holds the stream up: the step
        goes back to ``engine.max_batch`` at once, so the pending-outputs bound stays soft by
        one step of that size, as docs/operations.md states it."""
        backlog = round(self.progress.lag * self._samples_per_record) + self.buffer.samples
        before = self.batching.size
        if self.sink is not None and self.sink.pending:
            size = self.batching.reset()
        else:
            size = self.batching.resize(backlog)
        if size != before:
            self.buffer.max_batch = size
            self.engine.scale_step(self.batching.step_scale)
            self.metrics.batch_target.set(size)
            log.info(
                "batch_resized",
                samples=size,
                step_scale=round(self.batching.step_scale, 3),
                backlog=backlog,
                rate=round(self.batching.rate or 0.0),
            )

    def _serve_inbox(self) -> None:
        """Learn samples posted over HTTP, answer forget and checkpoint requests."""
        rows = self.inbox.take_rows()
        if rows:
            self.reporter.adapted(self.engine.adapt(rows))
            self.challenger.adapt(rows)
            # Moved weights or rows waiting: both belong in a checkpoint.
            self.checkpointer.mark_dirty()
        self._keep_served(self.inbox.take_served())
        samples = self.inbox.take(self.inbox.capacity)
        if samples:
            origins: list[tuple[Record, int | None]] = [
                (HTTP_RECORD, i) for i in range(len(samples))
            ]
            with self.checkpointer.learning():
                self._learn_samples(samples, origins, [])
        for samples, expert, future in self.inbox.take_forget_requests():
            future.set_result(self._forget(samples, expert))
        for request in self.inbox.take_checkpoint_requests():
            saved = self.checkpoint("api")
            request.set_result(
                {
                    "saved": saved,
                    "path": self.checkpointer.last_path,
                    "samples_learned": self.engine.samples_learned,
                    "offsets": {
                        f"{tp.topic}/{tp.partition}": o
                        for tp, o in self.checkpointer.offsets().items()
                    },
                }
            )

    def _keep_served(self, rows: list[dict[str, Any]]) -> None:
        """Served rows with an id wait for their late label; those whose label came first
        join it and are learned now."""
        if not rows:
            return
        joined = self.late_labels.from_serving(rows)
        if joined:
            with self.checkpointer.learning():
                self._learn_samples(joined, [(self.late_labels.origin, None)] * len(joined), [])
        self.checkpointer.mark_dirty()  # the store changed: the next checkpoint holds it

    def _sync_codec(self) -> None:
        if self.codec.n_features is None and self.engine.n_features is not None:
            self.codec.n_features = self.engine.n_features

    # -- snapshots and progress ------------------------------------------------------------

    def _maybe_publish_snapshot(self) -> None:
        interval = self.settings.serve.publish_interval_ms / 1000
        if time.monotonic() - self._last_publish >= interval:
            self._publish_snapshot()

    def _publish_snapshot(self) -> None:
        self._last_publish = time.monotonic()
        if self.engine.version > 0:  # an untrained model has nothing worth serving
            self.snapshots.publish_from(self.engine)

    def _maybe_update_gauges(self) -> None:
        self.gauges.maybe_update(self._paused)
        self.late_labels.update_gauges()

    def _publish_progress(self) -> None:
        self.gauges.publish_progress(self._paused)


def kafka_daemon(settings: Settings, metrics: Metrics | None = None) -> Daemon:
    """The production wiring: a Kafka consumer group in, Kafka topics out."""
    from streamlearn.sinks.kafka import KafkaSink
    from streamlearn.sources import open_source

    extra = (settings.kafka.labels_topic,) if settings.labels.enabled else ()
    return Daemon(
        settings,
        source_factory=lambda listener: open_source(settings.kafka, listener, extra),
        sink_factory=lambda metrics: KafkaSink(settings.kafka, metrics),
        metrics=metrics,
    )
