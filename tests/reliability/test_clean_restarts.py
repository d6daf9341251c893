"""RELIABILITY.md B: clean restarts. After SIGTERM nothing is ever learned twice."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from streamlearn.app.embedded import EmbeddedBroker
from tests.reliability.checks import (
    committed_offsets,
    lineage_gaps,
    newest,
    partials,
    repeats,
    steps_not_one,
)
from tests.reliability.conftest import SEQ_MODEL, ReliableDaemon
from tests.support.seqlineage import expert_state, read_log
from tests.support.seqproducer import SequenceProducer
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIGTERMS = 5
PARTITIONS = 2
KEYS = 8
PER_RECORD = 25  # batch records: a shutdown must not cut one in two
RECORDS = 1_200  # 30,000 samples
SHUTDOWN_LIMIT_S = 10.0  # docs/operations.md, "Shutdown": well inside 10 s with the defaults


def test_five_sigterms_while_producing_learn_nothing_twice(
    broker: EmbeddedBroker,
    seq_topics: Callable[[int], dict[str, str]],
    reliable_daemon: Callable[..., ReliableDaemon],
    tmp_path: Path,
) -> None:
    """Five SIGTERMs, each 0.5-3 s (seeded) after the daemon got its partitions, while
    batch records keep arriving; then it runs to the end. A clean shutdown checkpoints what
    it learned, so no (key, seq) is ever applied twice, by any process, and each restart
    restores exactly what the previous one stopped with."""
    rng = random.Random(5)
    topics = seq_topics(PARTITIONS)
    topic = topics["input"]
    seq_log = tmp_path / "applied.log"
    producer = SequenceProducer(
        broker.bootstrap, topic, keys=KEYS, partitions=PARTITIONS, per_record=PER_RECORD
    )
    daemon = reliable_daemon(
        topics,
        model=SEQ_MODEL,
        serve={"enabled": False},
        checkpoint={"every_samples": 500, "every_seconds": 3600},
        env={"SEQ_LOG": str(seq_log)},
        settings={"kafka": {"session_timeout_ms": 3000, "heartbeat_interval_ms": 1000}},
    )
    producer.start(RECORDS, per_second=RECORDS / 25)
    shutdowns: list[float] = []
    stopped_with: list[int] = []
    try:
        for stop in range(SIGTERMS + 1):
            daemon.start()
            daemon.wait_event("partitions_assigned")
            if stop:
                restored = daemon.event("checkpoint_restored")
                assert restored is not None
                assert restored["samples_learned"] == stopped_with[-1]
            if stop == SIGTERMS:
                break
            time.sleep(rng.uniform(0.5, 3.0))  # the chaos schedule itself
            code, seconds = daemon.terminate(timeout=30)
            assert code == 0, daemon.log_text()
            shutdowns.append(seconds)
            stopped = daemon.event("daemon_stopped")
            assert stopped is not None
            stopped_with.append(stopped["samples_learned"])
            # The shutdown checkpoint holds everything this process learned.
            assert newest(daemon.checkpoint_dir)["samples_learned"] == stopped_with[-1]
        producer.join()
        wait_for(
            lambda: newest_applied(seq_log) == producer.samples_sent, 60, "every sample applied"
        )
        code, seconds = daemon.terminate(timeout=30)
        assert code == 0
        shutdowns.append(seconds)
    finally:
        producer.close()

    expected = producer.expected()
    assert repeats(seq_log) == {}, "a record was learned twice across a clean restart"
    assert steps_not_one(seq_log) == []
    assert len(read_log(seq_log)) == sum(expected.values()) == RECORDS * PER_RECORD
    state = expert_state(daemon.checkpoint_dir)
    assert lineage_gaps(state, expected) == {} and state["violations"] == []
    final = newest(daemon.checkpoint_dir)
    assert final["offsets"] == {f"{topic}/{p}": RECORDS // PARTITIONS for p in range(PARTITIONS)}
    assert committed_offsets(broker, daemon.group, topic, PARTITIONS) == final["offsets"]
    assert partials(daemon.checkpoint_dir) == []
    print(
        f"\nclean restarts: {SIGTERMS} SIGTERMs while producing, "
        f"{RECORDS * PER_RECORD} samples in {RECORDS} batch records, 0 learned twice, "
        f"shutdown max {max(shutdowns):.2f} s"
    )
    assert max(shutdowns) < SHUTDOWN_LIMIT_S, shutdowns


def newest_applied(seq_log: Path) -> int:
    return len(read_log(seq_log))
