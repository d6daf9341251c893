"""A replica writes a checkpoint id only once every replica's outputs landed, and commits
its offsets to Kafka only once every replica saved it (docs/scaling.md, "Coordinated
checkpoints"): a file covers every replica's records, so a restore of it would skip the
outputs a peer's failed flush lost; and a commit ahead of the id the group restores would
look like another lineage's on a broker that drops commit metadata, and the restore would
skip to it. The group is a stub here: what the other replica says is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamlearn.checkpoint import FileCheckpointStore

# The daemon before its replica: streamlearn.daemon's package imports the loop, which
# imports streamlearn.sync.replica.
from streamlearn.daemon import Daemon
from streamlearn.sync.replica import Replica
from streamlearn.sync.restore import held_ids
from tests.unit.test_daemon import TP0, Source, drain, make, records


class OtherReplica:
    """The collectives of a group of two, where the other replica's outputs ``landed``
    (the first flag a checkpoint round gathers) and it ``saved`` (the second)."""

    def __init__(self, saved: bool, landed: bool = True) -> None:
        self.saved, self.landed = saved, landed
        self._asked = 0

    def all_gather_json(self, value: Any) -> list[Any]:
        return [value, []]  # the other reads no partition

    def all_gather_ints(self, values: list[int]) -> list[list[int]]:
        self._asked += 1
        first = self._asked % 2 == 1
        return [values, [int(self.landed if first else self.saved)]]


def _replica_of_40_learned(tmp_path: Path) -> tuple[Source, Daemon, Replica]:
    """A daemon that learned 40 records of one partition, as a replica (it saves only at a
    round's barrier), its group not set yet."""
    source = Source("in", [records(40)])
    daemon: Daemon = make(tmp_path, source)[0]
    daemon.start()
    drain(daemon, source)
    daemon.checkpointer.coordinated = True
    replica = Replica(
        daemon.settings.sync, daemon.engine, daemon.checkpointer, daemon.metrics, lambda: None
    )
    return source, daemon, replica


@pytest.mark.parametrize(("other_saved", "committed"), [(True, {TP0: 40}), (False, {})])
def test_an_id_is_committed_only_once_every_replica_saved_it(
    tmp_path: Path, other_saved: bool, committed: dict[Any, int]
) -> None:
    source, daemon, replica = _replica_of_40_learned(tmp_path)
    replica.group = OtherReplica(other_saved)  # type: ignore[assignment]  # a stub group
    replica.round = 1
    replica._checkpoint()
    assert daemon.checkpointer.checkpoints == 1  # saved here either way
    assert source.committed_offsets == committed


def test_no_replica_writes_an_id_while_another_replicas_outputs_are_pending(
    tmp_path: Path,
) -> None:
    source, daemon, replica = _replica_of_40_learned(tmp_path)
    replica.group = OtherReplica(saved=False, landed=False)  # type: ignore[assignment]
    replica.round = 1
    replica._checkpoint()
    # This replica's outputs landed, but a file of id 1 would hold the other's offsets too.
    assert daemon.checkpointer.checkpoints == 0 and held_ids(daemon.checkpointer.store) == {}
    assert source.committed_offsets == {}
    deferred = daemon.metrics.checkpoints.labels(result="outputs_pending")._value.get()
    assert deferred == 1
    assert daemon.checkpointer.dirty  # what it learned still waits for a checkpoint


def test_the_last_complete_id_outlives_pruning_while_newer_ones_are_not_complete(
    tmp_path: Path,
) -> None:
    _, daemon, replica = _replica_of_40_learned(tmp_path)
    assert isinstance(daemon.checkpointer.store, FileCheckpointStore)
    daemon.checkpointer.store.keep = 1  # checkpoint.keep: 1
    other = OtherReplica(saved=True)
    replica.group = other  # type: ignore[assignment]  # a stub group
    rounds_held = []
    for round_, other_saved in [(1, True), (2, False), (3, False), (4, True), (5, True)]:
        other.saved = other_saved
        replica.round = round_
        replica._checkpoint()
        rounds_held.append(sorted(held_ids(daemon.checkpointer.store)))
    # keep 1: the newest file, and the last id both saved: an id is known complete only
    # after its save, so the one before it goes at the next save.
    assert rounds_held == [[1], [1, 2], [1, 3], [1, 4], [4, 5]]
