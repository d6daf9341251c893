"""Replicas of two sync protocols never form a group: a rolling update mixes versions, and
collectives of two protocols would pair the wrong messages. Each member announces its
protocol in the generation's store before any collective (``agree_on_protocol``)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
from torch.distributed.distributed_c10d import Store

from streamlearn.app.embedded import free_port
from streamlearn.sync.group import SYNC_PROTOCOL, Group, GroupLostError, agree_on_protocol
from streamlearn.sync.settings import SyncSettings


def _stores(world: int) -> list[Store]:
    port = free_port()
    timeout = timedelta(seconds=10)
    master = dist.TCPStore(  # type: ignore[attr-defined]
        "127.0.0.1", port, world, is_master=True, timeout=timeout, wait_for_workers=False
    )
    others = [
        dist.TCPStore("127.0.0.1", port, world, is_master=False, timeout=timeout)  # type: ignore[attr-defined]
        for _ in range(world - 1)
    ]
    return [master, *others]


def _agree(stores: list[Store], protocols: list[int]) -> list[BaseException | None]:
    """Each rank's outcome, every rank announcing at once as the replicas of a group do."""
    outcomes: list[BaseException | None] = [None] * len(stores)

    def member(rank: int) -> None:
        try:
            agree_on_protocol(stores[rank], rank, len(stores), 5.0, protocols[rank])
        except GroupLostError as exc:
            outcomes[rank] = exc

    threads = [threading.Thread(target=member, args=(r,)) for r in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_members_of_one_protocol_form_the_group() -> None:
    assert _agree(_stores(3), [SYNC_PROTOCOL] * 3) == [None, None, None]


def test_members_of_two_protocols_all_leave_naming_the_versions() -> None:
    outcomes = _agree(_stores(2), [SYNC_PROTOCOL, SYNC_PROTOCOL + 1])
    assert all(isinstance(o, GroupLostError) for o in outcomes)
    assert "different sync protocols (rank 0: " in str(outcomes[0])
    assert str(outcomes[0]) == str(outcomes[1])


def test_a_member_that_announces_nothing_ends_the_wait_with_a_clear_error() -> None:
    stores = _stores(2)  # rank 1 is a replica from before the announcement: it never sets one
    with pytest.raises(GroupLostError, match=r"ranks \[1\] announced no sync protocol"):
        agree_on_protocol(stores[0], 0, 2, 0.5, SYNC_PROTOCOL)


def test_a_replica_meeting_another_protocol_leaves_before_any_collective() -> None:
    port = free_port()
    settings = SyncSettings(
        enabled=True, master_addr="127.0.0.1", master_port=port, rank=0, world_size=2, timeout_s=5
    )
    outcome: list[BaseException] = []

    def rank_zero() -> None:  # hosts the generation's store, as rank 0's learner does
        try:
            Group(settings, torch.device("cpu"))
        except GroupLostError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=rank_zero)
    thread.start()
    # Rank 1, a replica of another version: it joins the store as Group does, and announces.
    rank_one = dist.TCPStore(  # type: ignore[attr-defined]
        "127.0.0.1", port, 2, is_master=False, timeout=timedelta(seconds=10)
    )
    rank_one.add("sync/seats", 1)  # it takes a seat: rank 0 closes the group of 2
    rank_one.set("sync/protocol/1", json.dumps({"protocol": SYNC_PROTOCOL + 1, "version": "9.9"}))
    thread.join()
    assert len(outcome) == 1
    assert "rank 1: 9.9" in str(outcome[0])
    assert not dist.is_initialized()  # no collective was ever set up with it


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '{"version": "9.9"}', '{"protocol": "1"}'])
def test_an_unreadable_announcement_ends_the_wait_naming_its_rank(raw: str) -> None:
    stores = _stores(2)
    stores[1].set("sync/protocol/1", raw)
    with pytest.raises(GroupLostError, match="rank 1's sync protocol announcement is unreadable"):
        agree_on_protocol(stores[0], 0, 2, 5.0, SYNC_PROTOCOL)
