"""One ``/metrics`` for the whole service: serving's multiprocess files and the learner's
own registry, which it hands over the IPC link on each scrape.

The two never define the same family (``ServingMetrics`` and ``Metrics`` split them), so
their texts concatenate into one valid exposition. While the learner is down, the serving
part alone is answered, ``streamlearn_learner_up`` 0 among it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from streamlearn.runtime.ipc import LearnerLink, LinkClosedError
from streamlearn.runtime.sockets import binding


class Exposition:
    """The service's one ``/metrics`` text: the serving processes' files plus the learner's."""

    def __init__(self, directory: Path, learner_text: Callable[[], str | None]) -> None:
        self.registry = CollectorRegistry()
        MultiProcessCollector(self.registry, path=str(directory))  # type: ignore[no-untyped-call]
        self._learner_text = learner_text

    def __call__(self) -> bytes:
        serving = generate_latest(self.registry)
        learner = self._learner_text()
        return serving + learner.encode() if learner else serving


def learner_metrics_text(link: LearnerLink, timeout_s: float) -> str | None:
    """The learner registry's exposition, or None while the learner is down or slow."""
    try:
        return str(link.request({"op": "metrics"}).result(timeout_s)["text"])
    except (LinkClosedError, TimeoutError, KeyError):
        return None


def serve_exposition(exposition: Exposition, host: str, port: int) -> ThreadingHTTPServer:
    """``/metrics`` on its own port (``metrics.port``), answered on a background thread."""

    class Handler(BaseHTTPRequestHandler):
        """Answers every GET with the exposition; scrapes are not logged."""

        def do_GET(self) -> None:
            body = exposition()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes are counted by Prometheus, not logged line by line

    with binding("metrics.port", host, port):
        server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
