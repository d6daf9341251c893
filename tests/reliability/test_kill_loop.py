"""RELIABILITY.md A: the kill -9 loop. Model state effectively-once across 30 SIGKILLs
(kafka-python, the default client), and a shorter loop on librdkafka (kafka.client:
confluent): the same checks, 6 kills over 20k records, about 35 s more for the suite."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streamlearn.app.embedded import EmbeddedBroker
from tests.reliability.checks import (
    ahead,
    committed_offsets,
    lineage_gaps,
    newest,
    partials,
    steps_not_one,
)
from tests.reliability.conftest import SEQ_MODEL, ReliableDaemon, timestamp
from tests.support.killloop import restart, run_to_end, start_and_checkpoint
from tests.support.seqlineage import expert_state, read_log
from tests.support.seqproducer import SequenceProducer

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

PARTITIONS = 4
KEYS = 16
RECOVERY_LIMIT_S = 10.0


@pytest.mark.parametrize(
    ("client", "kills", "records"),
    [
        ("kafka-python", 30, 100_000),
        # The full loop proves the daemon's checkpoint and commit order; this one that the
        # librdkafka source keeps it (seeks at assignment, commits, close).
        ("confluent", 6, 20_000),
    ],
)
def test_sigkills_lose_nothing_and_apply_each_record_once(
    broker: EmbeddedBroker,
    seq_topics: Callable[[int], dict[str, str]],
    reliable_daemon: Callable[..., ReliableDaemon],
    tmp_path: Path,
    client: str,
    kills: int,
    records: int,
) -> None:
    """100k single records over 4 partitions, produced while the daemon is killed 30 times,
    each 0.1-5 s (seeded) after it logged daemon_ready; then it runs to the end (confluent:
    20k records, 6 kills).

    Restarts are forked from a process that has done the imports
    (tests/support/forkserver.py): a cold ``python -m streamlearn run`` spends 6-7 CPU
    seconds importing, 30 of them over three minutes of the 2-core CI machine. Nothing of
    the daemon exists in the fork before it starts, so it restores from the disk and the
    broker like any new process. Recovery is measured from the fork to daemon_ready
    (test_cold_restart.py measures a cold one). The checkpoint store's write-delay hook (0.2 s
    between writing the .tmp and renaming it) widens the window in which a kill lands
    inside a checkpoint write.
    """
    rng = random.Random(20261130)
    waits = [rng.uniform(0.1, 5.0) for _ in range(kills)]  # after each daemon_ready
    # Produced over about the time the loop takes, so that kills land while it learns.
    produce_seconds = sum(waits) + 0.5 * kills
    topics = seq_topics(PARTITIONS)
    topic = topics["input"]
    seq_log = tmp_path / "applied.log"
    producer = SequenceProducer(broker.bootstrap, topic, keys=KEYS, partitions=PARTITIONS)
    daemon = reliable_daemon(
        topics,
        model=SEQ_MODEL,
        serve={"enabled": False},
        warm=True,
        checkpoint={"every_samples": 500, "every_seconds": 3600},
        env={"SEQ_LOG": str(seq_log), "CKPT_WRITE_DELAY_S": "0.2"},
        # The killed member stays in the group until its session times out: short ones
        # keep each rejoin near 1.5 s.
        settings={
            "kafka": {"client": client, "session_timeout_ms": 1500, "heartbeat_interval_ms": 500}
        },
    )
    producer.start(records, per_second=records / produce_seconds)
    try:
        start_and_checkpoint(daemon)
        recoveries: list[float] = []
        inside_write = 0  # kills that left a .tmp behind
        learning_lives = 0  # lives that applied at least one update
        applied_before = 0
        at_kill: dict[str, Any] = {}
        for kill in range(kills):
            if kill:
                ready, restored = restart(daemon, kill)
                recoveries.append(timestamp(ready) - daemon.started_at)
                assert restored["path"] == at_kill["path"]
                assert restored["offsets"] == at_kill["offsets"]
                removed = daemon.event("checkpoint_partial_removed")
                if at_kill["partials"]:
                    assert removed is not None, "a stray .tmp was not removed at start"
            time.sleep(waits[kill])  # the chaos schedule itself
            daemon.kill()
            at_kill = {"partials": partials(daemon.checkpoint_dir), **newest(daemon.checkpoint_dir)}
            inside_write += bool(at_kill["partials"])
            # Committed offsets are for lag and cold starts only: never ahead of the
            # checkpoint a restart will restore.
            found = committed_offsets(broker, daemon.group, topic, PARTITIONS)
            assert not ahead(found, at_kill["offsets"]), (kill, found, at_kill["offsets"])
            applied = len(read_log(seq_log))
            learning_lives += applied > applied_before
            applied_before = applied

        producer.join(timeout=produce_seconds + 60)
        ready = run_to_end(daemon, lag_series=PARTITIONS)
        recoveries.append(timestamp(ready) - daemon.started_at)
        assert daemon.event("checkpoint_restored") is not None
    finally:
        producer.close()

    expected = producer.expected()
    assert sum(expected.values()) == records
    # Along the restored lineage every record was applied once: one span 1..last per key,
    # no update that skipped or repeated a seq, the count and the sum of y per key.
    state = expert_state(daemon.checkpoint_dir)
    assert lineage_gaps(state, expected) == {}
    assert state["violations"] == []
    assert {int(k): v for k, v in state["count"].items()} == expected
    assert {int(k): v for k, v in state["total"].items()} == {
        k: last * (last + 1) / 2 for k, last in expected.items()
    }
    # Every update any process applied (lost ones included) advanced its key by one.
    assert steps_not_one(seq_log) == []
    final = newest(daemon.checkpoint_dir)
    per_partition = records // PARTITIONS
    assert final["offsets"] == {f"{topic}/{p}": per_partition for p in range(PARTITIONS)}
    assert committed_offsets(broker, daemon.group, topic, PARTITIONS) == final["offsets"]
    assert partials(daemon.checkpoint_dir) == []
    restorations = [
        e
        for s in range(2, daemon.starts + 1)
        for e in daemon.events(s)
        if e.get("event") == "checkpoint_restored"
    ]
    assert len(restorations) == kills
    updates = len(read_log(seq_log))
    print(
        f"\nkill loop ({client}): {kills} kills, {records} records, {updates} updates "
        f"applied ({updates - records} of them lost to a kill and redone), "
        f"0 duplicates along the lineage, {inside_write} kills inside a checkpoint write, "
        f"{learning_lives} lives learned something, recovery max {max(recoveries):.2f} s"
    )
    assert max(recoveries) < RECOVERY_LIMIT_S, recoveries
