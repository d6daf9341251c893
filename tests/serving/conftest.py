"""A running service on free loopback ports: the learner in this process, serving in its own.

The learner reads an in-memory source (no broker needed here; the Kafka path of serving, with
the learner as its own process too, is in tests/integration/test_serving_kafka.py), and runs
as a thread of the test so tests can feed it and look at it. The HTTP and gRPC servers run in
a serving process started by the service, as ``streamlearn run`` starts them: every call
below is a real HTTP or gRPC request over TCP to another process, whose snapshots and
requests to the learner cross the same files and socket as in production.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from streamlearn.app.service import Service
from streamlearn.daemon import Daemon
from streamlearn.metrics import Metrics
from streamlearn.serve.proto import grpc_predict_v2_pb2 as pb
from streamlearn.serve.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from streamlearn.settings import load_settings
from streamlearn.sinks import MemorySink
from tests.support.livesource import LiveSource
from tests.support.waiting import wait_for

N_FEATURES = 4
TOKEN = "9f2c61d0a7e84b35c1d6"  # settings refuse short or placeholder tokens


def labeled(n: int, seed: int = 0) -> list[bytes]:
    """A linear concept over N_FEATURES features, classes 0 and 1."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x = [rng.uniform(-1, 1) for _ in range(N_FEATURES)]
        out.append(json.dumps({"x": x, "y": int(x[0] + x[1] > 0)}).encode())
    return out


@dataclass
class Running:
    service: Service
    daemon: Daemon
    source: LiveSource
    sink: MemorySink
    thread: threading.Thread
    http: httpx.Client
    stub: Any
    channel: grpc.Channel

    @property
    def http_port(self) -> int:
        return self.service.http_port

    @property
    def grpc_port(self) -> int:
        port = self.service.grpc_port
        assert port is not None
        return port

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def stop(self) -> None:
        self.service.request_stop()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the service did not stop"

    def served_version(self) -> int | None:
        version: int | None = self.http.get("/v1/status").json()["served_version"]
        return version

    def metrics(self) -> dict[str, float]:
        out = {}
        for line in self.http.get("/metrics").text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out


def infer_body(rows: list[list[float]], **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "input", "shape": [len(rows), len(rows[0])], "datatype": "FP32", "data": rows}
        ],
        **extra,
    }


def grpc_request(rows: list[list[float]], **extra: Any) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="input",
        datatype="FP32",
        shape=[len(rows), len(rows[0])],
        contents=pb.InferTensorContents(fp32_contents=[v for r in rows for v in r]),
    )
    return pb.ModelInferRequest(model_name="streamlearn", inputs=[tensor], **extra)


def start_service(tmp_path: Path, records: int = 2_000, **sections: Any) -> Running:
    serve = {
        "host": "127.0.0.1",
        "http_port": 0,
        "grpc_port": 0,
        "auth_token": TOKEN,
        "publish_interval_ms": 50,
        "shutdown_delay_s": 0.2,
        "drain_timeout_s": 3.0,
        **sections.pop("serve", {}),
    }
    model = {"hidden": [8], "learning_rate": 0.02, **sections.pop("model", {})}
    settings = load_settings(
        None, model=model, checkpoint={"dir": str(tmp_path / "ckpt")}, serve=serve, **sections
    )
    source = LiveSource()
    source.add(labeled(records))
    sink = MemorySink()
    daemon = Daemon(
        settings, source_factory=source.bind, sink_factory=lambda m: sink, metrics=Metrics()
    )
    service = Service(daemon)
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}")
    running = Running(
        service,
        daemon,
        source,
        sink,
        thread,
        httpx.Client(base_url=f"http://127.0.0.1:{service.http_port}", timeout=10),
        pb_grpc.GRPCInferenceServiceStub(channel),
        channel,
    )
    return running


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    wait_for(predicate, timeout, what, interval=0.02)


def ready(running: Running) -> bool:
    try:
        return running.http.get("/v2/health/ready").status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def _services(directory: Path) -> Iterator[Callable[..., Running]]:
    made: list[Running] = []

    def make(wait_ready: bool = True, **kwargs: Any) -> Running:
        running = start_service(directory / f"s{len(made)}", **kwargs)
        made.append(running)
        if wait_ready:  # the serving process imports torch first: seconds on this machine
            wait_until(lambda: ready(running), 60, "the model to be ready")
        return running

    try:
        yield make
    finally:
        for running in made:
            if running.thread.is_alive():
                running.stop()
            running.http.close()
            running.channel.close()


@pytest.fixture
def service_factory(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    with _services(tmp_path) as make:
        yield make


def settled(running: Running, samples: int) -> None:
    """Wait until ``samples`` are learned and the serving process serves the newest version."""
    daemon = running.daemon

    def caught_up() -> bool:
        return (
            daemon.engine.samples_learned >= samples
            and running.served_version() == daemon.engine.version
        )

    wait_until(caught_up, 30, f"{samples} samples learned and served")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One service for a module's tests that only read (infer, metadata, errors): starting
    one costs seconds (a serving process imports torch). Tests that learn, checkpoint, stop
    or count requests exactly take ``fresh``."""
    with _services(tmp_path_factory.mktemp("served")) as make:
        running = make()
        settled(running, 2_000)
        yield running


@pytest.fixture
def fresh(service_factory: Callable[..., Running]) -> Running:
    """A service of its own, learned and served like ``served``."""
    running = service_factory()
    settled(running, 2_000)
    return running
