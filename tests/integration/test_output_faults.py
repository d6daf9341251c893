"""The Kafka sink and source against a real broker when outputs or connections go wrong."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from streamlearn.app.embedded import EmbeddedBroker, create_topics
from streamlearn.core.types import DeadLetter, Prediction, Record
from streamlearn.metrics import Metrics
from streamlearn.settings import KafkaSettings
from streamlearn.sinks.kafka import KafkaSink
from tests.integration.conftest import ROOT, read_topic
from tests.support.kafkaproxy import ProxiedBroker

pytestmark = pytest.mark.integration


def sample_value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_an_output_too_large_to_land_is_dropped_or_cut_never_retried(
    broker: EmbeddedBroker, topics: dict[str, str]
) -> None:
    settings = KafkaSettings(
        bootstrap_servers=broker.bootstrap,
        predictions_topic=topics["predictions"],
        dlq_topic=topics["dlq"],
        events_topic=topics["events"],
        max_message_bytes=4_096,
    )
    metrics = Metrics()
    sink = KafkaSink(settings, metrics)
    huge_id = "i" * 10_000
    sink.predictions([Prediction(huge_id, 1, None, 3, "0"), Prediction("small", 1, None, 3, "0")])
    source = Record(topics["input"], 0, 7, b"v" * 20_000, b"key")
    sink.dead_letters([DeadLetter(source.value, "oversize", "too big", source)])
    assert sink.flush(10)
    assert sink.pending == 0
    assert (
        sample_value(
            metrics,
            "streamlearn_outputs_dropped_total",
            topic=topics["predictions"],
            reason="too_large",
        )
        == 1
    )
    assert sample_value(metrics, "streamlearn_outputs_truncated_total", topic=topics["dlq"]) == 1
    sink.close()

    landed = read_topic(broker, topics["predictions"], 1)
    assert [r.key for r in landed] == [b"small"]
    (letter,) = read_topic(broker, topics["dlq"], 1)
    headers = dict(letter.headers)
    assert headers["truncated"] == b"true" and headers["value_bytes"] == b"20000"
    assert headers["reason"] == b"oversize" and headers["source_offset"] == b"7"
    assert letter.value == b"v" * len(letter.value) and 3_000 < len(letter.value) < 4_096


# Run in a process of its own: pytest's log capture keeps kafka-python's log records, and
# with them the connections they name, alive for the whole test.
_CONNECT_TRIES = """
import gc, json, os, threading
from kafka.errors import KafkaError
from streamlearn.app.embedded import free_port
from streamlearn.metrics import Metrics
from streamlearn.settings import KafkaSettings
from streamlearn.sinks.kafka import KafkaSink
from streamlearn.sources.kafka import KafkaSource

class NoListener:
    def on_assigned(self, partitions): pass
    def on_revoked(self, partitions): pass

settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
counts = []
for attempt in range(3):
    for connect in (lambda: KafkaSource(settings, NoListener()),
                    lambda: KafkaSink(settings, Metrics())):
        try:
            connect()
        except KafkaError:
            pass
    gc.collect()
    counts.append([threading.active_count(), len(os.listdir("/proc/self/fd"))])
print(json.dumps(counts))
"""


def test_failed_connects_leak_no_threads_and_no_descriptors() -> None:
    """Each failed try used to leave a client IO thread and four descriptors behind."""
    done = subprocess.run(
        [sys.executable, "-c", _CONNECT_TRIES],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=True,
    )
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    threads = [t for t, _ in counts]
    fds = [f for _, f in counts]
    assert threads == [1] * 3  # the main thread alone after every try
    assert max(fds[1:]) - fds[0] <= 3  # no growth: 2 sockets per try before the fix


def test_outputs_queue_behind_a_failure_and_land_once_the_broker_is_back() -> None:
    """``flush`` is False while outputs have not landed (it once said True for outputs
    still in the producer's buffer), and lands them all, in order, once the broker is back."""
    with ProxiedBroker() as first:
        create_topics(first.bootstrap, {"outage-preds": 1})
        settings = KafkaSettings(
            bootstrap_servers=first.bootstrap, predictions_topic="outage-preds"
        )
        metrics = Metrics()
        sink = KafkaSink(settings, metrics)
        sink.predictions([Prediction("before", 0, None, 1, "0")])
        assert sink.flush(10)
    sink.predictions([Prediction(f"p{i}", 0, None, 1, "0") for i in range(200)])
    assert not sink.flush(3)
    # tansu keeps its log in memory: the restarted broker starts empty. It acks a Produce
    # for a topic it does not have and stores nothing, so the proxy holds the producer's
    # retries until the topic is made again, as a Kafka broker that kept it would take them.
    # Only the 200 that waited are read back.
    with ProxiedBroker(port=first.port, hold_produce=True) as again:
        create_topics(again.bootstrap, {"outage-preds": 1})
        assert again.proxy is not None
        again.proxy.release_produce()
        assert sink.flush(30)
        assert sink.pending == 0
        sink.close()
        landed = read_topic(again, "outage-preds", 200)
    assert [r.key for r in landed] == [f"p{i}".encode() for i in range(200)]
