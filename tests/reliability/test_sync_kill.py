"""Issue 18's kill test: two replicas of ``streamlearn run`` learn one model in one consumer
group on the embedded broker; one is SIGKILLed mid-stream. The survivor must not wait on the
dead peer forever: its learner leaves the group (a failed collective, a store gone, or the
dead replica joining again), the supervisor starts it again, the two form a new group and
both restore the newest checkpoint id either holds. Killed inside one of its checkpoint
writes, the victim leaves the survivor holding that id alone, and restores it from the
survivor's file (one file is the group's whole state): nothing is learned twice. Killed
while learning, the updates since that id are lost and learned again, once. At the end every
record's update is in the group's model exactly once (tests/support/seqcounts.py:
``applied * 2 == 1`` on every record sent, 0 elsewhere), on both replicas, and the log of
applied updates holds every record once plus exactly the updates lost."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from streamlearn.app.embedded import EmbeddedBroker
from tests.reliability.conftest import ReliableDaemon
from tests.support.seqcounts import read_log
from tests.support.seqproducer import SequenceProducer
from tests.support.syncgroup import (
    KILL_SETTINGS,
    assert_exactly_once,
    held,
    learning_mid_stream,
    pair,
    restore_point,
    wait_for_final,
)
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

PARTITIONS, KEYS, RECORDS = 4, 8, 4_000


def _writing(checkpoint_dir: Path) -> bool:
    """A checkpoint write is under way (its ``.tmp`` file is there)."""
    return any(checkpoint_dir.glob(".ckpt-*.tmp"))


def _killed_if(victim: ReliableDaemon, stopped_right: Callable[[], bool]) -> bool:
    """Stop the victim's learner; if ``stopped_right()`` then, SIGKILL it and its
    supervisor, else let it go on. Stopped first, it cannot move on between look and kill."""
    learner = victim.learners_started()[-1]
    os.kill(learner, signal.SIGSTOP)
    if not stopped_right():
        os.kill(learner, signal.SIGCONT)
        return False
    os.kill(learner, signal.SIGKILL)
    victim.kill()
    return True


def _killed_writing(victim: ReliableDaemon, replicas: list[ReliableDaemon], log: Path) -> bool:
    """SIGKILL the victim if its learner is inside a checkpoint write."""
    folder = victim.checkpoint_dir
    return _writing(folder) and _killed_if(victim, lambda: _writing(folder))


def _killed_learning(victim: ReliableDaemon, replicas: list[ReliableDaemon], log: Path) -> bool:
    """SIGKILL the victim outside any checkpoint write, once the group applied updates that
    no checkpoint holds. The survivor is given time to finish a write of the round it may
    be in, so the restore point is read as it will stay."""

    def past_the_restore_point() -> bool:
        time.sleep(0.5)
        _, covered = restore_point(replicas)
        return not _writing(victim.checkpoint_dir) and len(read_log(log)) > covered

    return not _writing(victim.checkpoint_dir) and _killed_if(victim, past_the_restore_point)


KILLS = {"writing": _killed_writing, "learning": _killed_learning}


def _restored(daemon: ReliableDaemon) -> list[int | None]:
    """The checkpoint id each learner of this start restored, in order (None: a fresh group)."""
    return [e["checkpoint_id"] for e in daemon.events() if e.get("event") == "sync_restored"]


# Rank 0 also hosts the store and makes the pool's decisions; rank 1 is any other replica.
# Killed writing, rank 0 leaves the newest id on rank 1 alone: the group restores from it.
@pytest.mark.parametrize(
    ("victim_rank", "moment"), [(1, "writing"), (0, "writing"), (0, "learning")]
)
def test_a_replica_killed_mid_stream_leaves_every_update_in_the_model_once(
    victim_rank: int,
    moment: str,
    broker: EmbeddedBroker,
    seq_topics: Callable[[int], dict[str, str]],
    reliable_daemon: Callable[..., ReliableDaemon],
    tmp_path: Path,
) -> None:
    topics = seq_topics(PARTITIONS)
    producer = SequenceProducer(broker.bootstrap, topics["input"], keys=KEYS, partitions=PARTITIONS)
    # Its checkpoint writes take this long, and the kill lands inside one: the survivor
    # then holds the newest id alone, the re-formed group restores it on both, and never
    # gives that id to another state (docs/scaling.md, "Coordinated checkpoints").
    widened = {"CKPT_WRITE_DELAY_S": "0.2"} if moment == "writing" else {}
    log = tmp_path / "applied.log"
    replicas = pair(
        reliable_daemon,
        topics,
        KILL_SETTINGS,
        KEYS,
        RECORDS // KEYS + 1,
        log,
        env=lambda rank: widened if rank == victim_rank else {},
    )
    try:
        learning_mid_stream(replicas, producer, RECORDS, 20)
        victim = replicas[victim_rank]
        survivor = replicas[1 - victim_rank]
        kill = KILLS[moment]
        wait_for(lambda: kill(victim, replicas, log), 30, f"the victim {moment}, to kill")
        # The survivor's learner leaves the group and waits for a new one.
        wait_for(lambda: survivor.event("sync_group_lost") is not None, 30, "the survivor sees it")
        # Read once the survivor has left: until then it may still finish the file of a
        # round the victim completed before it died. No update is applied until the group
        # re-forms; those past the restore point are lost.
        newest, covered = restore_point(replicas)
        lost = len(read_log(log)) - covered
        common = max(set(held(survivor.checkpoint_dir)) & set(held(victim.checkpoint_dir)))
        if moment == "writing":
            # The kill cut the victim's write of the survivor's newest id, which holds every
            # update made before it.
            assert newest == max(held(survivor.checkpoint_dir)) > common, (newest, common)
            assert lost == 0, lost
        else:
            assert lost > 0, (newest, covered)
        assert survivor.alive()
        victim.start()
        wait_for(lambda: len(_restored(survivor)) >= 2, 60, "the survivor's learner rejoined")
        wait_for(lambda: len(_restored(victim)) >= 1, 30, "the restarted replica rejoined")
        # Both restored the survivor's newest id, the one the victim never finished (the
        # survivor's learner may have rejoined more than once while the victim was down;
        # only checkpoints of the new group are newer) ...
        assert _restored(victim)[0] == newest
        assert newest in _restored(survivor)[1:], (_restored(survivor), newest)
        # ... and number their rounds past it: no id is given to a second state.
        rejoined = next(e for e in victim.events() if e.get("event") == "sync_restored")
        assert rejoined["next_id"] > newest, (rejoined, newest)
        producer.join(60)
        assert_exactly_once(wait_for_final(replicas, producer), producer)
        # Kafka holds only ids both replicas saved: no restore found a commit ahead of it
        # (tansu drops commit metadata, so one would look like another lineage's: a skip).
        for replica in replicas:
            for start in range(1, replica.starts + 1):
                jumped = replica.event("partitions_resumed_from_group", start)
                assert jumped is None, (start, jumped)
        # The updates lost with the kill (the dead replica's, and the survivor's since the
        # restore point) were learned again after the restore, once; none other twice.
        assert len(read_log(log)) == RECORDS + lost, (len(read_log(log)), lost)
        for replica in replicas:
            assert replica.alive(), replica.log_text()
    finally:
        producer.close()
