"""Outputs to Kafka topics, with retry until they land.

kafka-python retries inside ``delivery_timeout_ms``; a record that still fails (a long broker
outage) is kept and sent again by ``flush``. The daemon checkpoints only after ``flush``
returned True, so an input offset is never checkpointed past an output that did not land.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from streamlearn.logging import get_logger
from streamlearn.metrics import Metrics
from streamlearn.settings import KafkaSettings
from streamlearn.sinks.messages import dead_letter_headers, event_message, prediction_message
from streamlearn.sources.kafka import BOOTSTRAP_TIMEOUT_MS
from streamlearn.types import DeadLetter, Prediction

log = get_logger(__name__)

_Message = tuple[str, bytes, bytes | None, list[tuple[str, bytes]]]


class KafkaSink:
    def __init__(self, settings: KafkaSettings, metrics: Metrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._failed: list[_Message] = []
        self._lock = threading.Lock()  # errbacks run on the producer's IO thread
        self._producer = KafkaProducer(
            bootstrap_servers=settings.bootstrap_servers.split(","),
            client_id=f"{settings.client_id}-out",
            acks="all",
            linger_ms=5,
            # Never stall the learner for long on a missing broker: a send that cannot even
            # get metadata fails fast and is retried from flush().
            max_block_ms=1_000,
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
        )

    def predictions(self, items: list[Prediction]) -> None:
        if self._settings.publish_predictions:
            for item in items:
                key = item.id.encode() if item.id is not None else None
                self._send((self._settings.predictions_topic, prediction_message(item), key, []))

    def dead_letters(self, items: list[DeadLetter]) -> None:
        for item in items:
            self._send((self._settings.dlq_topic, item.value, item.source.key,
                        dead_letter_headers(item)))

    def event(self, kind: str, payload: Mapping[str, Any]) -> None:
        self._send((self._settings.events_topic, event_message(kind, payload), kind.encode(),
                    []))

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything sent so far has landed; False if some still has not."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._producer.flush(timeout=max(0.0, deadline - time.monotonic()))
            except KafkaError as exc:
                log.warning("sink_flush_timeout", error=str(exc))
            with self._lock:
                retry, self._failed = self._failed, []
            if not retry:
                return True
            if time.monotonic() >= deadline:
                with self._lock:
                    self._failed = retry + self._failed
                return False
            for message in retry:
                self._send(message)
            time.sleep(0.05)

    def close(self) -> None:
        self._producer.close(timeout=2)

    def _send(self, message: _Message) -> None:
        topic, value, key, headers = message
        try:
            future = self._producer.send(topic, value=value, key=key, headers=headers)
        except KafkaError as exc:
            self._on_error(message, exc)
            return
        future.add_errback(lambda exc: self._on_error(message, exc))

    def _on_error(self, message: _Message, exc: Exception) -> None:
        self._metrics.sink_errors.labels(topic=message[0]).inc()
        log.warning("sink_send_failed", topic=message[0], error=str(exc))
        with self._lock:
            self._failed.append(message)
