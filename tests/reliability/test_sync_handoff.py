"""Issue 18's handoff test, on the embedded broker: a replica's learner stalls (SIGSTOP) past
its Kafka session while it holds partitions, having learned records that no checkpoint
holds yet. Kafka gives those partitions to the other replica, which must not start them over
from the checkpoint: the stalled replica's updates reach the group's model at its next
round, so the records between would be learned twice. It waits for the stalled one to leave
them (streamlearn/sync/handoff.py), drops what it polls of them meanwhile, and goes on from
where the stalled one stopped. At the end every record's update is in the group's model
exactly once, and neither replica left the group."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from streamlearn.app.embedded import EmbeddedBroker
from tests.reliability.conftest import ReliableDaemon
from tests.support.seqproducer import SequenceProducer
from tests.support.syncgroup import assert_exactly_once, checkpoint_offsets, pair, wait_for_final
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

PARTITIONS, KEYS = 4, 8
FIRST, UNCHECKPOINTED, STALLED, REST = 240, 80, 80, 400  # FIRST: checkpoint.every_samples
RECORDS = FIRST + UNCHECKPOINTED + STALLED + REST
SETTINGS = {
    "sync": {
        "enabled": True,
        "every_steps": 20,
        "every_seconds": 0.5,
        "checkpoint_every_rounds": 10_000,
        # Far above the stall: the other replica must not take the stalled one for dead.
        "timeout_s": 120,
        "peer_timeout_s": 120,
    },
    # The first records make a checkpoint; the next ones stay out of every checkpoint
    # until well after the stall (then time reaches one that holds the stream's end).
    "checkpoint": {"every_samples": 240, "every_seconds": 20.0},
}


def _assigned(daemon: ReliableDaemon) -> list[int]:
    """The partitions of the current start's newest assignment."""
    found = [e for e in daemon.events() if e.get("event") == "partitions_assigned"]
    return [int(name.rsplit("/", 1)[1]) for name in found[-1]["partitions"]] if found else []


def _quiet(stalling: ReliableDaemon, both: list[ReliableDaemon], learned: float) -> bool:
    """``stalling`` learned ``learned`` samples and no round ran for 1.5 s: none is due or
    under way (a round under way at the stall would hold the other replica in a
    collective, away from its poll)."""
    if (stalling.metric("streamlearn_samples_learned_total") or 0) < learned:
        return False
    before = [r.metric("streamlearn_sync_rounds_total") for r in both]
    time.sleep(1.5)
    return [r.metric("streamlearn_sync_rounds_total") for r in both] == before


def _handed_over(daemon: ReliableDaemon) -> dict[str, int]:
    """Every offset handed over to ``daemon`` so far (a handoff may come in parts)."""
    found: dict[str, int] = {}
    for e in daemon.events():
        if e.get("event") == "partitions_handed_over":
            found.update(e["offsets"])
    return found


def test_a_stalled_replicas_partitions_go_on_from_where_it_stopped(
    broker: EmbeddedBroker,
    seq_topics: Callable[[int], dict[str, str]],
    reliable_daemon: Callable[..., ReliableDaemon],
    tmp_path: Path,
) -> None:
    topics = seq_topics(PARTITIONS)
    producer = SequenceProducer(broker.bootstrap, topics["input"], keys=KEYS, partitions=PARTITIONS)
    # Half the keys take the first records: room for twice a key's even share.
    seq_max = 2 * RECORDS // KEYS + 1
    replicas = pair(reliable_daemon, topics, SETTINGS, KEYS, seq_max, tmp_path / "applied.log")
    # Rank 1 stalls: rank 0 hosts the store, whose reads the other needs meanwhile.
    other, stalled = replicas
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(ReliableDaemon.start, replicas))
        wait_for(lambda: all(len(_assigned(r)) == 2 for r in replicas), 60, "two partitions each")
        producer.only = frozenset(_assigned(stalled))
        names = {p: f"{producer.topic}/{p}" for p in producer.only}
        producer.send(FIRST)
        wait_for_final(replicas, producer)
        at_checkpoint = checkpoint_offsets(other)
        producer.send(UNCHECKPOINTED)
        wait_for(lambda: _quiet(stalled, replicas, FIRST + UNCHECKPOINTED), 30, "a quiet group")
        learned = producer.sent_to()  # all learned by the stalled replica, none checkpointed
        assert checkpoint_offsets(other) == at_checkpoint
        assert other.event("partitions_awaiting_handoff") is None
        pid = stalled.learners_started()[-1]
        os.kill(pid, signal.SIGSTOP)
        try:
            producer.send(STALLED)
            # Past its session the stalled member is dropped, and the other is assigned
            # its partitions while the stalled one still holds them.
            awaiting = other.wait_event("partitions_awaiting_handoff", timeout=60)
            # No round, so no checkpoint, without the stalled replica: the newest one still
            # holds only the first records, and starting from it would learn the rest twice.
            assert checkpoint_offsets(other) == at_checkpoint
        finally:
            os.kill(pid, signal.SIGCONT)
        assert sorted(awaiting["partitions"]) == sorted(names.values())
        wait_for(lambda: set(names.values()) <= set(_handed_over(other)), 60, "the handoff")
        handed = _handed_over(other)
        for partition, name in names.items():
            # Where the stalled replica stopped: past what it learned before the stall (it
            # may have learned more on waking, before it saw its partitions go).
            assert handed[name] >= learned[partition] > at_checkpoint[name], handed
        producer.only = None
        producer.send(REST)
        assert_exactly_once(wait_for_final(replicas, producer, timeout=90), producer)
        for replica in replicas:
            # One learner all along: none left the group (a lost group that never reached
            # a round would show only as the learner's exit).
            assert len(replica.learners_started()) == 1, replica.timeline()
            assert replica.event("learner_exited") is None, replica.timeline()
            assert replica.event("sync_group_lost") is None, replica.timeline()
            assert replica.event("partitions_handoff_missing") is None, replica.timeline()
            assert replica.alive(), replica.log_text()
    finally:
        producer.close()
