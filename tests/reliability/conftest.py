"""Fixtures of the reliability suite: the integration suite's broker and daemon process, plus
a daemon whose every setting a test may override, on topics of any partition count."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamlearn.app.embedded import EmbeddedBroker
from tests.integration import conftest as integration
from tests.integration.conftest import ROOT, Broker, DaemonProcess, fresh_topics
from tests.support.forkserver import ForkServer
from tests.support.waiting import wait_for

# The integration suite's fixtures, as they are: one broker for the session, fresh topics
# and daemon processes per test.
broker = integration.broker
topics = integration.topics
daemon_factory = integration.daemon_factory

# The lineage expert of tests/support/seqlineage.py, as the model of a regression daemon.
SEQ_MODEL = {
    "task": "regression",
    "standardize": False,
    "n_features": 2,
    "factory": "tests.support.seqlineage:build",
}
# A group forms after about one session timeout: short ones keep restarts quick.
FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            deep_merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


# Events too frequent to help read a failure (ReliableDaemon.timeline leaves them out).
_ROUTINE = {"sync_round", "checkpoint_saved", "input_shift_detected"}


class ReliableDaemon(DaemonProcess):
    """:class:`DaemonProcess` with any settings overridden (``settings``, merged into its
    config file) and the log events of each start read on their own. Given a fork server
    (``forks``), starts are forked from it (:mod:`tests.support.forkserver`: the same
    ``streamlearn run``, minus 6-7 CPU seconds of imports) unless ``start(cold=True)``.
    ``started_at`` is when the current start began (wall clock), for recovery times."""

    def __init__(
        self,
        workdir: Path,
        broker: Broker,
        topics: dict[str, str],
        group: str,
        settings: dict[str, Any] | None = None,
        forks: ForkServer | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(workdir, broker, topics, group, **kwargs)
        config = yaml.safe_load(self.config.read_text())
        self.config.write_text(yaml.safe_dump(deep_merge(config, settings or {})))
        self.forks = forks
        self.started_at = 0.0

    def start(self, cold: bool = False) -> ReliableDaemon:
        """Start and return once the metrics endpoint answers."""
        self.started_at = time.time()
        if cold or self.forks is None:
            super().start()
            return self
        self.starts += 1
        self.proc = self.forks.spawn(  # type: ignore[assignment]
            ["run", "--config", str(self.config)],
            self.env,
            self.workdir,
            self.workdir / f"daemon-{self.starts}.log",
        )
        wait_for(
            lambda: any(k.startswith("streamlearn_info") for k in self.metrics()) or self._dead(),
            60,
            "the metrics endpoint",
        )
        assert not self._dead(), self.log_text()
        return self

    def events(self, start: int | None = None) -> list[dict[str, Any]]:
        """Log events of one start (1-based; the current one by default)."""
        path = self.workdir / f"daemon-{start or self.starts}.log"
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut short by SIGKILL
        return out

    def event(self, name: str, start: int | None = None) -> dict[str, Any] | None:
        """The first event of that name in one start's log."""
        return next((e for e in self.events(start) if e.get("event") == name), None)

    def wait_event(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        """The first such event of the current start, once it is logged."""
        wait_for(
            lambda: self.event(name) is not None or self._dead(),
            timeout,
            f"{name} in the log of start {self.starts}",
        )
        found = self.event(name)
        assert found is not None, f"the daemon exited before {name}:\n{self.log_text()}"
        return found

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def learners_started(self) -> list[int]:
        """The pid of each learner process ``streamlearn run``'s supervisor started in
        the current start, in order."""
        return [int(e["pid"]) for e in self.events() if e.get("event") == "learner_started"]

    def timeline(self, last: int = 60) -> str:
        """The last events of every start, one line each, without the per-round and
        per-checkpoint ones: what a failed test's report shows of this daemon."""
        lines = []
        for start in range(1, self.starts + 1):
            for e in self.events(start):
                if e.get("event") in _ROUTINE:
                    continue
                rest = {k: v for k, v in e.items() if k not in ("timestamp", "event", "level")}
                stamp = str(e.get("timestamp", ""))[11:23]
                lines.append(f"[{start}] {stamp} {e.get('event')} {json.dumps(rest)[:300]}")
        return "\n".join(lines[-last:])


def timestamp(event: dict[str, Any]) -> float:
    """An event's time as seconds since the epoch (the log's ISO timestamps are UTC)."""
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def metric_sum(metrics: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in metrics.items() if k.startswith(prefix))


@pytest.fixture
def seq_topics(broker: EmbeddedBroker) -> Callable[[int], dict[str, str]]:
    """Fresh topic names with an input topic of ``partitions`` partitions."""

    def make(partitions: int) -> dict[str, str]:
        return fresh_topics(broker.bootstrap, partitions)

    return make


@pytest.fixture(scope="session")
def fork_server() -> Iterator[ForkServer]:
    server = ForkServer(ROOT, preload=("tests.support.seqlineage",))
    yield server
    server.close()


@pytest.fixture
def reliable_daemon(
    tmp_path: Path, broker: EmbeddedBroker, fork_server: ForkServer
) -> Iterator[Callable[..., ReliableDaemon]]:
    """``make(topics, group=..., broker=..., settings=..., warm=True, **DaemonProcess
    kwargs)``; ``warm`` starts from the fork server (``start(cold=True)`` still can)."""
    made: list[ReliableDaemon] = []

    def make(topics: dict[str, str], **kwargs: Any) -> ReliableDaemon:
        group = kwargs.pop("group", f"g-{uuid.uuid4().hex[:8]}")
        on = kwargs.pop("broker", broker)
        workdir = tmp_path / f"d{len(made)}"
        workdir.mkdir()
        settings = deep_merge({"kafka": FAST_GROUP}, kwargs.pop("settings", {}))
        forks = fork_server if kwargs.pop("warm", True) else None
        daemon = ReliableDaemon(
            workdir, on, topics, group, settings=settings, forks=forks, **kwargs
        )
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.stop()
        # pytest shows a test's teardown output only when the test failed.
        print(f"--- daemon {daemon.workdir.name}: its last events ---\n{daemon.timeline()}")
