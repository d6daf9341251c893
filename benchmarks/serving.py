"""Serving latency and throughput while the learner runs flat out.

    python benchmarks/serving.py [--requests N] [--features F] [--seconds S]

A server process runs the daemon with an endless in-memory source (the learner never
waits for input: full speed) behind the real HTTP and gRPC servers. This process is the
client: one connection per transport, one request at a time, timed from send to parsed
response. HTTP uses a minimal keep-alive socket client (as wrk would), gRPC the grpcio stub:

- single-sample infer latency p50/p90/p99 over HTTP and gRPC (F features, default 20);
- batched infer throughput (256 rows per request), rows/s, for --seconds per transport;
- the learner's samples/s with no serving load and during each serving phase;
- the same latencies with the learner idle, to show what learning costs serving.

Results go to benchmarks/results/serving.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import random
import socket
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import torch

RESULTS = Path(__file__).parent / "results" / "serving.json"
BATCH_ROWS = 256


class EndlessSource:
    """Labeled random records forever (a fixed linear concept), never blocking."""

    def __init__(self, n_features: int, active: bool) -> None:
        rng = random.Random(0)
        weights = [rng.uniform(-1, 1) for _ in range(n_features)]
        self.pool = []
        for _ in range(4096):
            x = [rng.gauss(0, 1) for _ in range(n_features)]
            y = int(sum(w * v for w, v in zip(weights, x, strict=True)) > 0)
            self.pool.append(json.dumps({"x": x, "y": y}).encode())
        self.active = active
        self.offset = 0

    def poll(self, max_records: int, timeout_s: float) -> list[Any]:
        from streamlearn.types import Record

        if not self.active:
            time.sleep(timeout_s)
            return []
        out = [Record("bench", 0, self.offset + i, self.pool[(self.offset + i) % 4096])
               for i in range(min(max_records, 256))]
        self.offset += len(out)
        return out

    def seek(self, positions: Any) -> None: ...
    def commit(self, positions: Any) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def highwater(self, tp: Any) -> int | None:
        return None
    def close(self, commit: Any = None) -> None: ...


def serve(n_features: int, learner_active: bool, max_batch: int, ports: Any) -> None:
    """The server process: daemon + HTTP + gRPC, until terminated."""
    from streamlearn.daemon import Daemon
    from streamlearn.logging import configure_logging
    from streamlearn.metrics import Metrics
    from streamlearn.service import Service
    from streamlearn.settings import load_settings
    from streamlearn.sinks import MemorySink
    from streamlearn.types import Prediction

    configure_logging("error", "json")
    torch.set_num_threads(1)
    settings = load_settings(None, model={"n_features": n_features, "hidden": [64, 64]},
                             engine={"max_batch": max_batch},
                             checkpoint={"enabled": False},
                             serve={"host": "127.0.0.1", "http_port": 0, "grpc_port": 0})

    class NullSink(MemorySink):
        def predictions(self, items: list[Prediction]) -> None: ...

    source = EndlessSource(n_features, active=True)
    daemon = Daemon(settings, source_factory=lambda listener: source,  # type: ignore[arg-type,return-value]
                    sink_factory=lambda metrics: NullSink(), metrics=Metrics())
    service = Service(daemon)

    def idle_after_warmup() -> None:
        # The idle run still learns a little first, so there is a snapshot to serve.
        while daemon.engine.samples_learned < 2_000:
            time.sleep(0.05)
        source.active = learner_active

    threading.Thread(target=idle_after_warmup, daemon=True).start()
    ports.put((service.http.port, service.grpc.port if service.grpc else None))
    service.run()


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 3), "requests": len(ordered)}


class KeepAliveHttp:
    """A minimal HTTP/1.1 keep-alive client: a lean load generator, so the figures measure
    the server (a full client such as httpx adds about half a millisecond of its own)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pending = b""

    def post(self, path: str, body: bytes) -> bytes:
        head = (f"POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n").encode()
        self.sock.sendall(head + body)
        while b"\r\n\r\n" not in self.pending:
            self.pending += self.sock.recv(65536)
        status, _, rest = self.pending.partition(b"\r\n\r\n")
        if not status.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(status.decode(errors="replace"))
        length = int(next(line.split(b":")[1] for line in status.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        while len(rest) < length:
            rest += self.sock.recv(65536)
        self.pending = rest[length:]
        return rest[:length]


class Clients:
    def __init__(self, http_port: int, grpc_port: int, n_features: int) -> None:
        from streamlearn.serve.proto import grpc_predict_v2_pb2 as pb
        from streamlearn.serve.proto import grpc_predict_v2_pb2_grpc as pb_grpc

        self.pb = pb
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=10)
        self.raw = KeepAliveHttp(http_port)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)
        self.n_features = n_features
        rng = np.random.default_rng(1)
        rows = {n: rng.normal(size=(n, n_features)).astype(np.float32) for n in (1, BATCH_ROWS)}
        # Bodies are built once: the loop times the server, not request encoding.
        self.json_bodies = {n: json.dumps({"inputs": [{
            "name": "input", "shape": [n, n_features], "datatype": "FP32",
            "data": r.ravel().tolist()}]}).encode() for n, r in rows.items()}
        self.grpc_requests = {n: pb.ModelInferRequest(model_name="streamlearn", inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name="input", datatype="FP32", shape=[n, n_features],
                contents=pb.InferTensorContents(fp32_contents=r.ravel().tolist()))])
            for n, r in rows.items()}

    def http_infer(self, rows: int) -> None:
        json.loads(self.raw.post("/v2/models/streamlearn/infer", self.json_bodies[rows]))

    def grpc_infer(self, rows: int) -> None:
        self.stub.ModelInfer(self.grpc_requests[rows])

    def learned(self) -> int:
        return int(self.http.get("/v1/status").json()["learner"]["samples_learned"])


