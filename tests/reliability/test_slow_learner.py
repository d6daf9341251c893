"""RELIABILITY.md G: a slow learner keeps its partitions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from streamlearn.app.embedded import EmbeddedBroker
from tests.reliability.checks import repeats, steps_not_one
from tests.reliability.conftest import SEQ_MODEL, ReliableDaemon
from tests.support.seqlineage import read_log
from tests.support.seqproducer import SequenceProducer
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SAMPLES = 800
MAX_BATCH = 16
STEP_S = 0.2  # each learning step: 50 steps, 10 s for the backlog
MAX_POLL_INTERVAL_MS = 4_000


def test_a_backlog_of_slow_steps_keeps_the_member_in_its_group(
    broker: EmbeddedBroker,
    seq_topics: Callable[[int], dict[str, str]],
    reliable_daemon: Callable[..., ReliableDaemon],
    tmp_path: Path,
) -> None:
    """A backlog whose learning takes 10 s (50 steps of 0.2 s) arrives in one poll, with
    max_poll_interval_ms 4 s: kafka-python leaves the group when poll() is not called for
    that long (its heartbeats run on their own thread, so the session timeout is not what
    evicts a busy member; the poll interval is). The same happens at the defaults (300 s)
    to a slow model, since a pause only comes above max_buffered_samples (20,000) samples.
    The daemon must keep polling while it learns (pausing the partitions if it must): no
    partition revoked or lost, one assignment, and every sample learned exactly once.
    """
    topics = seq_topics(2)
    seq_log = tmp_path / "applied.log"
    SequenceProducer(broker.bootstrap, topics["input"], keys=4, partitions=2).send(SAMPLES)
    daemon = reliable_daemon(
        topics,
        model=SEQ_MODEL,
        serve={"enabled": False},
        engine={"max_batch": MAX_BATCH},
        checkpoint={"every_samples": 100_000, "every_seconds": 3600},
        env={"SEQ_LOG": str(seq_log), "SEQ_LEARN_SLEEP_S": str(STEP_S)},
        settings={
            "kafka": {
                "session_timeout_ms": 3000,
                "heartbeat_interval_ms": 1000,
                "max_poll_interval_ms": MAX_POLL_INTERVAL_MS,
            }
        },
    )
    daemon.start()
    daemon.wait_event("partitions_assigned")
    wait_for(lambda: len(read_log(seq_log)) >= SAMPLES, 90, "the backlog learned")
    metrics = daemon.metrics()
    events = [e["event"] for e in daemon.events()]
    assert daemon.terminate()[0] == 0

    assert "partitions_revoked" not in events and "partitions_lost" not in events, events
    assert events.count("partitions_assigned") == 1
    assert metrics.get('streamlearn_rebalances_total{kind="revoked"}', 0) == 0
    assert metrics['streamlearn_rebalances_total{kind="assigned"}'] == 1
    assert len(read_log(seq_log)) == SAMPLES
    assert repeats(seq_log) == {} and steps_not_one(seq_log) == []
    assert "poll timeout has expired" not in daemon.log_text().lower()
