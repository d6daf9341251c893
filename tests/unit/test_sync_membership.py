"""Who is in a generation (streamlearn/sync/membership.py): seats in join order are ranks,
rank 0 closes the group whole at once or short after sync.form_wait_s, a late seat is not
a member and tells the members the group grew, and too few replicas form nothing."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from torch.distributed.distributed_c10d import Store

from streamlearn.app.embedded import free_port
from streamlearn.sync.membership import (
    LateForGenerationError,
    NoQuorumError,
    close_generation,
    grown,
    returned,
    take_seat,
)


class _Generation:
    """A fresh store, as rank 0's learner hosts one, and clients of it for the others."""

    def __init__(self) -> None:
        import torch.distributed as dist

        self._dist = dist
        self.port = free_port()
        self.host = self._store(is_master=True)

    def _store(self, *, is_master: bool) -> Store:
        return self._dist.TCPStore(  # type: ignore[attr-defined]
            "127.0.0.1",
            self.port,
            is_master=is_master,
            timeout=timedelta(seconds=10),
            wait_for_workers=False,
        )

    def client(self) -> Store:
        return self._store(is_master=False)


def _seated(generation: _Generation, count: int, wait_s: float) -> list[tuple[int, int]]:
    """``count`` replicas other than rank 0 sit down one after another; each one's
    (rank, size) once the generation closed."""
    seats: list[tuple[int, int]] = [(-1, -1)] * count
    clients = [generation.client() for _ in range(count)]

    def sit(i: int) -> None:
        seats[i] = take_seat(clients[i], 10 + i, wait_s, 10.0)

    threads = []
    for i in range(count):
        threads.append(threading.Thread(target=sit, args=(i,)))
        threads[-1].start()
        time.sleep(0.05)  # in this order
    for thread in threads:
        thread.join()
    return seats


def test_a_whole_group_closes_at_once_with_ranks_in_join_order() -> None:
    generation = _Generation()
    closed: list[int] = []
    closer = threading.Thread(
        target=lambda: closed.append(close_generation(generation.host, 3, 1, 60.0, 10.0))
    )
    began = time.monotonic()
    closer.start()
    seats = _seated(generation, 2, 60.0)
    closer.join()
    assert closed == [3]
    assert seats == [(1, 3), (2, 3)]
    assert time.monotonic() - began < 30  # not the 60 s form wait: it was whole
    assert not grown(generation.host, 3)


def test_a_group_short_of_a_replica_forms_after_the_wait_and_a_late_one_ends_it() -> None:
    generation = _Generation()
    closed: list[int] = []
    closer = threading.Thread(
        target=lambda: closed.append(close_generation(generation.host, 3, 2, 0.5, 10.0))
    )
    closer.start()
    assert _seated(generation, 1, 0.5) == [(1, 2)]
    closer.join()
    assert closed == [2]
    assert not grown(generation.host, 2)
    # The third comes back after the close: not a member, and the members see the group grew.
    with pytest.raises(LateForGenerationError, match="seat 2 in a generation of 2"):
        take_seat(generation.client(), 12, 0.5, 10.0)
    assert grown(generation.host, 2)


def test_fewer_than_min_replicas_form_no_group() -> None:
    generation = _Generation()
    with pytest.raises(NoQuorumError, match=r"1 of the sync\.min_replicas=2 replicas joined"):
        close_generation(generation.host, 3, 2, 0.2, 0.3)


def test_a_member_that_sits_down_again_is_told_apart_from_a_new_replica() -> None:
    """A member whose learner died and started again before the others noticed sits late
    under its configured rank: no last round can be taken with it. A new replica's late
    seat is another rank: the group saves in a last round and forms again with it."""
    generation = _Generation()
    closer = threading.Thread(target=close_generation, args=(generation.host, 3, 1, 60.0, 10.0))
    closer.start()
    assert _seated(generation, 2, 60.0) == [(1, 3), (2, 3)]  # configured ranks 10 and 11
    closer.join()
    with pytest.raises(LateForGenerationError):
        take_seat(generation.client(), 12, 1.0, 10.0)  # a replica added
    assert grown(generation.host, 3)
    assert returned(generation.host, 3) == []
    with pytest.raises(LateForGenerationError):
        take_seat(generation.client(), 11, 1.0, 10.0)  # rank 11 again: it died
    assert returned(generation.host, 3) == [11]


def test_a_quorum_above_the_world_size_or_no_wait_is_refused_naming_the_field() -> None:
    from pydantic import ValidationError

    from streamlearn.core.errors import SettingsError
    from streamlearn.sync.group import rendezvous
    from streamlearn.sync.settings import SyncSettings

    settings = SyncSettings(
        enabled=True, master_addr="h", master_port=1, rank=0, world_size=2, min_replicas=3
    )
    with pytest.raises(SettingsError, match=r"sync\.min_replicas: 3 must be at most the world"):
        rendezvous(settings, {})
    with pytest.raises(ValidationError, match="form_wait_s"):
        SyncSettings(form_wait_s=0)
