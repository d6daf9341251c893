"""Late labels on a real broker: samples now, labels 0-3 s later (some first, 5% never, one
bad record): every label joins its sample once, what was served is scored, the never-labeled
samples wait, the bad record is dead-lettered with its reason."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from kafka import KafkaProducer

from streamlearn.app.embedded import EmbeddedBroker, create_topics
from tests.integration.conftest import DaemonProcess, read_topic
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SAMPLES = 800


def schedule(labels_topic: str, samples_topic: str) -> tuple[list[tuple[float, str, bytes]], int]:
    """(time, topic, value) in time order, and how many samples stay unlabeled."""
    rng = random.Random(21)
    out: list[tuple[float, str, bytes]] = []
    never = 0
    for i in range(SAMPLES):
        a, b = rng.uniform(-1, 1), rng.uniform(-1, 1)
        at = i / 200
        sample = {"x": [a, b], "id": f"s{i}"}
        out.append((at, samples_topic, json.dumps(sample).encode()))
        if rng.random() < 0.05:
            never += 1
            continue
        label = {"id": f"s{i}", "y": int(a > b)}
        out.append((at + rng.uniform(-0.3, 3.0), labels_topic, json.dumps(label).encode()))
    out.append((0.5, labels_topic, b'{"id": "s1"}'))  # no y: dead-lettered
    return sorted(out, key=lambda e: e[0]), never


def test_labels_join_late_on_a_real_broker(
    broker: EmbeddedBroker,
    topics: dict[str, str],
    daemon_factory: Callable[..., DaemonProcess],
    tmp_path: Path,
) -> None:
    labels_topic = topics["input"].replace("in-", "labels-")
    create_topics(broker.bootstrap, {labels_topic: 1})
    daemon = daemon_factory(serve={"enabled": False})
    config = yaml.safe_load(daemon.config.read_text())
    config["kafka"]["labels_topic"] = labels_topic
    config["labels"] = {"enabled": True, "ttl_s": 600}
    daemon.config.write_text(yaml.safe_dump(config))
    daemon.start()
    wait_for(lambda: daemon.metric("streamlearn_model_version") is not None, 60, "metrics")
    events, never = schedule(labels_topic, topics["input"])
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    began = time.monotonic()
    for at, topic, value in events:
        if (ahead := began + max(at, 0.0) - time.monotonic()) > 0:
            producer.flush()
            time.sleep(ahead)
        producer.send(topic, value=value)
    producer.flush()
    producer.close()
    labeled = SAMPLES - never

    def joins() -> float:
        metrics = daemon.metrics()
        return sum(v for k, v in metrics.items() if k.startswith("streamlearn_served_joins_total"))

    wait_for(lambda: joins() == labeled, 60, f"{labeled} joins")
    wait_for(
        lambda: daemon.metric('streamlearn_pending_labels{area="samples"}') == never,
        10,
        "the pending gauge",
    )
    metrics = daemon.metrics()
    assert metrics['streamlearn_pending_labels{area="labels"}'] == 0
    assert metrics["streamlearn_label_delay_seconds_count"] == labeled
    assert metrics['streamlearn_records_invalid_total{reason="schema"}'] == 1
    assert metrics["streamlearn_samples_learned_total"] == labeled
    accuracy = metrics['streamlearn_served_accuracy{window="1000"}']
    right = sum(
        v
        for k, v in metrics.items()
        if k.startswith("streamlearn_served_joins_total") and 'result="right"' in k
    )
    assert accuracy == pytest.approx(right / labeled)
    [dead] = read_topic(broker, topics["dlq"], 1)
    headers = {k: v.decode() for k, v in dead.headers}
    assert (headers["reason"], headers["source_topic"]) == ("schema", labels_topic)
    assert headers["detail"].startswith("y:")
    code, _ = daemon.terminate()
    assert code == 0
