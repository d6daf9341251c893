"""The link between serving processes and the learner: JSON frames over a Unix socket.

Each frame is a 4-byte big-endian length and a UTF-8 JSON object; nothing pickled or
executable crosses. A request carries ``op`` and, when it wants an answer, an ``id`` the
answer repeats. The learner listens (:class:`LearnerPort`); each serving process keeps one
connection (:class:`LearnerLink`) and reconnects when the learner restarts. A closed
connection is how a serving process learns that the learner is gone: it turns not-ready at
once, without waiting for a timeout.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import struct
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from streamlearn.core.logging import get_logger

log = get_logger(__name__)
Message = dict[str, Any]
_LENGTH = struct.Struct(">I")
# A learn request is bounded by serve.max_body_bytes before it gets here; JSON re-encoding
# can grow it a few times, never past this.
MAX_FRAME_BYTES = 256 * 1024 * 1024
# How often a serving process retries a learner that is not there (starting or restarting).
RECONNECT_S = 0.1


class LinkClosedError(ConnectionError):
    """The other end went away (or sent something that is not a frame)."""


def send_frame(sock: socket.socket, message: Message) -> None:
    body = json.dumps(message, separators=(",", ":")).encode()
    sock.sendall(_LENGTH.pack(len(body)) + body)


def recv_frame(sock: socket.socket) -> Message:
    (length,) = _LENGTH.unpack(_recv_exactly(sock, _LENGTH.size))
    if length > MAX_FRAME_BYTES:
        raise LinkClosedError(f"frame of {length} bytes > {MAX_FRAME_BYTES}")
    try:
        message = json.loads(_recv_exactly(sock, length))
    except ValueError as exc:
        raise LinkClosedError(f"frame is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise LinkClosedError("frame is not a JSON object")
    return message


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    parts, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise LinkClosedError("connection closed")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


Reply = Callable[[Message], None]
#: Handles one request; calls ``reply`` (now or later, from any thread) when it has an id.
Handler = Callable[[Message, Reply], None]


class LearnerPort:
    """The learner's listening side: one thread per serving process's connection."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self._handler = handler
        self._sock: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="ipc-accept", daemon=True)

    def start(self) -> None:
        """Listen: from now on a serving process that connects counts the learner as up."""
        self.path.unlink(missing_ok=True)  # a previous learner's socket file
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(self.path))
        self._sock.listen(64)
        self._thread.start()

    def close(self) -> None:
        """Stop listening and hang up on every serving process: they turn not-ready."""
        self._closed.set()
        if self._sock is not None:
            self._sock.close()
            self.path.unlink(missing_ok=True)
        for conn in list(self._conns):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), name="ipc-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        lock = threading.Lock()

        def reply(message: Message) -> None:
            # A serving process that went away waits for no answer.
            with lock, contextlib.suppress(OSError):
                send_frame(conn, message)

        self._conns.add(conn)
        with conn:
            while not self._closed.is_set():
                try:
                    request = recv_frame(conn)
                except (LinkClosedError, OSError):
                    break
                try:
                    self._handler(request, reply)
                except Exception as exc:  # a bug answers an error, never kills the link
                    log.exception("ipc_request_failed", op=request.get("op"))
                    if "id" in request:
                        reply({"id": request["id"], "error": type(exc).__name__})
        self._conns.discard(conn)


class LearnerLink:
    """A serving process's connection to the learner, re-made whenever it breaks."""

    def __init__(self, path: Path, on_change: Callable[[bool], None] | None = None) -> None:
        self.path = path
        self.connected = threading.Event()
        self._on_change = on_change
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._pending: dict[int, Future[Message]] = {}
        self._ids = itertools.count(1)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="learner-link", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        if self._sock is not None:
            self._sock.close()

    def request(self, message: Message) -> Future[Message]:
        """Send ``message`` and get its answer as a future (failed if the link breaks)."""
        future: Future[Message] = Future()
        id_ = next(self._ids)
        self._pending[id_] = future
        if not self._send({**message, "id": id_}):
            self._pending.pop(id_, None)
            future.set_exception(LinkClosedError("the learner is not connected"))
        return future

    def cancel(self, future: Future[Message]) -> None:
        """Tell the learner nobody waits for ``future``'s answer any more."""
        for id_, pending in list(self._pending.items()):
            if pending is future:
                self._pending.pop(id_, None)
                self._send({"op": "cancel", "ref": id_})
                future.cancel()

    def _send(self, message: Message) -> bool:
        sock = self._sock
        if sock is None or not self.connected.is_set():
            return False
        with self._send_lock:
            try:
                send_frame(sock, message)
                return True
            except OSError:
                return False

    def _run(self) -> None:
        while not self._closed.is_set():
            sock = self._connect()
            if sock is None:
                self._closed.wait(RECONNECT_S)
                continue
            self._sock = sock
            self._set_connected(True)
            self._read(sock)
            self._set_connected(False)
            sock.close()
            self._fail_pending()

    def _connect(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self.path))
        except OSError:
            sock.close()
            return None
        return sock

    def _read(self, sock: socket.socket) -> None:
        while True:
            try:
                message = recv_frame(sock)
            except (LinkClosedError, OSError):
                return
            future = self._pending.pop(int(message.get("id", 0)), None)
            if future is not None and not future.done():
                future.set_result(message)

    def _set_connected(self, up: bool) -> None:
        (self.connected.set if up else self.connected.clear)()
        if self._on_change is not None:
            self._on_change(up)

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(LinkClosedError("the learner went away"))
