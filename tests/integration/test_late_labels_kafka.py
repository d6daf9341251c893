"""Late labels on a real broker: samples now, labels 0-3 s later (some first, 5% never, one
bad record): every label joins its sample once, what was served is scored, the never-labeled
samples wait, the bad record is dead-lettered with its reason."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kafka import KafkaProducer

from streamlearn.app.embedded import EmbeddedBroker, create_topics
from tests.integration.conftest import DaemonProcess, read_topic, send
from tests.integration.test_serving_kafka import ready
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
    delays = [
        v for k, v in metrics.items() if k.startswith("streamlearn_label_delay_seconds_count")
    ]
    assert sum(delays) == labeled  # one series per expert that answered
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


def test_served_requests_with_an_id_join_their_late_labels(
    broker: EmbeddedBroker,
    topics: dict[str, str],
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """A real HTTP request with an id is kept by the learner: its label, sent later on the
    labels topic, scores the answer served then and is learned; rows without a label wait.
    The challenger answers the same rows and is listed, with its paired scores, in
    /v1/models."""
    labels_topic = topics["input"].replace("in-", "labels-")
    create_topics(broker.bootstrap, {labels_topic: 1})
    daemon = daemon_factory()
    config = yaml.safe_load(daemon.config.read_text())
    config["kafka"]["labels_topic"] = labels_topic
    config["labels"] = {"enabled": True, "ttl_s": 600, "challenger": {"enabled": True}}
    daemon.config.write_text(yaml.safe_dump(config))
    rng = random.Random(7)
    rows = [[rng.uniform(-1, 1), rng.uniform(-1, 1)] for _ in range(300)]
    send(
        broker,
        topics["input"],
        [json.dumps({"x": x, "y": int(x[0] > x[1])}).encode() for x in rows],
    )
    daemon.start()
    base = f"http://127.0.0.1:{daemon.http_port}"
    wait_for(lambda: daemon.metric("streamlearn_samples_learned_total") == 300, 60, "training")
    wait_for(lambda: ready(base), 30, "serving ready")
    one = _infer(base, "req-1", [[0.9, -0.9]])
    three = _infer(base, "req-2", [[0.1, 0.5], [-0.7, 0.2], [0.4, 0.3]])
    _infer(base, None, [[0.2, 0.1]])  # no id: answered, not kept
    wait_for(
        lambda: daemon.metric('streamlearn_pending_labels{area="samples"}') == 4,
        20,
        "the served rows pending",
    )
    labels = [
        {"id": "req-1", "y": one[0]},  # the answer served was right
        {"id": "req-2/1", "y": 1 - three[1]},  # the answer served was wrong
    ]
    send(broker, labels_topic, [json.dumps(label).encode() for label in labels])
    wait_for(lambda: _joins(daemon, "right") + _joins(daemon, "wrong") == 2, 30, "2 joins")
    assert (_joins(daemon, "right"), _joins(daemon, "wrong")) == (1, 1)
    wait_for(lambda: daemon.metric("streamlearn_samples_learned_total") == 302, 10, "learned")
    wait_for(
        lambda: daemon.metric('streamlearn_pending_labels{area="samples"}') == 2,
        10,
        "req-2/0 and req-2/2 still waiting",
    )
    assert daemon.metric('streamlearn_served_accuracy{window="100"}') == 0.5
    assert not any(k.startswith("streamlearn_served_rows_dropped") for k in daemon.metrics())
    # /v1/models: the champion with its live scores, the challenger scored on the same joins.
    wait_for(lambda: _models(base)[0]["live"]["joins"] == 2, 10, "the joins in /v1/models")
    champion, challenger = _models(base)
    assert (champion["role"], challenger["role"]) == ("champion", "challenger")
    assert champion["live"]["served_accuracy"]["100"] == 0.5
    assert challenger["live"]["config"] == {"learning_rate": 0.01}
    assert challenger["live"]["open_block"]["pairs"] == 2
    code, _ = daemon.terminate()
    assert code == 0


def _infer(base: str, request_id: str | None, rows: list[list[float]]) -> list[int]:
    body: dict[str, object] = {
        "inputs": [{"name": "input", "shape": [len(rows), 2], "datatype": "FP32", "data": rows}]
    }
    if request_id is not None:
        body["id"] = request_id
    response = httpx.post(f"{base}/v2/models/streamlearn/infer", json=body, timeout=10)
    assert response.status_code == 200, response.text
    [predictions] = [o for o in response.json()["outputs"] if o["name"] == "predictions"]
    return [int(p) for p in predictions["data"]]


def _models(base: str) -> list[dict[str, Any]]:
    models: list[dict[str, Any]] = httpx.get(f"{base}/v1/models", timeout=5).json()["models"]
    return models


def _joins(daemon: DaemonProcess, result: str) -> float:
    return sum(
        v
        for k, v in daemon.metrics().items()
        if k.startswith("streamlearn_served_joins_total") and f'result="{result}"' in k
    )
