"""Serving on the real daemon process (`streamlearn run`) fed from a real broker."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import pytest
import yaml

from streamlearn.app.embedded import EmbeddedBroker, free_port
from streamlearn.serve.proto import grpc_predict_v2_pb2 as pb
from streamlearn.serve.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from streamlearn.streams.synthetic import take
from tests.integration.conftest import DaemonProcess, send
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration
INFER = "/v2/models/streamlearn/infer"
ROW = [0.5] * 9  # agrawal has 9 features


def body(rows: int = 1) -> dict[str, Any]:
    return {
        "inputs": [{"name": "input", "shape": [rows, 9], "datatype": "FP32", "data": [ROW] * rows}]
    }


def ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/v2/health/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_sigterm_under_load_drains_then_checkpoints(
    broker: EmbeddedBroker, topics: dict[str, str], daemon_factory: Callable[..., DaemonProcess]
) -> None:
    send(broker, topics["input"], [json.dumps(s).encode() for s in take("agrawal", 3_000)])
    daemon = daemon_factory(serve={"shutdown_delay_s": 1.0, "drain_timeout_s": 3.0}).start()
    base = f"http://127.0.0.1:{daemon.http_port}"
    wait_for(lambda: ready(base), 60, "serving ready")
    codes: list[int | str] = []
    ready_codes: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=base, timeout=10) as client:
            while not stop.is_set():
                try:
                    codes.append(client.post(INFER, json=body()).status_code)
                except httpx.TransportError:
                    codes.append("refused")  # the listener is closed: expected at the end
                    time.sleep(0.01)

    def watch_ready() -> None:
        while not stop.is_set():
            try:
                ready_codes.append(httpx.get(f"{base}/v2/health/ready", timeout=2).status_code)
            except httpx.TransportError:
                time.sleep(0.01)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    threads.append(threading.Thread(target=watch_ready))
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    code, seconds = daemon.terminate()
    stop.set()
    for thread in threads:
        thread.join(10)
    assert code == 0 and seconds < 10
    answered = [c for c in codes if c != "refused"]
    assert answered and set(answered) == {200}, f"failed requests: {set(answered)}"
    assert 503 in ready_codes, "readiness must turn 503 before the listener closes"
    after_503 = ready_codes[ready_codes.index(503) :]
    assert set(after_503) == {503}, "once draining, readiness never comes back"
    events = [e["event"] for e in daemon.log_events()]
    order = [events.index(name) for name in ("draining", "serving_stopped", "daemon_stopped")]
    assert order == sorted(order)
    assert events.index("checkpoint_saved", order[1]) < order[2], (
        "the learner checkpoints after serving has drained"
    )


def test_serves_the_restored_checkpoint_while_the_broker_is_unreachable(
    broker: EmbeddedBroker, topics: dict[str, str], daemon_factory: Callable[..., DaemonProcess]
) -> None:
    send(broker, topics["input"], [json.dumps(s).encode() for s in take("agrawal", 1_000)])
    daemon = daemon_factory().start()
    wait_for(
        lambda: daemon.metric("streamlearn_samples_learned_total") == 1_000,
        60,
        "all samples learned",
    )
    assert daemon.terminate()[0] == 0
    # Point the same daemon (same checkpoint dir) at a port where no broker listens.
    config = yaml.safe_load(daemon.config.read_text())
    config["kafka"]["bootstrap_servers"] = f"127.0.0.1:{free_port()}"
    daemon.config.write_text(yaml.safe_dump(config))
    daemon.start()
    base = f"http://127.0.0.1:{daemon.http_port}"
    wait_for(lambda: ready(base), 30, "ready from the checkpoint alone")
    response = httpx.post(f"{base}{INFER}", json=body(2), timeout=5).json()
    assert int(response["model_version"]) > 0 and response["outputs"][0]["shape"] == [2]
    with grpc.insecure_channel(f"127.0.0.1:{daemon.grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerReady(pb.ServerReadyRequest()).ready
    status = httpx.get(f"{base}/v1/status", timeout=5).json()
    assert status["learner"]["samples_learned"] == 1_000
    code, seconds = daemon.terminate()
    assert code == 0 and seconds < 10