def timed(call: Callable[[], None], count: int) -> list[float]:
    out = []
    for _ in range(count):
        began = time.perf_counter()
        call()
        out.append(time.perf_counter() - began)
    return out


def learner_rate(clients: Clients, during: Callable[[], Any]) -> tuple[float, Any]:
    before, began = clients.learned(), time.perf_counter()
    result = during()
    return (clients.learned() - before) / (time.perf_counter() - began), result


def run_server(n_features: int, learner_active: bool, args: argparse.Namespace
               ) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    ports = ctx.Queue()
    proc = ctx.Process(target=serve, daemon=True,
                       args=(n_features, learner_active, args.max_batch, ports))
    proc.start()
    http_port, grpc_port = ports.get(timeout=60)
    clients = Clients(http_port, grpc_port, n_features)
    try:
        _wait_ready(clients)
        out: dict[str, Any] = {}
        quiet, _ = learner_rate(clients, lambda: time.sleep(args.seconds))
        out["learner_samples_per_s_no_load"] = round(quiet)
        for transport, call in (("http", clients.http_infer), ("grpc", clients.grpc_infer)):
            timed(lambda c=call: c(1), 200)  # warm-up: connections, allocator, caches
            rate, lat = learner_rate(clients, lambda c=call: timed(lambda: c(1),
                                                                      args.requests))
            out[f"{transport}_single"] = {**percentiles(lat),
                                          "learner_samples_per_s": round(rate)}
            rate, rows_per_s = learner_rate(clients, lambda c=call: _throughput(c, args.seconds))
            out[f"{transport}_batch_{BATCH_ROWS}"] = {"rows_per_s": round(rows_per_s),
                                                      "learner_samples_per_s": round(rate)}
        return out
    finally:
        proc.terminate()
        proc.join(15)


def _throughput(call: Callable[[int], None], seconds: float) -> float:
    count, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        call(BATCH_ROWS)
        count += 1
    return count * BATCH_ROWS / (time.perf_counter() - began)


def _wait_ready(clients: Clients) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if clients.http.get("/v2/health/ready").status_code == 200:
                time.sleep(1.0)  # the idle run switches its learner off after warm-up
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server never became ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max-batch", type=int, default=32, help="the learner's batch")
    args = parser.parse_args()
    results = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "cpus": mp.cpu_count()},
        "features": args.features,
        "learner_max_batch": args.max_batch,
        "learner_busy": run_server(args.features, True, args),
        "learner_idle": run_server(args.features, False, args),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
