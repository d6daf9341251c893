"""The service: one learner and ``serve.workers`` serving processes under one supervisor.

The learner and the servers are separate processes because one interpreter's lock makes
each slow the other. ``streamlearn run`` runs the learner as a process too
(:class:`~streamlearn.runtime.processes.ProcessLearner`); tests and the demo hand a
:class:`~streamlearn.daemon.Daemon` to run as a thread of this process. The supervisor is
this object's :meth:`Service.run`: it holds the listening sockets, restarts a serving process
that dies (the learner keeps learning) and a learner process that crashes (serving turns
not-ready meanwhile, answering from the last complete snapshot, never from a half-made one).

Start:
1. the HTTP socket listens and the gRPC port is reserved here, before any child exists;
2. the learner restores its checkpoint and publishes a snapshot (ready, even while the
   broker is still unreachable), then connects and learns;
3. the serving processes start: live at once, ready once a snapshot and the learner exist.

Stop (first SIGTERM or SIGINT; a second one kills every child and exits at once):
1. each serving process turns not-ready, still answering for ``serve.shutdown_delay_s`` so
   load balancers stop sending, then stops accepting; in-flight requests get
   ``serve.drain_timeout_s``;
2. the learner learns what /v1/learn queued, checkpoints once, commits and closes.
"""

from __future__ import annotations

import socket
import threading
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, cast

from streamlearn.core.logging import get_logger
from streamlearn.runtime.exposition import Exposition, learner_metrics_text, serve_exposition
from streamlearn.runtime.ipc import LearnerLink
from streamlearn.runtime.launch import EXIT_FAILED, EXIT_REJOIN, EXIT_USAGE
from streamlearn.runtime.paths import RuntimeDir
from streamlearn.runtime.processes import (
    Backoff,
    Learner,
    ProcessLearner,
    ServerPool,
    ThreadLearner,
)
from streamlearn.runtime.sockets import listen_socket, reserve_port

if TYPE_CHECKING:  # the supervisor of ``streamlearn run`` never imports torch
    from streamlearn.daemon import Daemon

log = get_logger(__name__)
# How often the supervisor looks at its children.
SUPERVISE_S = 0.1
# Past the serving processes' own drain budget: interpreter shutdown and the last flushes.
_SERVING_STOP_MARGIN_S = 5.0
# The learner's shutdown: learn the inbox, flush outputs (bounded by 3 s), checkpoint.
_LEARNER_STOP_S = 60.0
# How long a scrape waits for the learner's part before answering with serving's alone.
_LEARNER_METRICS_S = 2.0


class Service:
    """Supervises one learner and the serving processes: starts, restarts and stops them.

    Keep it free of torch: the supervisor stays small, and only its children learn or serve.
    """

    def __init__(self, learner: Daemon | Learner) -> None:
        self.learner: Learner = (
            learner
            if isinstance(learner, ThreadLearner | ProcessLearner)
            else ThreadLearner(cast("Daemon", learner))
        )
        self.settings = self.learner.settings
        serve = self.settings.serve
        self.runtime = RuntimeDir.create()
        try:
            self.http_socket = listen_socket(serve.host, serve.http_port, "serve.http_port")
            self._grpc_reservation = (
                reserve_port(serve.host, serve.grpc_port, "serve.grpc_port")
                if serve.grpc_enabled
                else None
            )
        except OSError:
            self.runtime.remove()
            raise
        grpc = self._grpc_reservation
        self._ports = (
            int(self.http_socket.getsockname()[1]),
            int(grpc.getsockname()[1]) if grpc is not None else None,
        )
        self.servers = ServerPool(self.settings, self.runtime, self.http_socket, self.grpc_port)
        self._stop = threading.Event()
        self._learner_backoff = Backoff()
        self._metrics_server: ThreadingHTTPServer | None = None

    @property
    def http_port(self) -> int:
        return self._ports[0]

    @property
    def grpc_port(self) -> int | None:
        return self._ports[1]

    def serve_metrics(self, host: str, port: int) -> int:
        """``/metrics`` of the whole service on its own port; the port bound."""
        link = LearnerLink(self.runtime.learner_socket)
        link.start()
        exposition = Exposition(
            self.runtime.metrics, lambda: learner_metrics_text(link, _LEARNER_METRICS_S)
        )
        self._metrics_server = serve_exposition(exposition, host, port)
        return int(self._metrics_server.server_address[1])

    def run(self) -> int:
        """Serve and learn until stopped; returns after the learner's final checkpoint."""
        serve = self.settings.serve
        try:
            self.learner.start(self.runtime)
            self.servers.start()
            log.info(
                "serving",
                host=serve.host,
                http_port=self.http_port,
                grpc_port=self.grpc_port,
                workers=serve.workers,
                model=serve.model_name,
                writes_enabled=serve.auth_token is not None or serve.auth_token_file is not None,
            )
            code = self._supervise()
        finally:
            self._shutdown()
        error = getattr(self.learner, "error", None)
        if error is not None:
            raise error
        return code

    def request_stop(self) -> None:
        """Begin the drain; safe to call from a signal handler, more than once."""
        self._stop.set()

    def kill(self) -> None:
        """Stop every child at once (a second signal): checkpoints are atomic, so safe."""
        self.servers.kill()
        self.learner.kill()

    def _supervise(self) -> int:
        while not self._stop.wait(SUPERVISE_S):
            self.servers.check()
            code = self.learner.exit_code()
            if code is None or self._learner_restarted(code):
                continue
            return code
        return 0

    def _learner_restarted(self, code: int) -> bool:
        """Restart a learner that crashed; False when it must not come back."""
        if code in (0, EXIT_FAILED, EXIT_USAGE) or not self.learner.restartable:
            log.log(
                40 if code else 20, "learner_exited", exit_code=code, action="stopping the service"
            )
            return False
        if self._learner_backoff.due is None:
            delay = self._learner_backoff.exited()
            rejoins = code == EXIT_REJOIN  # its sync group re-forms: expected, not a crash
            log.log(
                30 if rejoins else 40,
                "learner_exited",
                exit_code=code,
                restart_in_s=delay,
                action="rejoining the sync group" if rejoins else "serving stays up, not ready",
            )
        if self._learner_backoff.ready():
            self.learner.start(self.runtime)
        return True

    def _shutdown(self) -> None:
        serve = self.settings.serve
        log.info("draining", delay_s=serve.shutdown_delay_s, drain_timeout_s=serve.drain_timeout_s)
        self.servers.stop(serve.shutdown_delay_s + serve.drain_timeout_s + _SERVING_STOP_MARGIN_S)
        log.info("serving_stopped")
        self.learner.request_stop()
        if self.learner.join(_LEARNER_STOP_S) is None:
            log.error("learner_killed", after_s=_LEARNER_STOP_S)
            self.learner.kill()
        self._close()

    def _close(self) -> None:
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        for sock in (self.http_socket, self._grpc_reservation):
            if isinstance(sock, socket.socket):
                sock.close()
        self.runtime.remove()
