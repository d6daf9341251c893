"""A partition moving between replicas of one group goes on from where its last owner
stopped (docs/scaling.md, "Membership changes"): the checkpointer leaves a revoked
partition's next offset with the group (the replica puts it in the c10d store) and seeks an
assigned one to the later of its checkpoint's offset and the one left there; one that
another replica still held at the last round waits for its handoff (sync/handoff.py)."""

from __future__ import annotations

from pathlib import Path

from streamlearn.core.types import Offsets, TopicPartition
from streamlearn.sync.handoff import Handoffs
from tests.unit.test_daemon import TP0, TP1, Source, drain, make, records


class DictStore:
    """The c10d store's three calls a handoff makes, over a dict."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    def set(self, key: str, value: str) -> None:
        self.values[key] = value.encode()

    def get(self, key: str) -> bytes:
        return self.values[key]

    def check(self, keys: list[str]) -> bool:
        return all(k in self.values for k in keys)


def handoffs(store: DictStore, rank: int, left: Offsets | None = None) -> Handoffs:
    """Replica ``rank``'s handoffs, with ``left`` already left by another at round 0."""
    other = Handoffs(store, 1 - rank)  # type: ignore[arg-type]  # the store's three calls
    other.left(left or {})
    return Handoffs(store, rank)  # type: ignore[arg-type]


def test_a_revoked_partition_leaves_where_this_replica_stopped(tmp_path: Path) -> None:
    source = Source("in", [records(50), records(30)])
    daemon, _ = make(tmp_path, source)
    store = DictStore()
    daemon.checkpointer.handoff = handoffs(store, 0)
    daemon.start()
    drain(daemon, source)
    daemon.on_revoked([TP1])
    assert store.values == {"sync/handoff/in/1": b"[30, 0]"}


def test_an_assigned_partition_resumes_at_the_later_of_checkpoint_and_handoff(
    tmp_path: Path,
) -> None:
    source = Source("in", [records(50), records(30)])
    daemon, _ = make(tmp_path, source)
    daemon.start()
    tp2 = TopicPartition("in", 2)
    # The checkpoint's offsets; another replica read partition 1 further, and partition 2
    # the checkpoint never saw; partition 0 it left behind the checkpoint (an older owner).
    daemon.checkpointer.known = {TP0: 40, TP1: 10}
    daemon.checkpointer.handoff = handoffs(DictStore(), 0, {TP0: 35, TP1: 25, tp2: 7})
    daemon.checkpointer.on_assigned([TP0, TP1, tp2])
    assert source.positions[TP0] == 40 and source.positions[TP1] == 25
    assert source.positions[tp2] == 7
    assert daemon.checkpointer.positions == {TP0: 40, TP1: 25, tp2: 7}


def test_a_partition_another_replica_still_holds_waits_for_its_handoff(tmp_path: Path) -> None:
    source = Source("in", [records(50), records(30)])
    daemon, _ = make(tmp_path, source)
    store = DictStore()
    mine, other = handoffs(store, 0), Handoffs(store, 1)  # type: ignore[arg-type]
    # At round 3 the other replica held partition 1 (its session ran out since, say, and
    # Kafka gave the partition here before that replica polled again and revoked it).
    mine.held(3, [[], [["in", 1]]])
    other.round = 2
    other.left({TP1: 5})  # a handoff from before round 3: stale
    daemon.checkpointer.handoff = mine
    daemon.start()
    drain(daemon, source)
    assert daemon.engine.samples_learned == 50  # partition 0 only: 1's records dropped
    assert TP1 not in daemon.checkpointer.positions and source.positions[TP1] == 30
    other.round = 3
    other.left({TP1: 20})  # it polled, and revoked the partition at offset 20
    daemon.step()
    drain(daemon, source)
    assert daemon.engine.samples_learned == 60  # 20..29: each record once over the two
    assert daemon.checkpointer.positions[TP1] == 30


def test_a_wait_whose_holder_holds_the_partition_no_more_ends_at_the_checkpoint() -> None:
    store = DictStore()
    mine = handoffs(store, 0)
    mine.held(3, [[], [["in", 1]]])
    assert mine.resumes([TP1]) == ({}, {TP1})
    mine.held(4, [[], []])  # a later round: nobody holds it, and nothing was left
    assert mine.arrived([TP1]) == {TP1: 0}  # the checkpointer's floor then decides
