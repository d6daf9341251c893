"""A partition moving between replicas of one group goes on from where its last holder
stopped reading it, not from the checkpoint: the holder's updates from what it read since
are in the group's model at the next round.

The holder leaves each revoked partition's next offset in the c10d store, with the round it
had taken (``sync/handoff/<topic>/<partition>``: ``[offset, round]``). Kafka does not order
that revoke before the next holder's assignment: a replica stalled past its session (a long
pause of the whole process) is dropped from the consumer group and its partitions assigned
to another while it still holds them, and it revokes them only at its next poll. So at
every round the replicas tell each other which partitions they hold (``held``), and a
replica assigned a partition that another held at round ``r`` waits for a handoff left at
round ``r`` or later: until it comes, the partition's records are dropped after each poll
(``Checkpointer.reconcile``), and the partition seeks to the handoff's offset once it does.
The wait cannot outlast the holder: a holder that does not come back is a lost peer, and
the group re-forms from its newest checkpoint (replica.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from torch.distributed.distributed_c10d import Store

from streamlearn.core.logging import get_logger
from streamlearn.core.types import Offsets, TopicPartition
from streamlearn.sync.group import GroupLostError

log = get_logger(__name__)


class Handoffs:
    """The handoff keys of one generation of the group, seen from replica ``rank``."""

    def __init__(self, store: Store, rank: int) -> None:
        self.store = store
        self.rank = rank
        self.round = 0  # the last round this replica took
        self.holders: dict[TopicPartition, tuple[int, int]] = {}  # -> (rank, round) elsewhere

    def held(self, round_: int, by_rank: Sequence[Iterable[Sequence[object]]]) -> None:
        """At round ``round_``: every replica's partitions, as ``[topic, partition]`` rows."""
        self.round = round_
        self.holders = {
            TopicPartition(str(topic), int(str(partition))): (rank, round_)
            for rank, rows in enumerate(by_rank)
            if rank != self.rank
            for topic, partition in rows
        }

    def left(self, positions: Offsets) -> None:
        """Revoked partitions' next offsets, for whichever replica is assigned them."""
        try:
            for tp, offset in positions.items():
                self.store.set(_key(tp), json.dumps([offset, self.round]))
        except RuntimeError as exc:  # the group is gone (its next generation starts afresh)
            log.info("sync_handoff_skipped", error=str(exc))

    def resumes(self, partitions: Iterable[TopicPartition]) -> tuple[Offsets, set[TopicPartition]]:
        """Where another replica stopped reading these partitions, and those whose holder
        at the last round has not left them yet (to wait for: :meth:`arrived`)."""
        ready, waiting = self._split(partitions)
        if waiting:
            log.info(
                "partitions_awaiting_handoff",
                partitions=_names(waiting),
                holders={f"{tp.topic}/{tp.partition}": self.holders[tp][0] for tp in waiting},
            )
        return ready, waiting

    def arrived(self, waiting: list[TopicPartition]) -> Offsets:
        """The waiting partitions whose holder has left them since, and where (called
        after each poll; a store that fails ends this generation of the group). A holder
        that reported a partition leaves it when it is revoked, or is lost and the group
        re-forms; one that a later round shows holding it no more, with nothing left,
        would be a bug: the partition goes on from the checkpoint's offset (offset 0 here)
        rather than wait for ever, with a warning."""
        try:
            ready, still = self._split(waiting)
        except RuntimeError as exc:
            raise GroupLostError(f"the store, reading a handoff: {exc}") from exc
        unheld = [tp for tp in waiting if tp not in ready and tp not in still]
        if unheld:
            log.warning("partitions_handoff_missing", partitions=_names(unheld))
        if ready:
            log.info(
                "partitions_handed_over",
                offsets={f"{tp.topic}/{tp.partition}": o for tp, o in ready.items()},
            )
        return {**ready, **dict.fromkeys(unheld, 0)}

    def _split(self, partitions: Iterable[TopicPartition]) -> tuple[Offsets, set[TopicPartition]]:
        ready: Offsets = {}
        waiting = set()
        for tp in partitions:
            left = self._left(tp)
            holder = self.holders.get(tp)
            if holder is not None and (left is None or left[1] < holder[1]):
                waiting.add(tp)
            elif left is not None:
                ready[tp] = left[0]
        return ready, waiting

    def _left(self, tp: TopicPartition) -> tuple[int, int] | None:
        key = _key(tp)
        if not self.store.check([key]):
            return None
        offset, round_ = json.loads(self.store.get(key))
        return int(offset), int(round_)


def _key(tp: TopicPartition) -> str:
    return f"sync/handoff/{tp.topic}/{tp.partition}"


def _names(partitions: Iterable[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}/{tp.partition}" for tp in partitions)
