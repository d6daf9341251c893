"""Who is in one generation of the group: seats taken at the store, the group closed by rank 0.

A generation forms at a fresh c10d store (rank 0's learner hosts it; docs/scaling.md). Each
other replica takes a **seat** there (``sync/seats``, counted in join order): its seat is its
rank in this generation, whatever rank it was configured with. Rank 0 **closes** the
generation (``sync/formed``: its size) as soon as all ``sync.world_size`` replicas sit, or
once ``sync.form_wait_s`` passed with at least ``sync.min_replicas`` of them: a replica that
died and does not come back (its node lost, its pod unschedulable) then costs that wait,
not the group's learning. Seats are dense, so a group of 2 out of 3 has ranks 0 and 1 and
every collective runs over the members present.

A replica that takes a seat after the close (one coming back, one added) is not a member:
it leaves and tries again, and its seat tells the members that the group grew
(:func:`grown`), so they end the generation and the next one forms with it. Nothing is
taken from a group that never closes: rank 0 gives up after ``sync.timeout_s`` past the
wait, and a replica with a seat waits that long for the close, each then leaving as after
any failure.

Only rank 0 closes, so two groups never form at once: a replica that cannot reach rank 0's
store sits nowhere and consumes nothing (its Kafka consumer is made after the restore), and
Kafka gives every partition to the members that are there.
"""

from __future__ import annotations

import time
from datetime import timedelta

from torch.distributed.distributed_c10d import Store

from streamlearn.core.logging import get_logger

log = get_logger(__name__)

_SEATS = "sync/seats"  # seats taken by replicas other than rank 0, in join order
_FORMED = "sync/formed"  # the generation's size, set by rank 0 when it closes the group
_WHO = "sync/who"  # per seat: the configured rank of the replica that took it
# How often rank 0 counts the seats while it waits: a loopback read each time.
_COUNT_EVERY_S = 0.05


class LateForGenerationError(Exception):
    """This replica sat down after its generation closed: it waits for the next one."""


class NoQuorumError(Exception):
    """Fewer than ``sync.min_replicas`` replicas joined within the wait."""


def close_generation(
    store: Store, world_max: int, min_replicas: int, form_wait_s: float, timeout_s: float
) -> int:
    """Rank 0: wait for the others to sit, then close the generation; its size."""
    store.set(f"{_WHO}/0", "0")
    started = time.monotonic()
    while True:
        present = 1 + int(store.add(_SEATS, 0))
        waited = time.monotonic() - started
        if present >= world_max or (waited >= form_wait_s and present >= min_replicas):
            size = min(present, world_max)
            store.set(_FORMED, str(size))
            if size < world_max:
                log.warning(
                    "sync_group_short",
                    size=size,
                    world_size=world_max,
                    waited_s=round(waited, 1),
                    why="the missing replicas did not join within sync.form_wait_s",
                )
            return size
        if waited >= form_wait_s + timeout_s:
            raise NoQuorumError(
                f"{present} of the sync.min_replicas={min_replicas} replicas joined within"
                f" sync.form_wait_s + sync.timeout_s = {form_wait_s + timeout_s} s"
            )
        time.sleep(_COUNT_EVERY_S)


def take_seat(
    store: Store, configured_rank: int, form_wait_s: float, timeout_s: float
) -> tuple[int, int]:
    """Any other replica: its rank in this generation and the generation's size, once
    rank 0 closed it. :class:`LateForGenerationError` if it closed before this seat."""
    seat = int(store.add(_SEATS, 1))
    store.set(f"{_WHO}/{seat}", str(configured_rank))
    store.wait([_FORMED], timedelta(seconds=form_wait_s + timeout_s))
    size = int(store.get(_FORMED))
    if seat >= size:
        raise LateForGenerationError(f"seat {seat} in a generation of {size}")
    return seat, size


def grown(store: Store, size: int) -> bool:
    """Whether a replica sat down after the close: the generation must end for it."""
    return 1 + int(store.add(_SEATS, 0)) > size


def returned(store: Store, size: int) -> list[int | None]:
    """The configured ranks of this generation's members that sat down again after the
    close: each died (its learner started again before the others noticed), so no last
    round can be taken with it. A late seat whose rank cannot be read within a second is
    listed as None and counts as returned: failing at once is what a dead member needs,
    and costs a new one only the last round."""
    members = {_rank_at(store, seat) for seat in range(size)}
    late = [_rank_at(store, seat) for seat in range(size, 1 + int(store.add(_SEATS, 0)))]
    return [rank for rank in late if rank is None or rank in members]


def _rank_at(store: Store, seat: int) -> int | None:
    try:
        store.wait([f"{_WHO}/{seat}"], timedelta(seconds=1))
        return int(store.get(f"{_WHO}/{seat}"))
    except (RuntimeError, ValueError):
        return None
