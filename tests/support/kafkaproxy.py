"""A broker whose topics a test can make disappear and reappear: tansu behind a Kafka-protocol
proxy that rewrites Metadata responses.

tansu creates a topic on first use (a Produce or a Metadata request naming it; it ignores
``allow_auto_topic_creation=false``), so an output topic cannot simply be missing, as it
can be on a Kafka cluster with ``auto.create.topics.enable=false``. :class:`ProxiedBroker`
starts its own tansu advertising the proxy's address, so every client connection (the
bootstrap one and those to "the broker" named in metadata) goes through the proxy.
While a topic is hidden, every Metadata response answers it ``UNKNOWN_TOPIC_OR_PARTITION``
with no partitions: what a client sees of a topic that does not exist. A producer then
never learns a leader for it, so nothing is ever sent to it (kafka-python's ``send`` waits
``max_block_ms`` for the metadata, then raises ``KafkaTimeoutError``). Revealing the topic
is its creation, as far as clients can tell. Other requests pass through byte for byte.

A restarted tansu starts empty, where a Kafka broker keeps its topics. To stand in for a
broker that comes back with its topics, a proxy can hold Produce requests (``hold_produce``)
until the test has made the topics again: a client that still knows the partition's leader
would otherwise produce before the topic exists, and tansu acks such a Produce and stores
nothing.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import threading
import time
from types import TracebackType

from kafka.protocol.metadata import MetadataResponse

from streamlearn.app.embedded import find_tansu, free_port

_PRODUCE = 0
_METADATA = 3
_UNKNOWN_TOPIC_OR_PARTITION = 3


def _read_exactly(sock: socket.socket, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = sock.recv(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_frame(sock: socket.socket) -> bytes | None:
    size = _read_exactly(sock, 4)
    if size is None:
        return None
    return _read_exactly(sock, struct.unpack(">i", size)[0])


class KafkaProxy:
    """Forwards connections on ``port`` to ``upstream``, hiding the topics in ``hidden``."""

    def __init__(
        self,
        upstream: tuple[str, int],
        port: int,
        host: str = "127.0.0.1",
        hold_produce: bool = False,
    ) -> None:
        self.upstream = upstream
        self.hidden: set[str] = set()
        self._produce_open = threading.Event()
        if not hold_produce:
            self._produce_open.set()
        self.metadata_rewritten = 0
        self._server = socket.create_server((host, port))
        self._closed = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="kafka-proxy", daemon=True).start()

    def hide(self, topic: str) -> None:
        self.hidden.add(topic)

    def reveal(self, topic: str) -> None:
        self.hidden.discard(topic)

    def release_produce(self) -> None:
        """Forward the Produce requests held since the start, and every later one."""
        self._produce_open.set()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            asked: dict[int, tuple[int, int]] = {}  # correlation id -> (api key, version)
            threading.Thread(
                target=self._requests, args=(client, upstream, asked), daemon=True
            ).start()
            threading.Thread(
                target=self._responses, args=(upstream, client, asked), daemon=True
            ).start()

    def _requests(
        self, client: socket.socket, upstream: socket.socket, asked: dict[int, tuple[int, int]]
    ) -> None:
        try:
            while (frame := _read_frame(client)) is not None:
                api_key, version, correlation = struct.unpack(">hhi", frame[:8])
                asked[correlation] = (api_key, version)
                if api_key == _PRODUCE:
                    self._produce_open.wait()
                upstream.sendall(struct.pack(">i", len(frame)) + frame)
        except OSError:
            pass
        finally:
            _close(client, upstream)

    def _responses(
        self, upstream: socket.socket, client: socket.socket, asked: dict[int, tuple[int, int]]
    ) -> None:
        try:
            while (frame := _read_frame(upstream)) is not None:
                (correlation,) = struct.unpack(">i", frame[:4])
                api_key, version = asked.pop(correlation, (-1, -1))
                if api_key == _METADATA and self.hidden:
                    frame = self._hide(frame, version)
                client.sendall(struct.pack(">i", len(frame)) + frame)
        except OSError:
            pass
        finally:
            _close(client, upstream)

    def _hide(self, frame: bytes, version: int) -> bytes:
        # The response header: the correlation id, then (flexible versions) tagged fields.
        header = 4
        if MetadataResponse.flexible_version_q(version):
            if frame[4] != 0:
                return frame  # tagged header fields: not seen from tansu; left alone
            header = 5
        response = MetadataResponse.decode(frame[header:], version=version)
        changed = False
        for topic in response.topics:
            if topic.name in self.hidden:
                topic.error_code = _UNKNOWN_TOPIC_OR_PARTITION
                topic.partitions = []
                changed = True
        if not changed:
            return frame
        self.metadata_rewritten += 1
        response._header = None  # decoded without one; encode() looks for it
        return frame[:header] + bytes(response.encode(version=version))

    def close(self) -> None:
        self._closed = True
        self._produce_open.set()  # a held request's thread ends with its closed socket
        self._server.close()
        with self._lock:
            for sock in self._sockets:
                _close(sock)


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


class ProxiedBroker:
    """tansu on a private port, reached only through a :class:`KafkaProxy`; ``bootstrap``
    is the proxy's address. Usable wherever an ``EmbeddedBroker`` is (``bootstrap``)."""

    def __init__(
        self, host: str = "127.0.0.1", port: int | None = None, hold_produce: bool = False
    ) -> None:
        self.host = host
        self.port = free_port(host) if port is None else port  # the proxy's, which clients know
        self.hold_produce = hold_produce
        self._upstream_port = free_port(host)
        self._process: subprocess.Popen[bytes] | None = None
        self.proxy: KafkaProxy | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> ProxiedBroker:
        listen = f"tcp://{self.host}:{self._upstream_port}"
        advertised = f"tcp://{self.host}:{self.port}"
        self._process = subprocess.Popen(
            [
                find_tansu(),
                "broker",
                "--listener-url",
                listen,
                "--advertised-listener-url",
                advertised,
                "--silent",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection((self.host, self._upstream_port), timeout=0.2).close()
                break
            except OSError:
                assert self._process.poll() is None, "tansu exited"
                assert time.monotonic() < deadline, "tansu did not listen"
                time.sleep(0.05)
        self.proxy = KafkaProxy(
            (self.host, self._upstream_port), self.port, self.host, self.hold_produce
        )
        return self

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.close()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> ProxiedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
