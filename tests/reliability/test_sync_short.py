"""A replica that does not come back: two replicas of ``streamlearn run`` learn one model;
rank 1 is SIGKILLed mid-stream and stays down. Rank 0's learner leaves the group, and after
``sync.form_wait_s`` forms a group of one (``sync.min_replicas`` 1, the default), restores
the newest checkpoint id, is given every partition by Kafka and learns on alone. When rank 1
comes back it takes a seat after the close: the group of one saves in a last round and
ends, and a group of two forms and restores that id.

A stopped replica (SIGTERM) leaves through a last round too, where both save, so nothing is
lost: tests/unit/test_sync_leave.py. Not here: over tansu 0.6, the Kafka group of a pair
whose one member stops and whose other's learner starts again can be left never assigning
(tests/integration/test_conformance_kafka.py, its leader-leaves test).

What the model must hold at the end (tests/support/seqcounts.py): every record's update
once, weighted as the generation that learned it averages it: 1/2 for records the pair
learned, 1 for those rank 0 learned alone. A checkpoint's offsets say which: records
between the offsets of the id restored after the kill and those of the id restored after
the rejoin are the group of one's. Updates lost at either change (past the restore point)
are learned again, once: at the kill only, since the last round at the return loses
nothing."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from streamlearn.app.embedded import EmbeddedBroker
from tests.reliability.conftest import ReliableDaemon, deep_merge
from tests.support.seqcounts import read_log
from tests.support.seqproducer import SequenceProducer
from tests.support.syncgroup import (
    KILL_SETTINGS,
    assert_learned_once,
    held,
    learning_mid_stream,
    pair,
    restore_offsets,
    wait_for_final,
)
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

PARTITIONS, KEYS, RECORDS = 4, 8, 5_000
# The kill tests' group, with the only change to the membership defaults: a wait shorter
# than 60 s.
SETTINGS = deep_merge(KILL_SETTINGS, {"sync": {"form_wait_s": 3.0}})


def _events(daemon: ReliableDaemon, name: str) -> list[dict[str, object]]:
    return [e for e in daemon.events() if e.get("event") == name]


def _lost_now(
    replicas: list[ReliableDaemon], log: Path, lost_before: int = 0
) -> tuple[dict[int, int], int]:
    """Where the group restores, by partition, and how many updates applied past it are
    lost (the log holds those lost ``before`` too): read once the group's learners have
    left it, so nothing moves meanwhile."""
    _, offsets = restore_offsets(replicas)
    return offsets, len(read_log(log)) - sum(offsets.values()) - lost_before


def test_a_replica_that_stays_down_leaves_the_group_learning_and_rejoins_when_back(
    broker: EmbeddedBroker,
    seq_topics: Callable[[int], dict[str, str]],
    reliable_daemon: Callable[..., ReliableDaemon],
    tmp_path: Path,
) -> None:
    topics = seq_topics(PARTITIONS)
    producer = SequenceProducer(broker.bootstrap, topics["input"], keys=KEYS, partitions=PARTITIONS)
    log = tmp_path / "applied.log"
    replicas = pair(reliable_daemon, topics, SETTINGS, KEYS, RECORDS // KEYS + 1, log)
    rank0, rank1 = replicas
    try:
        learning_mid_stream(replicas, producer, RECORDS, 40)
        os.kill(rank1.learners_started()[-1], signal.SIGKILL)
        rank1.kill()
        wait_for(lambda: len(_events(rank0, "sync_group_lost")) >= 1, 30, "rank 0 sees it gone")
        killed_at, lost_at_kill = _lost_now(replicas, log)

        # Alone after the wait: a group of one that restores and learns every partition.
        short = rank0.wait_event("sync_group_short", 60)
        assert (short["size"], short["world_size"]) == (1, 2)
        wait_for(
            lambda: (
                max(held(rank0.checkpoint_dir)) > max(held(rank1.checkpoint_dir))
                and len(read_log(log)) > sum(killed_at.values()) + lost_at_kill + 300
            ),
            60,
            "the group of one learning on, with a checkpoint of its own",
        )
        assert [e["world_size"] for e in _events(rank0, "sync_joined")][-1] == 1

        # Back: its seat ends the group of one, and a group of two forms.
        rank1.start()
        wait_for(lambda: len(_events(rank0, "sync_group_lost")) >= 2, 60, "rank 0 sees it back")
        rejoined_at, lost_at_rejoin = _lost_now(replicas, log, lost_at_kill)
        assert lost_at_rejoin == 0  # the group of one saved in its last round
        assert _events(rank0, "sync_group_grew")
        wait_for(
            lambda: (
                [e["world_size"] for e in _events(rank0, "sync_joined")][-1:] == [2]
                and len(_events(rank1, "sync_restored")) >= 1
            ),
            60,
            "a group of two again",
        )
        assert _events(rank1, "sync_joined")[-1]["rank"] == 1

        def weight(key: int, seq: int) -> float:
            partition, offset = producer.offset_of(key, seq)
            alone = killed_at.get(partition, 0) <= offset < rejoined_at.get(partition, 0)
            return 1.0 if alone else 0.5

        producer.join(60)
        assert_learned_once(wait_for_final(replicas, producer), producer, weight)
        assert sum(rejoined_at.values()) > sum(killed_at.values())  # it learned alone
        assert len(read_log(log)) == RECORDS + lost_at_kill + lost_at_rejoin
        for replica in replicas:
            assert replica.alive(), replica.log_text()
    finally:
        producer.close()
