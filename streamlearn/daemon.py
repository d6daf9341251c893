"""The daemon's lifecycle: connect, restore, the learner loop, checkpoints, shutdown.

One learner thread (the one calling :meth:`Daemon.run`) owns the consumer, the engine and
every piece of mutable learning state. Other threads only call :meth:`Daemon.request_stop`
and read :attr:`Daemon.progress`, a frozen value replaced by one reference assignment.

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

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from kafka.errors import KafkaError
from structlog.contextvars import bound_contextvars

from streamlearn.adapt import AdaptReport
from streamlearn.buffer import InputBuffer
from streamlearn.checkpoint import FileCheckpointStore
from streamlearn.checkpoint.state import CheckpointState, check_compatible
from streamlearn.codecs import Codec
from streamlearn.drift.monitor import DriftEvent
from streamlearn.engine import Engine, StepResult
from streamlearn.experts.member import PoolEvent
from streamlearn.history import EventHistory
from streamlearn.logging import get_logger
from streamlearn.metrics import Metrics
from streamlearn.protocols import Sink, Source
from streamlearn.ratelimit import LogLimiter
from streamlearn.serve.inbox import HTTP_RECORD, Inbox
from streamlearn.serve.snapshot import SnapshotBoard
from streamlearn.settings import Settings
from streamlearn.sources.base import AssignmentListener
from streamlearn.types import DeadLetter, DecodedRecord, Offsets, Record, Sample, TopicPartition

log = get_logger(__name__)

_GAUGE_INTERVAL_S = 0.5
# On shutdown the broker may be gone: bound every wait so SIGTERM finishes inside 10 s.
_SHUTDOWN_FLUSH_S = 3.0
_SHUTDOWN_CLOSE_S = 2.0


class ManagedSource(Source, Protocol):
    def highwater(self, tp: TopicPartition) -> int | None: ...
    def close(self, commit: Offsets | None = None) -> None: ...


SourceFactory = Callable[[AssignmentListener], ManagedSource]
SinkFactory = Callable[[Metrics], Sink]


@dataclass(frozen=True, slots=True)
class Progress:
    """What the daemon has done so far; replaced whole, safe to read from any thread."""

    samples_learned: int = 0
    samples_predicted: int = 0
    records_consumed: int = 0
    records_invalid: int = 0
    model_version: int = 0
    accuracy: float = float("nan")  # rolling window
    loss: float = float("nan")
    mae: float = float("nan")
    checkpoints: int = 0
    lag: int = 0
    paused: bool = False
    connected: bool = False  # the source is up (False while the broker is unreachable)
    drifts: int = 0  # drifts detected since start
    last_drift_sample: int | None = None  # stream position of the latest
    active_expert: str | None = None
    experts: int = 0  # alive in the pool
    spawns: int = 0  # pool decisions since start
    switches: int = 0
    adapt_method: str = "none"  # in force ("auto" resolved once the network exists)
    adapted: int = 0  # unlabeled samples test-time adaptation learned from, since start
    adapt_resets: int = 0


class Daemon:
    def __init__(self, settings: Settings, source_factory: SourceFactory, sink_factory:
                 SinkFactory, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.engine = Engine(settings.model, settings.engine, settings.drift, settings.experts,
                             settings.adapt)
        m = settings.model
        self.codec = Codec(m.task, m.n_features, m.features, settings.engine.max_record_bytes,
                           settings.engine.max_samples_per_record)
        self.store = (FileCheckpointStore(settings.checkpoint.dir, settings.checkpoint.keep,
                                          on_fallback=self._on_checkpoint_fallback)
                      if settings.checkpoint.enabled else None)
        self._source_factory = source_factory
        self._sink_factory = sink_factory
        self.source: ManagedSource | None = None
        self.sink: Sink | None = None
        self.buffer = InputBuffer(settings.engine.max_batch, settings.engine.max_wait_ms / 1000)
        self.positions: Offsets = {}  # assigned partitions: next offset to learn
        self.known: Offsets = {}  # partitions not assigned now: where this lineage stopped
        self.ready = threading.Event()
        self.progress = Progress()
        # Serving's two windows into the learner: snapshots out, samples and requests in.
        self.snapshots = SnapshotBoard(self.metrics)
        self.inbox = Inbox(settings.serve.learn_queue_samples)
        self.drift_history: EventHistory[DriftEvent] = EventHistory(settings.drift.history)
        self.expert_history: EventHistory[PoolEvent] = EventHistory(settings.experts.history)
        self._last_publish = 0.0
        self._last_checkpoint_path: str | None = None
        self._stop = threading.Event()
        self._paused = False
        self._dirty = False
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self._last_gauges = 0.0
        self._counts: Counter[str] = Counter()
        self._dead_log = LogLimiter(per_second=10)
        self._drifts = 0
        self._last_drift_sample: int | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Restore, connect, learn until asked to stop, then checkpoint and close."""
        if not self.start():
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
        if not self._connect():
            return False
        self.ready.set()
        log.info("daemon_ready", topic=self.settings.kafka.input_topic,
                 group=self.settings.kafka.group_id)
        return True

    def restore(self) -> None:
        if self.store is None:
            return
        removed = self.store.remove_partial()
        if removed:
            log.warning("checkpoint_partial_removed", files=[str(p) for p in removed])
        loaded = self.store.load_latest()
        if loaded is None:
            if self.store.files():
                log.warning("checkpoint_none_valid", action="cold start from committed offsets")
            else:
                log.info("checkpoint_none", action="cold start from committed offsets")
            return
        state = CheckpointState.from_dict(loaded.state)
        check_compatible(state, self.settings.model, loaded.path)
        self.engine.load_state_dict(state.engine)
        self.known = dict(state.offsets)
        self._sync_codec()
        self.metrics.checkpoint_done()
        log.info("checkpoint_restored", path=str(loaded.path), skipped=len(loaded.skipped),
                 samples_learned=self.engine.samples_learned,
                 offsets={f"{tp.topic}/{tp.partition}": o for tp, o in self.known.items()})

    def _connect(self) -> bool:
        delay = 0.5
        while not self._stop.is_set():
            try:
                self.sink = self.sink or self._sink_factory(self.metrics)
                self.source = self._source_factory(self)
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
        self.checkpoint("shutdown", flush_timeout_s=_SHUTDOWN_FLUSH_S)
        if self.source is not None:
            # Commit only what the last checkpoint holds; never ahead of it.
            self.source.close(commit=None if self._dirty else dict(self.positions))
        if self.sink is not None:
            self.sink.close()
        self._publish_progress()
        log.info("daemon_stopped", samples_learned=self.engine.samples_learned)

    # -- the loop --------------------------------------------------------------------------

    def step(self) -> None:
        assert self.source is not None
        busy = self.buffer.due() or self.inbox.pending()
        wait = 0.0 if busy else min(self.buffer.wait_left(),
                                    self.settings.kafka.poll_timeout_ms / 1000)
        records = self.source.poll(self.settings.kafka.max_poll_records, wait)
        if records:
            self._accept(records)
        self._flow_control()
        while self.buffer.due() and not self._stop.is_set():
            self._learn(self.buffer.take())
            if self._paused:
                break  # go back to poll() so the group keeps seeing us while we catch up
        self._serve_inbox()
        self._maybe_checkpoint()
        self._maybe_publish_snapshot()
        self._maybe_update_gauges()

    def _accept(self, records: list[Any]) -> None:
        decoded = [self.codec.decode(record) for record in records]
        self.buffer.add(decoded)
        self._counts["consumed"] += len(records)
        self.metrics.records_consumed.labels(topic=records[0].topic).inc(len(records))

    def _flow_control(self) -> None:
        assert self.source is not None
        limit = self.settings.kafka.max_buffered_samples
        if not self._paused and self.buffer.samples > limit:
            self.source.pause()
            self._paused = True
            log.info("input_paused", buffered=self.buffer.samples)
        elif self._paused and self.buffer.samples < limit // 2:
            self.source.resume()
            self._paused = False
            log.info("input_resumed", buffered=self.buffer.samples)
        self.metrics.partitions_paused.set(int(self._paused))

    def _learn(self, records: list[DecodedRecord]) -> None:
        # Every line logged while this batch is handled names the records it came from.
        first, last = records[0].record, records[-1].record
        with bound_contextvars(topic=first.topic, partition=first.partition,
                               offset=first.offset, last_partition=last.partition,
                               last_offset=last.offset):
            self._learn_records(records)

    def _learn_records(self, records: list[DecodedRecord]) -> None:
        samples = [s for r in records for s in r.samples]
        origins = [(r.record, i if len(r.samples) > 1 else None)
                   for r in records for i in range(len(r.samples))]
        dead = [d for r in records for d in r.dead_letters]
        self._learn_samples(samples, origins, dead)
        for record in records:
            self.positions[record.record.tp] = record.record.offset + 1

    def _learn_samples(self, samples: list[Sample], origins: list[tuple[Record, int | None]],
                       dead: list[DeadLetter]) -> None:
        """Learn in micro-batches; ``origins[i]`` names where sample i came from."""
        step = self.settings.engine.max_batch
        for start in range(0, len(samples), step):
            chunk = samples[start: start + step]
            began = time.perf_counter()
            result = self.engine.process(chunk)
            self.metrics.learn_latency.observe(time.perf_counter() - began)
            self.metrics.batch_size.observe(len(chunk))
            dead += self._rejected(result, chunk, origins[start: start + step])
            self._publish(result)
            self._maybe_publish_snapshot()  # a long backlog must not freeze serving
        if dead:
            self._dead_letter(dead)
        self._sync_codec()
        self._dirty = True
        self._since_checkpoint += len(samples) + len(dead)

    def _rejected(self, result: StepResult, chunk: list[Sample],
                  origins: list[tuple[Record, int | None]]) -> list[DeadLetter]:
        out = []
        for rejection in result.rejections:
            record, index = origins[rejection.index]
            value = _sample_json(chunk[rejection.index])
            out.append(DeadLetter(value, rejection.reason, rejection.detail, record, index))
        return out

    def _serve_inbox(self) -> None:
        """Learn samples posted over HTTP and answer checkpoint requests."""
        rows = self.inbox.take_rows()
        if rows:
            self._adapted(self.engine.adapt(rows))
            self._dirty = True  # moved weights or rows waiting: both belong in a checkpoint
        samples = self.inbox.take(self.inbox.capacity)
        if samples:
            origins: list[tuple[Record, int | None]] = [(HTTP_RECORD, i)
                                                        for i in range(len(samples))]
            self._learn_samples(samples, origins, [])
        for request in self.inbox.take_checkpoint_requests():
            saved = self.checkpoint("api")
            request.set_result({
                "saved": saved, "path": self._last_checkpoint_path,
                "samples_learned": self.engine.samples_learned,
                "offsets": {f"{tp.topic}/{tp.partition}": o
                            for tp, o in {**self.known, **self.positions}.items()},
            })

    def _maybe_publish_snapshot(self) -> None:
        interval = self.settings.serve.publish_interval_ms / 1000
        if time.monotonic() - self._last_publish >= interval:
            self._publish_snapshot()

    def _publish_snapshot(self) -> None:
        self._last_publish = time.monotonic()
        if self.engine.version > 0:  # an untrained model has nothing worth serving
            self.snapshots.publish_from(self.engine)

    def _publish(self, result: StepResult) -> None:
        assert self.sink is not None
        if result.labeled:
            self.metrics.samples_learned.inc(result.labeled)
            self.metrics.predictions.labels(kind="prequential").inc(result.labeled)
        if result.predictions:
            self.sink.predictions(result.predictions)
            self.metrics.predictions.labels(kind="unlabeled").inc(len(result.predictions))
        if result.drift_events:
            self._drift_events(result.drift_events)
        if result.pool_events:
            self._pool_events(result.pool_events)
        self._adapted(result.adapt)

    def _adapted(self, report: AdaptReport) -> None:
        """Count what test-time adaptation did; a reset is logged and published."""
        if not report.steps:
            return
        assert self.sink is not None
        self.metrics.tta_adapted.inc(report.adapted)
        self.metrics.tta_skipped.inc(report.skipped)
        if report.entropy is not None:
            self.metrics.tta_entropy.set(report.entropy)
        self._counts["adapted"] += report.adapted
        for expert, reason in report.resets:
            self.metrics.tta_resets.labels(reason=reason).inc()
            self._counts["adapt_resets"] += 1
            log.warning("tta_reset", expert=expert, reason=reason,
                        model_version=self.engine.version)
            self.sink.event("tta_reset", {"expert": expert, "reason": reason,
                                          "model_version": self.engine.version})

    def _drift_events(self, events: list[DriftEvent]) -> None:
        """Count, log and keep every event; drifts also go to the events topic."""
        assert self.sink is not None
        self.drift_history.extend(events)
        for event in events:
            labels = {"detector": event.detector, "expert": event.expert}
            if event.kind == "warning":
                self.metrics.drift_warnings.labels(**labels).inc()
                log.debug("drift_warning", **labels, sample=event.sample)
                continue
            self.metrics.drift_events.labels(**labels).inc()
            self._drifts += 1
            self._last_drift_sample = event.sample
            log.warning("drift_detected", **labels, sample=event.sample,
                        model_version=event.model_version)
            self.sink.event("drift", event.to_dict())

    def _pool_events(self, events: list[PoolEvent]) -> None:
        """Count, log, keep and publish every decision of the expert pool."""
        assert self.sink is not None
        self.expert_history.extend(events)
        for event in events:
            self.metrics.expert_events.labels(kind=event.kind).inc()
            self._counts[f"expert_{event.kind}"] += 1
            if event.kind in ("prune", "merge"):
                self.metrics.expert_active.remove(event.expert)
                self.metrics.expert_accuracy.remove(event.expert)
            payload = {k: v for k, v in event.to_dict().items() if k != "kind"}
            log.info(f"expert_{event.kind}", **payload)
            self.sink.event(f"expert_{event.kind}", payload)

    def _dead_letter(self, items: list[DeadLetter]) -> None:
        assert self.sink is not None
        self.sink.dead_letters(items)
        for item in items:
            self.metrics.records_invalid.labels(reason=item.reason).inc()
            self._counts["invalid"] += 1
            if self._dead_log.allow():
                with bound_contextvars(topic=item.source.topic,
                                       partition=item.source.partition,
                                       offset=item.source.offset):
                    log.warning("record_invalid", sample_index=item.sample_index,
                                reason=item.reason, detail=item.detail)
        if suppressed := self._dead_log.take_suppressed():
            log.warning("record_invalid_suppressed", count=suppressed)

    def _sync_codec(self) -> None:
        if self.codec.n_features is None and self.engine.n_features is not None:
            self.codec.n_features = self.engine.n_features

    # -- checkpoints -----------------------------------------------------------------------

    def _maybe_checkpoint(self) -> None:
        cfg = self.settings.checkpoint
        if self._dirty and (self._since_checkpoint >= cfg.every_samples or
                            time.monotonic() - self._last_checkpoint >= cfg.every_seconds):
            self.checkpoint("interval")

    def checkpoint(self, reason: str, flush_timeout_s: float | None = None) -> bool:
        """Flush outputs, save state durably, then commit offsets. False if it did not."""
        if not self._dirty or self.sink is None:
            return True
        timeout = flush_timeout_s or self.settings.kafka.flush_timeout_s
        if not self.sink.flush(timeout):
            self.metrics.checkpoints.labels(result="outputs_pending").inc()
            log.warning("checkpoint_deferred", reason=reason, why="outputs not yet landed")
            return False
        if self.store is None:
            return self._commit()
        state = CheckpointState(offsets={**self.known, **self.positions},
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
        self._counts["checkpoints"] += 1
        self._last_checkpoint_path = str(path)
        log.info("checkpoint_saved", reason=reason, path=str(path), seconds=round(elapsed, 4),
                 samples_learned=self.engine.samples_learned)
        committed = self._commit()
        self._publish_snapshot()
        return committed

    def _commit(self) -> bool:
        if self.source is not None:
            self.source.commit(dict(self.positions))
        self._dirty = False
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        return True

    def _on_checkpoint_fallback(self, path: Any, error: str) -> None:
        self.metrics.checkpoint_fallbacks.inc()

    # -- rebalance (runs on the client's IO thread while this thread waits in poll) ------

    def on_assigned(self, partitions: list[TopicPartition]) -> None:
        assert self.source is not None
        seek = {tp: self.known.pop(tp) for tp in partitions if tp in self.known}
        if seek:
            self.source.seek(seek)
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

    # -- observability ---------------------------------------------------------------------

    def _maybe_update_gauges(self) -> None:
        now = time.monotonic()
        if now - self._last_gauges < _GAUGE_INTERVAL_S:
            return
        self._last_gauges = now
        stats = self.engine.stats
        for window, read in (("rolling", stats.rolling), ("cumulative", stats.cumulative)):
            self.metrics.prequential_loss.labels(window=window).set(read("loss"))
            if self.engine.is_classifier:
                self.metrics.prequential_accuracy.labels(window=window).set(read("correct"))
            else:
                self.metrics.prequential_mae.labels(window=window).set(read("abs_error"))
        self.metrics.model_version.set(self.engine.version)
        if self.engine.drift is not None:
            detector = self.settings.drift.detector
            for expert, value in self.engine.drift.statistics().items():
                self.metrics.drift_statistic.labels(detector=detector, expert=expert).set(value)
        self._expert_gauges()
        self.metrics.buffered_samples.set(self.buffer.samples)
        self._publish_progress()

    def _expert_gauges(self) -> None:
        pool = self.engine.pool
        if pool is None:
            return
        self.metrics.experts_alive.set(len(pool.members))
        for id_, member in pool.members.items():
            self.metrics.expert_active.labels(expert=id_).set(int(id_ == pool.active_id))
            if member.accuracy == member.accuracy:  # NaN until it answered
                self.metrics.expert_accuracy.labels(expert=id_).set(member.accuracy)
            if member.band.ready:
                self.metrics.expert_loss.labels(expert=id_).set(member.band.mean)
        rolling, cumulative = pool.selector.accuracy
        self.metrics.selector_accuracy.labels(window="rolling").set(rolling)
        self.metrics.selector_accuracy.labels(window="cumulative").set(cumulative)
        for part, size in pool.nbytes().items():
            self.metrics.expert_memory.labels(part=part).set(size)
        if self.engine.adapter is not None:
            self.metrics.expert_memory.labels(part="adapt").set(self.engine.adapter.nbytes())

    def _lag(self) -> int:
        assert self.source is not None
        total = 0
        for tp, position in self.positions.items():
            high = self.source.highwater(tp)
            if high is not None:
                lag = max(0, high - position)
                self.metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)
                                                 ).set(lag)
                total += lag
        return total

    def _publish_progress(self) -> None:
        stats = self.engine.stats
        self.progress = Progress(
            samples_learned=self.engine.samples_learned,
            samples_predicted=self.engine.samples_predicted,
            records_consumed=self._counts["consumed"],
            records_invalid=self._counts["invalid"],
            model_version=self.engine.version,
            accuracy=stats.rolling("correct"),
            loss=stats.rolling("loss"),
            mae=stats.rolling("abs_error"),
            checkpoints=self._counts["checkpoints"],
            lag=self._lag() if self.source is not None else 0,
            paused=self._paused,
            connected=self.source is not None,
            drifts=self._drifts,
            last_drift_sample=self._last_drift_sample,
            active_expert=self.engine.pool.active_id if self.engine.pool else None,
            experts=len(self.engine.pool.members) if self.engine.pool else 0,
            spawns=self._counts["expert_spawn"],
            switches=self._counts["expert_switch"],
            adapt_method=self.engine.adapt_method,
            adapted=self._counts["adapted"],
            adapt_resets=self._counts["adapt_resets"],
        )


def _sample_json(sample: Any) -> bytes:
    return json.dumps({"x": sample.x, "y": sample.y, "id": sample.id, "task": sample.task,
                       "ts": sample.ts}).encode()


def kafka_daemon(settings: Settings, metrics: Metrics | None = None) -> Daemon:
    """The production wiring: a Kafka consumer group in, Kafka topics out."""
    from streamlearn.sinks.kafka import KafkaSink
    from streamlearn.sources.kafka import KafkaSource

    return Daemon(settings,
                  source_factory=lambda listener: KafkaSource(settings.kafka, listener),
                  sink_factory=lambda metrics: KafkaSink(settings.kafka, metrics),
                  metrics=metrics)
