"""A coordinated checkpoint inside a sync round (aligned, as Flink's; docs/scaling.md,
"Coordinated checkpoints"). Every replica calls :func:`save_round` in the same round; the
order is what makes one id one consistent cut of the whole group:

1. **Offsets.** Every replica's next offsets are gathered; for each partition the group's
   is the furthest any replica read (a partition handed over goes on from where its last
   owner stopped), so each replica's file holds every partition's.
2. **Outputs landed.** A file of this id covers every replica's records, so it is written
   only once every replica's outputs of them landed: a restore of it never skips a
   prediction that a replica's failed flush (or death inside it) lost.
3. **Save.** Each replica writes the round's state under the round's id.
4. **Commit.** Kafka gets the id's offsets only once every replica saved it: the group then
   never restores an older id, so no commit lies ahead of a restore (on a broker that drops
   commit metadata, as tansu does, such a commit would look like another lineage's, and the
   restore would skip to it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from streamlearn.checkpoint.state import Barrier
from streamlearn.core.types import Offsets, TopicPartition

if TYPE_CHECKING:  # the daemon's package imports the sync package: no cycle at run time
    from streamlearn.daemon.checkpointer import Checkpointer


class Gathers(Protocol):
    """What a coordinated checkpoint needs of the group: its all-gathers."""

    def all_gather_json(self, value: Any) -> list[Any]: ...
    def all_gather_ints(self, values: list[int]) -> list[list[int]]: ...


def save_round(
    group: Gathers, checkpointer: Checkpointer, round_: int, sync_state: dict[str, Any]
) -> bool:
    """Save this round's state under its id with the group's offsets (collective). True if
    this replica saved it."""
    offsets = _group_offsets(group, checkpointer)
    barrier = Barrier(round_, offsets, sync_state)
    landed = checkpointer.landed("sync")
    if _everywhere(group, landed):
        saved = checkpointer.checkpoint("sync", barrier=barrier, landed=True)
    else:
        saved = False
        if landed:
            checkpointer.deferred("sync", "another replica's outputs have not landed")
    if saved:
        # Where the group stopped in the partitions other replicas read: a partition
        # assigned here next seeks there.
        for tp, offset in offsets.items():
            if tp not in checkpointer.positions:
                checkpointer.known[tp] = offset
    if _everywhere(group, saved):
        checkpointer.commit_group(offsets)
    return saved


def _group_offsets(group: Gathers, checkpointer: Checkpointer) -> Offsets:
    """For each partition, the furthest next offset any replica read."""
    mine = [[tp.topic, tp.partition, o] for tp, o in checkpointer.offsets().items()]
    offsets: Offsets = {}
    for rows in group.all_gather_json(mine):
        for topic, partition, offset in rows:
            tp = TopicPartition(topic, int(partition))
            offsets[tp] = max(offsets.get(tp, 0), int(offset))
    return offsets


def _everywhere(group: Gathers, true_here: bool) -> bool:
    return all(ok for (ok,) in group.all_gather_ints([int(true_here)]))
