"""A serving process: HTTP and gRPC in front of the snapshots the learner publishes.

Started by the supervisor as ``python -m streamlearn.runtime.worker`` with its settings as
JSON on standard input, the listening HTTP socket inherited and
``PROMETHEUS_MULTIPROC_DIR`` set. It holds no learning state: a watcher thread loads each
new snapshot the learner writes, requests for the learner go over the IPC link.

SIGTERM drains: readiness turns 503 while requests are still answered for
``serve.shutdown_delay_s`` (load balancers need a moment to stop sending), then both
servers stop accepting and in-flight requests get ``serve.drain_timeout_s``.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any

from streamlearn.core.experts.expert import resolve_device
from streamlearn.core.logging import configure_logging
from streamlearn.metrics import ServingMetrics
from streamlearn.runtime.exposition import Exposition, learner_metrics_text
from streamlearn.runtime.ipc import LearnerLink
from streamlearn.runtime.launch import limit_torch_threads, read_launch, watch_parent
from streamlearn.runtime.paths import RuntimeDir
from streamlearn.runtime.remote import RemoteLearner
from streamlearn.runtime.snapshots import SnapshotReader, monotonic_from_wall
from streamlearn.serve.board import SnapshotBoard
from streamlearn.serve.core import ServingCore
from streamlearn.serve.frozen import Assembler
from streamlearn.serve.grpc import GrpcServer
from streamlearn.serve.http import create_app
from streamlearn.serve.httpserver import HttpServer
from streamlearn.settings import Settings

# How often a serving process looks for a new snapshot (one stat call): a new snapshot is
# served within this (plus its load) of being written.
SNAPSHOT_POLL_S = 0.01
_GAUGES_S = 0.25
# How long /metrics waits for the learner's part before answering with serving's alone.
_LEARNER_METRICS_S = 2.0


class ServingProcess:
    """One serving process: HTTP and gRPC over the snapshots the learner publishes.

    Holds no learning state: it loads the snapshots the learner writes and sends requests
    for the learner over IPC.
    """

    def __init__(self, launch: dict[str, Any]) -> None:
        settings = Settings.model_validate(launch["settings"])
        configure_logging(settings.log.level, settings.log.format)
        limit_torch_threads(settings.serve.torch_threads)
        self.settings = settings.serve
        runtime = RuntimeDir(Path(launch["runtime"]))
        self.metrics = ServingMetrics()
        self.board = SnapshotBoard(
            on_publish=lambda s: self.metrics.served_model_version.set(s.version)
        )
        self.reader = SnapshotReader(
            runtime.snapshots,
            Assembler(settings.model, settings.experts, resolve_device(settings.model.device)),
        )
        self.link = LearnerLink(runtime.learner_socket)
        self.learner = RemoteLearner(self.link, runtime.status, self.metrics)
        self.core = ServingCore(settings, self.board, self.learner, self.metrics)
        exposition = Exposition(
            runtime.metrics, lambda: learner_metrics_text(self.link, _LEARNER_METRICS_S)
        )
        http_socket = socket.socket(fileno=int(launch["http_fd"]))
        self.http = HttpServer(
            create_app(self.core, exposition), http_socket, self.settings.drain_timeout_s
        )
        self.grpc = (
            GrpcServer(self.core, self.settings.host, int(launch["grpc_port"]))
            if launch.get("grpc_port") is not None
            else None
        )
        self._stop = threading.Event()

    def run(self) -> int:
        self.link.start()
        self.http.start()
        if self.grpc is not None:
            self.grpc.start()
        self.metrics.serving_processes.set(1)
        watcher = threading.Thread(target=self._watch, name="snapshots", daemon=True)
        watcher.start()
        self._stop.wait()
        self._drain()
        return 0

    def request_stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        next_gauges = 0.0
        while not self._stop.is_set():
            snapshot = self.reader.poll()
            if snapshot is not None:
                self.board.publish(snapshot)
            now = time.monotonic()
            if now >= next_gauges:
                next_gauges = now + _GAUGES_S
                fresh = self.reader.fresh_at()
                if fresh is not None:
                    self.board.confirm(monotonic_from_wall(fresh))
                self._gauges()
            self._stop.wait(SNAPSHOT_POLL_S)

    def _gauges(self) -> None:
        self.metrics.snapshot_age.set(self.board.age())
        self.metrics.serving_ready.set(float(self.core.ready()))
        self.metrics.learner_up.set(float(self.learner.up))

    def _drain(self) -> None:
        self.core.begin_drain()
        self._gauges()
        time.sleep(self.settings.shutdown_delay_s)
        grace = self.settings.drain_timeout_s
        # Both drain at once: the whole drain takes one budget, not two.
        with ThreadPoolExecutor(2) as pool:
            pool.submit(self.http.stop)
            if self.grpc is not None:
                pool.submit(self.grpc.stop, grace)
        self.metrics.serving_processes.set(0)
        self.link.close()


def main() -> int:
    launch = read_launch()
    watch_parent()
    process = ServingProcess(launch)

    def on_term(signum: int, frame: FrameType | None) -> None:
        process.request_stop()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    return process.run()


if __name__ == "__main__":
    from streamlearn.runtime.launch import exit_now

    exit_now(main())
