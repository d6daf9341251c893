"""Pure ASGI middleware: request metrics and the body-size cap.

Both are plain ASGI callables rather than Starlette's ``BaseHTTPMiddleware``, which costs a
task and a stream per request: too much for a sub-millisecond infer path.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streamlearn.core.logging import get_logger
from streamlearn.metrics import ServingMetrics

log = get_logger(__name__)

TRANSPORT = "http"
_BODY_METHODS = {"POST", "PUT", "PATCH"}


async def send_error(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestMetrics:
    """Counts and times every request by route template (bounded label values)."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = False
        began = time.perf_counter()

        async def capture(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        in_flight = self.metrics.requests_in_flight.labels(transport=TRANSPORT)
        in_flight.inc()
        try:
            await self.app(scope, receive, capture)
        except Exception as exc:  # a bug: answered in the v2 error format, logged, counted
            log.exception("request_failed", transport=TRANSPORT, path=scope.get("path"))
            if not started:
                await send_error(send, 500, f"internal error: {type(exc).__name__}")
        finally:
            in_flight.dec()
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            self.metrics.request_latency.labels(transport=TRANSPORT, endpoint=endpoint).observe(
                time.perf_counter() - began
            )
            self.metrics.requests.labels(
                transport=TRANSPORT, endpoint=endpoint, code=str(status)
            ).inc()


class BodyLimit:
    """Answers 413 before any parsing when a body is bigger than ``max_bytes``.

    A declared Content-Length is checked up front. A chunked body is read up to the cap
    into memory (bounded by the cap) and replayed to the app, or refused once it passes it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, on_reject: Callable[[str], None]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            await self._declared(declared, scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._reject(send, f"body over {self.max_bytes} bytes (chunked)")
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _declared(self, declared: bytes, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            length = int(declared)
        except ValueError:
            self.on_reject("bad_request")
            await send_error(send, 400, "Content-Length is not a number")
            return
        if length > self.max_bytes:
            await self._reject(
                send, f"body of {length} bytes > serve.max_body_bytes={self.max_bytes}"
            )
            return
        await self.app(scope, receive, send)

    async def _reject(self, send: Send, message: str) -> None:
        self.on_reject("body_too_large")
        await send_error(send, 413, message)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
