"""The daemon with its serving front: what starts first, and how SIGTERM drains.

Start:
1. the HTTP and gRPC servers bind and start: live at once, ready once a snapshot exists;
2. the learner restores its checkpoint and publishes a snapshot (ready, even while the
   broker is still unreachable), then connects and learns.

Stop (first SIGTERM or SIGINT; a second one exits at once):
1. readiness turns 503, while requests are still answered for ``serve.shutdown_delay_s``
   so load balancers stop sending;
2. both servers stop accepting; in-flight requests get ``serve.drain_timeout_s``;
3. the learner learns what /v1/learn queued, checkpoints, commits and closes.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from streamlearn.daemon import Daemon
from streamlearn.logging import get_logger
from streamlearn.serve.core import ServingCore
from streamlearn.serve.grpc import GrpcServer
from streamlearn.serve.http import create_app
from streamlearn.serve.httpserver import HttpServer

log = get_logger(__name__)


class Service:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        serve = daemon.settings.serve
        self.settings = serve
        self.core = ServingCore(daemon.settings, daemon.snapshots, daemon.inbox, daemon.metrics,
                                progress=lambda: daemon.progress,
                                drift_history=daemon.drift_history,
                                expert_history=daemon.expert_history)
        self.http = HttpServer(create_app(self.core), serve.host, serve.http_port,
                               serve.drain_timeout_s)
        self.grpc = (GrpcServer(self.core, serve.host, serve.grpc_port)
                     if serve.grpc_enabled else None)
        self._stop_requested = threading.Event()
        self._servers_stopped = threading.Event()
        self._drain_thread: threading.Thread | None = None

    @property
    def http_port(self) -> int:
        return self.http.port

    @property
    def grpc_port(self) -> int | None:
        return self.grpc.port if self.grpc is not None else None

    def run(self) -> None:
        """Serve and learn until stopped; returns after the learner's final checkpoint."""
        self.http.start()
        if self.grpc is not None:
            self.grpc.start()
        log.info("serving", host=self.settings.host, http_port=self.http.port,
                 grpc_port=self.grpc.port if self.grpc else None,
                 model=self.settings.model_name,
                 writes_enabled=self.core.auth.writes_enabled)
        try:
            self.daemon.run()
        finally:
            if self._drain_thread is not None:
                self._drain_thread.join()
            self._stop_servers()

    def request_stop(self) -> None:
        """Begin the drain; safe to call from a signal handler, more than once."""
        if self._stop_requested.is_set():
            return
        self._stop_requested.set()
        self._drain_thread = threading.Thread(target=self._drain, name="drain", daemon=True)
        self._drain_thread.start()

    def _drain(self) -> None:
        self.core.begin_drain()
        log.info("draining", delay_s=self.settings.shutdown_delay_s,
                 drain_timeout_s=self.settings.drain_timeout_s)
        self._servers_stopped.wait(self.settings.shutdown_delay_s)
        self._stop_servers()
        self.daemon.request_stop()

    def _stop_servers(self) -> None:
        if self._servers_stopped.is_set():
            return
        self._servers_stopped.set()
        self.core.begin_drain()
        grace = self.settings.drain_timeout_s
        # Both drain at once: the whole drain takes one budget, not two.
        with ThreadPoolExecutor(2) as pool:
            pool.submit(self.http.stop)
            if self.grpc is not None:
                pool.submit(self.grpc.stop, grace)
        log.info("serving_stopped")
