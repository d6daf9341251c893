"""Outputs to Kafka topics, with retry until they land, within bounds.

kafka-python retries inside ``delivery_timeout_ms``; a record that still fails (a long broker
outage, an output topic that does not exist) is kept and sent again by ``retry`` and
``flush``. The daemon checkpoints only after ``flush`` returned True, so an input offset is
never checkpointed past an output that did not land.

Bounds, so that an output-side outage can neither exhaust memory nor wedge the learner:

- While outputs wait to be re-sent, new ones join the end of that list instead of each
  blocking up to ``max_block_ms`` on a topic's missing metadata; ``retry`` probes with the
  oldest. The daemon pauses input once ``pending`` reaches ``kafka.max_pending_outputs``.
- An output bigger than ``kafka.max_message_bytes`` can never land, so it is never retried:
  a dead letter is sent with its value cut to fit (header ``truncated``), anything else is
  dropped; both are counted and logged. A broker that refuses a size the producer accepted
  is handled the same way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError

from streamlearn.core.logging import get_logger
from streamlearn.core.types import DeadLetter, Prediction
from streamlearn.metrics import Metrics
from streamlearn.sinks.messages import dead_letter_headers, event_message, prediction_message
from streamlearn.sources.connect import BOOTSTRAP_TIMEOUT_MS, closing_on_failure
from streamlearn.sources.settings import KafkaSettings

if TYPE_CHECKING:
    from streamlearn.core.protocols import Sink

log = get_logger(__name__)

_Message = tuple[str, bytes, bytes | None, list[tuple[str, bytes]]]
# Room for the record batch's own framing (batch header, record header, varints) beside
# the key, value and headers counted exactly; Kafka's is under 100 bytes per record.
_FRAMING_BYTES = 256
# Between two probes of a failing output path: a missing topic costs max_block_ms per probe.
_RETRY_INTERVAL_S = 1.0
_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)


class KafkaSink:
    """Sends predictions, events and dead letters to Kafka, and resends what failed.

    Errbacks run on the producer's IO thread; the daemon checkpoints only after ``flush``.
    """

    def __init__(self, settings: KafkaSettings, metrics: Metrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._failed: list[_Message] = []
        self._lock = threading.Lock()  # errbacks run on the producer's IO thread
        self._last_retry = 0.0
        with closing_on_failure() as client_factory:
            self._producer = KafkaProducer(
                bootstrap_servers=settings.bootstrap_servers.split(","),
                client_id=f"{settings.client_id}-out",
                acks="all",
                # Outputs are at-least-once: the sink re-sends what failed, and a duplicate
                # only repeats a message. An idempotent producer gains nothing over that and
                # wedges when its broker forgets producer ids: after a restart of the
                # embedded broker every later send failed (InitProducerId: UnknownError).
                enable_idempotence=False,
                linger_ms=5,
                max_request_size=settings.max_message_bytes,
                # Never stall the learner for long on a missing broker: a send that cannot
                # even get metadata fails fast and is retried later.
                max_block_ms=1_000,
                bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
                kafka_client=client_factory,
            )

    def predictions(self, items: list[Prediction]) -> None:
        if self._settings.publish_predictions:
            for item in items:
                key = item.id.encode() if item.id is not None else None
                self._send((self._settings.predictions_topic, prediction_message(item), key, []))

    def dead_letters(self, items: list[DeadLetter]) -> None:
        for item in items:
            self._send(
                (self._settings.dlq_topic, item.value, item.source.key, dead_letter_headers(item))
            )

    def event(self, kind: str, payload: Mapping[str, Any]) -> None:
        self._send((self._settings.events_topic, event_message(kind, payload), kind.encode(), []))

    @property
    def pending(self) -> int:
        """Outputs that failed to land and wait to be sent again."""
        return len(self._failed)

    def retry(self) -> None:
        """Send the waiting outputs again, at most once a second (cheap when none wait)."""
        if self._failed and time.monotonic() - self._last_retry >= _RETRY_INTERVAL_S:
            self._resend()

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything sent so far has landed; False if some still has not."""
        deadline = time.monotonic() + timeout_s
        while True:
            in_flight_landed = True
            try:
                self._producer.flush(timeout=max(0.0, deadline - time.monotonic()))
            except KafkaError as exc:  # still in the producer's buffer: not landed
                in_flight_landed = False
                log.warning("sink_flush_timeout", error=str(exc))
            if in_flight_landed and not self._failed:
                return True
            if time.monotonic() >= deadline:
                return False
            if self._failed:
                self._resend()
            time.sleep(0.05)

    def close(self) -> None:
        self._producer.close(timeout=2)

    def _resend(self) -> None:
        self._last_retry = time.monotonic()
        with self._lock:
            retry, self._failed = self._failed, []
        for message in retry:
            self._send(message)
        self._metrics.outputs_pending.set(len(self._failed))

    def _send(self, message: _Message) -> None:
        if self._failed:  # an outage: queue behind the others rather than block on each
            self._keep(message)
            return
        fitted = self._fitted(message)
        if fitted is None:
            return
        topic, value, key, headers = message = fitted
        try:
            future = self._producer.send(topic, value=value, key=key, headers=headers)
        except KafkaError as exc:
            self._on_error(message, exc)
            return
        future.add_errback(lambda exc: self._on_error(message, exc))

    def _fitted(self, message: _Message) -> _Message | None:
        """The message if it can land, a dead letter cut to fit, else None (dropped)."""
        topic, value, key, headers = message
        size = _size(message)
        limit = self._settings.max_message_bytes
        if size <= limit:
            return message
        if topic == self._settings.dlq_topic:
            keep = max(0, len(value) - (size - limit) - 64)
            self._metrics.outputs_truncated.labels(topic=topic).inc()
            log.warning("output_truncated", topic=topic, bytes=len(value), kept=keep)
            return (
                topic,
                value[:keep],
                key,
                [*headers, ("truncated", b"true"), ("value_bytes", str(len(value)).encode())],
            )
        self._drop(topic, "too_large", f"{size} bytes > kafka.max_message_bytes={limit}")
        return None

    def _on_error(self, message: _Message, exc: Exception) -> None:
        if isinstance(exc, _TOO_LARGE):
            self._drop(message[0], "too_large", str(exc))
            return
        self._metrics.sink_errors.labels(topic=message[0]).inc()
        log.warning("sink_send_failed", topic=message[0], error=str(exc))
        self._keep(message)

    def _keep(self, message: _Message) -> None:
        with self._lock:
            self._failed.append(message)
            self._metrics.outputs_pending.set(len(self._failed))

    def _drop(self, topic: str, reason: str, detail: str) -> None:
        self._metrics.outputs_dropped.labels(topic=topic, reason=reason).inc()
        log.error("output_dropped", topic=topic, reason=reason, detail=detail)


if TYPE_CHECKING:  # mypy holds KafkaSink to Sink (see streamlearn.core.protocols)

    def _conforms(sink: KafkaSink) -> Sink:
        return sink


def _size(message: _Message) -> int:
    _, value, key, headers = message
    return len(value) + len(key or b"") + sum(len(k) + len(v) for k, v in headers) + _FRAMING_BYTES
