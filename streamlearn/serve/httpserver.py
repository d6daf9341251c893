"""uvicorn on a background thread, bound before it starts so the port is known at once."""

from __future__ import annotations

import socket
import threading

import uvicorn
from fastapi import FastAPI

# uvicorn's own loop checks should_exit every 0.1 s; joining waits this much past the drain.
_JOIN_MARGIN_S = 2.0


class HttpServer:
    def __init__(self, app: FastAPI, host: str, port: int, drain_timeout_s: float) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, port))
        self.port: int = self.socket.getsockname()[1]
        self._drain_timeout_s = drain_timeout_s
        config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=drain_timeout_s,  # type: ignore[arg-type]
                                server_header=False)
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
        self.socket.close()
