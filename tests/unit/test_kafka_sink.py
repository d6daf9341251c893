"""The Kafka sink's bounds, on a stand-in producer (the real one is in integration/)."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from streamlearn.core.types import Prediction
from streamlearn.metrics import Metrics
from streamlearn.settings import KafkaSettings
from streamlearn.sinks import kafka as kafka_sink


class Future:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def add_errback(self, callback: Any) -> None:
        if self.error is not None:
            callback(self.error)


class Producer:
    """Fails every send while ``down``; a send of a missing topic's metadata blocks."""

    def __init__(self, **config: Any) -> None:
        self.down = False
        self.sent: list[tuple[str, bytes]] = []
        self.tries = 0
        self.refuse: Exception | None = None

    def send(self, topic: str, value: bytes, key: bytes | None, headers: Any) -> Future:
        self.tries += 1
        if self.down:
            raise KafkaTimeoutError("Failed to update metadata after 1.0 secs.")
        if self.refuse is not None:
            return Future(self.refuse)
        self.sent.append((topic, value))
        return Future(None)

    def flush(self, timeout: float) -> None:
        pass


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> kafka_sink.KafkaSink:
    monkeypatch.setattr(kafka_sink, "KafkaProducer", Producer)
    return kafka_sink.KafkaSink(KafkaSettings(), Metrics())


def predictions(n: int) -> list[Prediction]:
    return [Prediction(f"p{i}", 0, None, 1, "0") for i in range(n)]


def test_during_an_outage_outputs_queue_without_a_blocking_send_each(
    sink: kafka_sink.KafkaSink,
) -> None:
    producer = sink._producer
    producer.down = True
    sink.predictions(predictions(500))
    assert producer.tries == 1  # one send found the outage; 499 queued behind it
    assert sink.pending == 500
    producer.down = False
    sink.retry()
    assert sink.pending == 0
    assert [value for _, value in producer.sent][:2] == [
        b'{"id": "p0", "prediction": 0, "probabilities": null, "model_version": 1, "expert": "0"}',
        b'{"id": "p1", "prediction": 0, "probabilities": null, "model_version": 1, "expert": "0"}',
    ]
    assert len(producer.sent) == 500


def test_retry_probes_at_most_once_a_second(sink: kafka_sink.KafkaSink) -> None:
    producer = sink._producer
    producer.down = True
    sink.predictions(predictions(3))
    sink.retry()
    sink.retry()
    assert producer.tries == 2  # the first send, then one probe: the second was too soon


def test_a_size_the_broker_refuses_is_dropped_and_counted_not_retried(
    sink: kafka_sink.KafkaSink,
) -> None:
    sink._producer.refuse = MessageSizeTooLargeError("over message.max.bytes")
    sink.predictions(predictions(2))
    assert sink.pending == 0
    assert sink.flush(1)
    value = sink._metrics.registry.get_sample_value(
        "streamlearn_outputs_dropped_total",
        {"topic": "streamlearn.predictions", "reason": "too_large"},
    )
    assert value == 2
