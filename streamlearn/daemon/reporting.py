"""The learner's outward-facing side: metrics, logs, the events topic, dead letters, histories.

Every step result the engine hands back is counted, logged and published here; the counts
kept along the way (records consumed and invalid, drifts, expert decisions, adaptation)
feed :class:`~streamlearn.daemon.gauges.Progress`.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from structlog.contextvars import bound_contextvars

from streamlearn.core.adapt import AdaptReport
from streamlearn.core.drift.monitor import DriftEvent
from streamlearn.core.engine import Engine, StepResult
from streamlearn.core.experts.member import PoolEvent
from streamlearn.core.logging import get_logger
from streamlearn.core.preprocess import Recycled
from streamlearn.core.types import DeadLetter, Record, Sample
from streamlearn.daemon.endpoints import Endpoints
from streamlearn.daemon.history import EventHistory
from streamlearn.daemon.ratelimit import LogLimiter
from streamlearn.metrics import Metrics

log = get_logger(__name__)


class Reporter:
    """Publishes what the engine did and keeps count: ``counts``, ``drifts``, the last drift.

    ``counts`` keys: ``consumed``, ``invalid``, ``adapted``, ``adapt_resets``, ``input_shifts``,
    ``steps_skipped``, ``classes_recycled`` and ``expert_<kind>`` for each decision of the
    expert pool.
    """

    def __init__(
        self,
        metrics: Metrics,
        engine: Engine,
        endpoints: Endpoints,
        drift_history: EventHistory[DriftEvent],
        expert_history: EventHistory[PoolEvent],
    ) -> None:
        self.metrics = metrics
        self.engine = engine
        self.endpoints = endpoints
        self.drift_history = drift_history
        self.expert_history = expert_history
        self.counts: Counter[str] = Counter()
        self.drifts = 0  # drifts detected since start
        self.last_drift_sample: int | None = None
        self._dead_log = LogLimiter(per_second=10)
        self._guard_log = LogLimiter(per_second=1)

    def consumed(self, topic: str, records: int) -> None:
        self.counts["consumed"] += records
        self.metrics.records_consumed.labels(topic=topic).inc(records)

    def publish(self, result: StepResult) -> None:
        sink = self.endpoints.sink
        assert sink is not None
        if result.labeled:
            self.metrics.samples_learned.inc(result.labeled)
            self.metrics.predictions.labels(kind="prequential").inc(result.labeled)
            self.metrics.prequential_correct.inc(result.correct)
        if result.predictions:
            sink.predictions(result.predictions)
            self.metrics.predictions.labels(kind="unlabeled").inc(len(result.predictions))
        if result.drift_events:
            self._drift_events(result.drift_events)
        if result.shift_events:
            self._shift_events(result.shift_events)
        if result.pool_events:
            self._pool_events(result.pool_events)
        if result.steps_skipped:
            self._steps_skipped(result.steps_skipped)
        if result.recycled:
            self._recycled(result.recycled)
        self.adapted(result.adapt)

    def adapted(self, report: AdaptReport) -> None:
        """Count what test-time adaptation did; a reset is logged and published."""
        if not report.steps:
            return
        sink = self.endpoints.sink
        assert sink is not None
        self.metrics.tta_adapted.inc(report.adapted)
        self.metrics.tta_skipped.inc(report.skipped)
        if report.entropy is not None:
            self.metrics.tta_entropy.set(report.entropy)
        self.counts["adapted"] += report.adapted
        for expert, reason in report.resets:
            self.metrics.tta_resets.labels(reason=reason).inc()
            self.counts["adapt_resets"] += 1
            log.warning(
                "tta_reset", expert=expert, reason=reason, model_version=self.engine.version
            )
            sink.event(
                "tta_reset",
                {"expert": expert, "reason": reason, "model_version": self.engine.version},
            )

    def _drift_events(self, events: list[DriftEvent]) -> None:
        """Count, log and keep every event; drifts also go to the events topic."""
        sink = self.endpoints.sink
        assert sink is not None
        self.drift_history.extend(events)
        for event in events:
            labels = {"detector": event.detector, "expert": event.expert}
            if event.kind == "warning":
                self.metrics.drift_warnings.labels(**labels).inc()
                log.debug("drift_warning", **labels, sample=event.sample)
                continue
            self.metrics.drift_events.labels(**labels).inc()
            self.drifts += 1
            self.last_drift_sample = event.sample
            log.warning(
                "drift_detected", **labels, sample=event.sample, model_version=event.model_version
            )
            sink.event("drift", event.to_dict())

    def _shift_events(self, events: list[DriftEvent]) -> None:
        """Count, log, keep and publish every change of domain in the input rows."""
        sink = self.endpoints.sink
        assert sink is not None
        self.drift_history.extend(events)
        for event in events:
            self.metrics.input_shift_events.inc()
            self.counts["input_shifts"] += 1
            log.warning("input_shift_detected", row=event.sample, model_version=event.model_version)
            sink.event(event.kind, event.to_dict())

    def _pool_events(self, events: list[PoolEvent]) -> None:
        """Count, log, keep and publish every decision of the expert pool."""
        sink = self.endpoints.sink
        assert sink is not None
        self.expert_history.extend(events)
        for event in events:
            self.metrics.expert_events.labels(kind=event.kind).inc()
            self.counts[f"expert_{event.kind}"] += 1
            if event.kind in ("prune", "merge"):
                self.metrics.forget_expert(event.expert)
            payload = {k: v for k, v in event.to_dict().items() if k != "kind"}
            log.info(f"expert_{event.kind}", **payload)
            sink.event(f"expert_{event.kind}", payload)

    # Both are logged at most once a second: a learning rate of 1e30 skips every step, and
    # a flood of junk labels recycles a slot in every batch.

    def _steps_skipped(self, skipped: dict[str, int]) -> None:
        for reason, count in skipped.items():
            self.metrics.steps_skipped.labels(reason=reason).inc(count)
            self.counts["steps_skipped"] += count
            if self._guard_log.allow():
                log.warning(
                    "step_skipped", reason=reason, count=count, model_version=self.engine.version
                )
        self._guard_suppressed()

    def _recycled(self, recycled: list[Recycled]) -> None:
        """A class slot changed hands: served labels change with the next snapshot."""
        for item in recycled:
            self.metrics.classes_recycled.inc()
            self.counts["classes_recycled"] += 1
            if self._guard_log.allow():
                log.warning(
                    "class_recycled",
                    index=item.index,
                    old=_short(item.old),
                    old_count=item.old_count,
                    new=_short(item.new),
                )
        self._guard_suppressed()

    def _guard_suppressed(self) -> None:
        if suppressed := self._guard_log.take_suppressed():
            log.warning("guard_log_suppressed", count=suppressed)

    # -- dead letters ----------------------------------------------------------------------

    @staticmethod
    def rejected(
        result: StepResult, chunk: list[Sample], origins: list[tuple[Record, int | None]]
    ) -> list[DeadLetter]:
        """Dead letters for the samples of ``chunk`` the engine refused, with their origin."""
        out = []
        for rejection in result.rejections:
            record, index = origins[rejection.index]
            value = _original_bytes(chunk[rejection.index], record)
            out.append(DeadLetter(value, rejection.reason, rejection.detail, record, index))
        return out

    def dead_letter(self, items: list[DeadLetter]) -> None:
        sink = self.endpoints.sink
        assert sink is not None
        sink.dead_letters(items)
        for item in items:
            self.metrics.records_invalid.labels(reason=item.reason).inc()
            self.counts["invalid"] += 1
            if self._dead_log.allow():
                with bound_contextvars(
                    topic=item.source.topic,
                    partition=item.source.partition,
                    offset=item.source.offset,
                ):
                    log.warning(
                        "record_invalid",
                        sample_index=item.sample_index,
                        reason=item.reason,
                        detail=item.detail,
                    )
        if suppressed := self._dead_log.take_suppressed():
            log.warning("record_invalid_suppressed", count=suppressed)


def _short(label: Any) -> Any:
    """A label as logged: a long string is cut (the codec bounds them, but old checkpoints
    may hold anything)."""
    return label[:64] + "..." if isinstance(label, str) and len(label) > 64 else label


def _original_bytes(sample: Sample, record: Record) -> bytes:
    """What the producer sent for this sample: the record's value, or its item in a batch
    record (parsed again: refusals after decoding are rare, keeping bytes for every sample
    is not), or its JSON as posted to /v1/learn."""
    if sample.raw is not None:
        return sample.raw.encode()
    if sample.index is None and record.value:
        return record.value
    if sample.index is not None and record.value:
        return json.dumps(json.loads(record.value)["samples"][sample.index]).encode()
    return _sample_json(sample)


def _sample_json(sample: Any) -> bytes:
    return json.dumps(
        {"x": sample.x, "y": sample.y, "id": sample.id, "task": sample.task, "ts": sample.ts}
    ).encode()
