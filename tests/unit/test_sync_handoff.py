"""A partition moving between replicas of one group goes on from where its last owner
stopped (docs/scaling.md, "Membership changes"): the checkpointer leaves a revoked
partition's next offset with the group (the replica puts it in the c10d store) and seeks an
assigned one to the later of its checkpoint's offset and the one left there."""

from __future__ import annotations

from pathlib import Path

from streamlearn.core.types import Offsets, TopicPartition
from tests.unit.test_daemon import TP0, TP1, Source, drain, make, records


class DictHandoff:
    """The store's handoff keys, as a dict."""

    def __init__(self, left: Offsets | None = None) -> None:
        self.offsets: Offsets = dict(left or {})

    def left(self, positions: Offsets) -> None:
        self.offsets.update(positions)

    def resumes(self, partitions: list[TopicPartition]) -> Offsets:
        return {tp: self.offsets[tp] for tp in partitions if tp in self.offsets}


def test_a_revoked_partition_leaves_where_this_replica_stopped(tmp_path: Path) -> None:
    source = Source("in", [records(50), records(30)])
    daemon, _ = make(tmp_path, source)
    handoff = DictHandoff()
    daemon.checkpointer.handoff = handoff
    daemon.start()
    drain(daemon, source)
    daemon.on_revoked([TP1])
    assert handoff.offsets == {TP1: 30}


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
    daemon.checkpointer.handoff = DictHandoff({TP0: 35, TP1: 25, tp2: 7})
    daemon.checkpointer.on_assigned([TP0, TP1, tp2])
    assert source.positions[TP0] == 40 and source.positions[TP1] == 25
    assert source.positions[tp2] == 7
    assert daemon.checkpointer.positions == {TP0: 40, TP1: 25, tp2: 7}
