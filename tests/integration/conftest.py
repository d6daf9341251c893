"""A real Kafka-protocol broker (tansu) on a free loopback port, and daemon subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamlearn.app.embedded import EmbeddedBroker, create_topics, free_port
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


class Broker(Protocol):
    """What these helpers use of a broker: an EmbeddedBroker, or the ProxiedBroker of
    tests/support/kafkaproxy.py (reached through a proxy), which the reliability suite
    passes where an EmbeddedBroker goes."""

    @property
    def bootstrap(self) -> str: ...


# Short group timeouts: a group forms after about one session timeout.
FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


def fresh_topics(bootstrap: str, input_partitions: int = 2) -> dict[str, str]:
    """Fresh topic names, created, so tests never see each other's records."""
    tag = uuid.uuid4().hex[:8]
    names = {
        "input": f"in-{tag}",
        "predictions": f"pred-{tag}",
        "events": f"ev-{tag}",
        "dlq": f"dlq-{tag}",
    }
    create_topics(
        bootstrap,
        {
            names["input"]: input_partitions,
            names["predictions"]: 1,
            names["events"]: 1,
            names["dlq"]: 1,
        },
    )
    return names


@pytest.fixture
def topics(broker: EmbeddedBroker) -> dict[str, str]:
    """Fresh topic names per test."""
    return fresh_topics(broker.bootstrap)


def send(
    broker: Broker, topic: str, values: list[bytes], partitions: list[int] | None = None
) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for i, value in enumerate(values):
        producer.send(topic, value=value, partition=None if partitions is None else partitions[i])
    producer.flush()
    producer.close()


def read_topic(
    broker: Broker, topic: str, count: int, timeout: float = 20.0
) -> list[Any]:  # kafka-python ConsumerRecords (untyped)
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    consumer.assign([TopicPartition(topic, 0)])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        for records in consumer.poll(500).values():
            out.extend(records)
    consumer.close()
    return out


def committed(
    broker: Broker, group: str, topic: str, partitions: int
) -> dict[int, int | None]:  # None: nothing committed on that partition
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False
    )
    try:
        return {p: consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        consumer.close(autocommit=False)


class DaemonProcess:
    """``python -m streamlearn run`` with a generated config, logs to a file."""

    def __init__(
        self,
        workdir: Path,
        broker: Broker,
        topics: dict[str, str],
        group: str,
        model: dict[str, Any] | None = None,
        checkpoint: dict[str, Any] | None = None,
        engine: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        serve: dict[str, Any] | None = None,
    ) -> None:
        self.workdir = workdir
        self.metrics_port = free_port()
        self.http_port, self.grpc_port = free_port(), free_port()
        self.group = group
        self.checkpoint_dir = workdir / "checkpoints"
        self.config = workdir / "config.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "kafka": {
                        "bootstrap_servers": broker.bootstrap,
                        "group_id": group,
                        "input_topic": topics["input"],
                        "predictions_topic": topics["predictions"],
                        "events_topic": topics["events"],
                        "dlq_topic": topics["dlq"],
                        **FAST_GROUP,
                    },
                    "model": {"hidden": [16], **(model or {})},
                    "engine": {"max_batch": 32, "max_wait_ms": 20, **(engine or {})},
                    "checkpoint": {"dir": str(self.checkpoint_dir), **(checkpoint or {})},
                    "metrics": {"host": "127.0.0.1", "port": self.metrics_port},
                    "serve": {
                        "host": "127.0.0.1",
                        "http_port": self.http_port,
                        "grpc_port": self.grpc_port,
                        **(serve or {}),
                    },
                    "log": {"level": "info", "format": "json"},
                }
            )
        )
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, wait_for_metrics: bool = True) -> DaemonProcess:
        """Start; by default, return once its metrics answer (the learner restored)."""
        self.starts += 1
        log = open(self.workdir / f"daemon-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlearn", "run", "--config", str(self.config)],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if not wait_for_metrics:
            return self
        wait_for(
            lambda: any(k.startswith("streamlearn_info") for k in self.metrics()) or self._dead(),
            60,
            "the metrics endpoint",
        )
        assert not self._dead(), self.log_text()
        return self

    def _dead(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def metrics(self) -> dict[str, float]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2
            ) as response:
                text = response.read().decode()
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def metric(self, name: str) -> float | None:
        return self.metrics().get(name)

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for path in sorted(self.workdir.glob("daemon-*.log")):
            for line in path.read_text().splitlines():
                if line.startswith("{"):
                    events.append(json.loads(line))
        return events

    def log_text(self) -> str:
        return "\n".join(p.read_text()[-4000:] for p in sorted(self.workdir.glob("daemon-*.log")))

    def kill(self) -> None:
        """SIGKILL the supervisor; return once its children are gone too. They die of their
        parent's death (``PR_SET_PDEATHSIG``) a moment after it: a start at once could find
        the HTTP port still held by a dying serving process (CI saw "Address already in
        use")."""
        assert self.proc is not None
        children = descendants(self.proc.pid)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        wait_for(lambda: all(exited(pid) for pid in children), 10, "the children's exit")

    def terminate(self, timeout: float = 15.0) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds to exit)."""
        assert self.proc is not None
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        return code, time.monotonic() - began

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux's /proc children lists)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [p for child in children for p in (int(child), *descendants(int(child)))]


def exited(pid: int) -> bool:
    """Gone, or a zombie: its sockets are closed either way."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


@pytest.fixture
def daemon_factory(
    tmp_path: Path, broker: EmbeddedBroker, topics: dict[str, str]
) -> Iterator[Callable[..., DaemonProcess]]:
    made: list[DaemonProcess] = []

    def make(**kwargs: Any) -> DaemonProcess:
        group = kwargs.pop("group", f"g-{uuid.uuid4().hex[:8]}")
        workdir = tmp_path / f"d{len(made)}"
        workdir.mkdir()
        daemon = DaemonProcess(workdir, broker, topics, group, **kwargs)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.stop()
