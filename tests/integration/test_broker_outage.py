"""The daemon rides out its broker going away and coming back."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import pytest

from streamlearn.app.embedded import EmbeddedBroker, create_topics
from streamlearn.streams.synthetic import take
from tests.integration.conftest import DaemonProcess, send
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def test_daemon_stays_live_through_a_broker_restart_and_resumes(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    topics = {
        "input": f"in-{tag}",
        "predictions": f"pred-{tag}",
        "events": f"ev-{tag}",
        "dlq": f"dlq-{tag}",
    }
    broker = EmbeddedBroker().start()

    def make_topics() -> None:
        create_topics(
            broker.bootstrap,
            {topics["input"]: 1, topics["predictions"]: 1, topics["events"]: 1, topics["dlq"]: 1},
        )

    make_topics()
    daemon = DaemonProcess(tmp_path, broker, topics, f"g-{tag}")
    samples = [json.dumps(s).encode() for s in take("sea", 500)]
    try:
        send(broker, topics["input"], samples[:300])
        daemon.start()
        wait_for(
            lambda: daemon.metric("streamlearn_samples_learned_total") == 300,
            60,
            "the first 300 samples",
        )
        broker.kill()
        time.sleep(5)
        assert daemon.proc is not None
        assert daemon.proc.poll() is None, "the daemon died with its broker"
        assert daemon.metric("streamlearn_samples_learned_total") == 300
        # Serving goes on from the last snapshot while the broker is away.
        base = f"http://127.0.0.1:{daemon.http_port}"
        assert httpx.get(f"{base}/v2/health/ready", timeout=5).status_code == 200
        answer = httpx.post(
            f"{base}/v2/models/streamlearn/infer",
            timeout=5,
            json={
                "inputs": [
                    {"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}
                ]
            },
        )
        assert answer.status_code == 200 and int(answer.json()["model_version"]) > 0
        # tansu keeps its log in memory, so the restarted broker is refilled with the first
        # 300 records (a real broker keeps them), then 200 new ones follow at offsets 300+.
        broker = EmbeddedBroker(port=broker.port).start()
        make_topics()
        send(broker, topics["input"], samples)
        wait_for(
            lambda: daemon.metric("streamlearn_samples_learned_total") == 500,
            90,
            "the 200 samples sent after the broker came back",
        )
        # Whether the member kept its assignment or rejoined (then seeking to its checkpoint's
        # offset 300), the 300 records it had learned are not learned again.
        time.sleep(2)
        assert daemon.metric("streamlearn_samples_learned_total") == 500
        assert daemon.terminate()[0] == 0
    finally:
        daemon.stop()
        broker.stop()
