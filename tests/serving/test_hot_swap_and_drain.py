"""Snapshots swap under load without a failed request; SIGTERM-style stop drains first."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import grpc
import httpx

from tests.serving.conftest import Running, grpc_request, infer_body, labeled, settled, wait_until
from tests.support.slowmodel import SLOW_MARK, SLOW_SECONDS

ROW = [0.3, -0.2, 0.1, 0.0]
INFER = "/v2/models/streamlearn/infer"


def test_hot_swap_under_load_no_failures_and_versions_never_go_back(
    service_factory: Callable[..., Running],
) -> None:
    running = service_factory(records=500)
    running.source.add(labeled(300_000, seed=1))  # the learner stays busy throughout
    versions: dict[str, list[int]] = {}
    failures: list[str] = []
    stop = threading.Event()

    def http_client(name: str) -> None:
        with httpx.Client(base_url=running.base, timeout=10) as client:
            while not stop.is_set():
                response = client.post(INFER, json=infer_body([ROW]))
                if response.status_code != 200:
                    failures.append(f"{name}: {response.status_code} {response.text}")
                    continue
                versions[name].append(int(response.json()["model_version"]))

    def grpc_client(name: str) -> None:
        while not stop.is_set():
            try:
                response = running.stub.ModelInfer(grpc_request([ROW]))
            except grpc.RpcError as exc:
                failures.append(f"{name}: {exc.code()} {exc.details()}")
                continue
            versions[name].append(int(response.model_version))

    threads = []
    for i, target in enumerate([http_client, http_client, grpc_client, grpc_client]):
        name = f"{target.__name__}-{i}"
        versions[name] = []
        threads.append(threading.Thread(target=target, args=(name,)))
    for thread in threads:
        thread.start()
    time.sleep(3.0)
    stop.set()
    for thread in threads:
        thread.join(10)
    assert failures == []
    for name, seen in versions.items():
        assert len(seen) > 20, f"{name} made too few requests"
        assert seen == sorted(seen), f"{name} saw a version go backwards"
    distinct = {v for seen in versions.values() for v in seen}
    assert len(distinct) >= 10, "snapshots should have swapped many times under load"
    assert running.metrics()['streamlearn_snapshot_publishes_total{result="ok"}'] >= 10


def test_stop_turns_ready_off_first_finishes_in_flight_then_checkpoints(
    service_factory: Callable[..., Running],
) -> None:
    running = service_factory(
        model={"factory": "tests.support.slowmodel:build", "standardize": False},
        serve={"shutdown_delay_s": 0.5, "drain_timeout_s": 5.0, "inline_max_rows": 0},
    )
    settled(running, 2_000)  # else a loaded machine stops it mid-backlog (1,984 learned)
    slow_result: dict[str, float] = {}

    def slow_request() -> None:
        began = time.monotonic()
        response = httpx.post(
            f"{running.base}{INFER}", timeout=20, json=infer_body([[SLOW_MARK, 0, 0, 0]])
        )
        slow_result.update(code=response.status_code, seconds=time.monotonic() - began)

    in_flight = threading.Thread(target=slow_request)
    in_flight.start()
    time.sleep(0.3)  # the slow request is inside the model now
    stopper = threading.Thread(target=running.stop)
    stopper.start()

    def not_ready() -> bool:
        return running.http.get("/v2/health/ready").status_code == 503

    wait_until(not_ready, 2, "the drain to begin")
    during = running.http.get("/v2/health/ready")
    assert (during.status_code, during.json()) == (503, {"ready": False})
    # Within the shutdown delay requests are still answered, only readiness is off.
    assert running.http.post(INFER, json=infer_body([ROW])).status_code == 200
    in_flight.join(10)
    stopper.join(30)
    assert slow_result["code"] == 200 and slow_result["seconds"] >= SLOW_SECONDS
    files = sorted((running.daemon.settings.checkpoint.dir).glob("*.slck"))
    assert files, "the learner checkpoints after serving drained"
    assert running.daemon.progress.samples_learned == 2_000
