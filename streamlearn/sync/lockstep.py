"""Replicas driven in lockstep, as a test or benchmark drives them (not the daemon).

A live stream's replicas read their partitions at the same pace, so a concept change
reaches them together. A driver that runs replicas on a shared, loaded machine must make
that so: unpaced, one replica runs steps ahead of the other between rounds, a decision
window mixes one's old concept with the other's new one, and what a seeded run decides
depends on the machine's load. These helpers pace replicas through the group's c10d store
and take every round asked for meanwhile; set ``sync.every_seconds`` high as well (a round
by the clock would still follow the load).
"""

from __future__ import annotations

import time

from torch.distributed.distributed_c10d import Store

from streamlearn.sync.replica import Replica

_PREFIX = "lockstep"


def take_round(replica: Replica) -> bool:
    """After a step, as the daemon's loop does: ask for a round if one is due, take it if
    one was asked for, looking at the store at once. True if a round was taken."""
    return replica.maybe_sync(at_once=True)


def keep_pace(replica: Replica, steps: int) -> int:
    """Wait, taking any round asked for, until every replica took ``steps`` learning steps:
    a round asked after a step is then taken by all before any takes the next. The rounds
    taken."""
    store, rank, world = _store(replica)
    store.set(f"{_PREFIX}/steps/{rank}", str(steps))
    rounds = 0
    while any(_steps_of(store, r) < steps for r in range(world)):
        rounds += take_round(replica)
    return rounds


def finish(replica: Replica) -> int:
    """Take the rounds the others ask for until every replica is done, then one last round
    for all, so the last steps reach the group's model. The rounds taken."""
    store, rank, world = _store(replica)
    store.add(f"{_PREFIX}/done", 1)
    rounds = 0
    while int(store.add(f"{_PREFIX}/done", 0)) < world:
        rounds += take_round(replica)
        time.sleep(0.001)
    if rank == 0:
        replica.ask_round()
        store.set(f"{_PREFIX}/final", str(replica.round + 1))
    final = f"{_PREFIX}/final"
    while not store.check([final]) or replica.round < int(store.get(final)):
        rounds += take_round(replica)
        time.sleep(0.001)
    return rounds


def _store(replica: Replica) -> tuple[Store, int, int]:
    group = replica.group
    assert group is not None, "join() first"
    return group.store, group.rank, group.world_size


def _steps_of(store: Store, rank: int) -> int:
    key = f"{_PREFIX}/steps/{rank}"
    return int(store.get(key)) if store.check([key]) else 0
