"""uvicorn on a background thread, over a socket that is already listening.

The supervisor binds and listens once (:mod:`streamlearn.runtime.sockets`); every serving
process accepts on that same socket (inherited), so a serving process that restarts loses no
connection the kernel queued.
"""

from __future__ import annotations

import socket
import threading

import uvicorn
from fastapi import FastAPI

# uvicorn's own loop checks should_exit every 0.1 s; joining waits this much past the drain.
_JOIN_MARGIN_S = 2.0


class HttpServer:
    """uvicorn on a background thread, accepting on a socket the supervisor already listens on.

    It never binds: a restarted serving process takes over the same queue of connections.
    """

    def __init__(self, app: FastAPI, sock: socket.socket, drain_timeout_s: float) -> None:
        self.socket = sock
        self.port: int = sock.getsockname()[1]
        self._drain_timeout_s = drain_timeout_s
        config = uvicorn.Config(
            app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=drain_timeout_s,  # type: ignore[arg-type]
            server_header=False,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)

    def _run(self) -> None:
        self.server.run(sockets=[self.socket])

    def start(self) -> None:
        self._thread.start()

    @property
    def started(self) -> bool:
        return bool(self.server.started)

    def stop(self) -> None:
        """Stop accepting; in-flight requests get the drain budget to finish."""
        self.server.should_exit = True
        self._thread.join(self._drain_timeout_s + _JOIN_MARGIN_S)
