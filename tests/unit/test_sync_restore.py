"""What a forming group restores, and from whom (``streamlearn/sync/restore.py``): the rule
is a function of what every replica gathered, so each computes the same plan."""

from __future__ import annotations

import pytest

from streamlearn.sync.restore import RestorePlan, plan, restore_point


@pytest.mark.parametrize(
    ("by_rank", "decider", "expected"),
    [
        ([[3, 5], [3, 5, 6]], False, 6),  # rank 0 died inside its write of 6
        ([[3, 5], [3, 5, 6]], True, 5),  # rank0 decisions: its file holds its open window
        ([[], [4]], True, 4),
        ([[80, 90], [80, 90], [30, 40]], False, 90),  # a volume scaled back in, old ids
        ([[5], [3]], False, 5),  # no id in common
        ([[], []], False, None),
    ],
)
def test_the_group_restores_the_newest_id_any_replica_holds(
    by_rank: list[list[int]], decider: bool, expected: int | None
) -> None:
    assert restore_point(by_rank, decider) == expected


def test_the_lowest_rank_holding_the_id_sends_it_and_rounds_count_on_from_the_newest() -> None:
    # Rank 0 lacks 6 (it died inside that write); ranks 1 and 2 hold it: rank 1 sends.
    assert plan([[3, 5], [3, 5, 6], [5, 6]], [None, None, None], decider=False) == RestorePlan(
        checkpoint_id=6, seeded=False, source=1, newest_id=6
    )
    # rank0 decisions restore rank 0's 5, and rounds still count on from 6: an id is never
    # given to a second state.
    assert plan([[3, 5], [3, 5, 6]], [None, None], decider=True) == RestorePlan(
        checkpoint_id=5, seeded=False, source=0, newest_id=6
    )


def test_without_ids_the_newest_single_process_checkpoint_seeds_the_group() -> None:
    made: list[float | None] = [100.0, None, 250.0, 250.0]
    assert plan([[], [], [], []], made, decider=False) == RestorePlan(
        checkpoint_id=None,
        seeded=True,
        source=2,
        newest_id=0,  # the lowest of the newest
    )


def test_with_nothing_anywhere_rank_0_sends_its_fresh_state() -> None:
    assert plan([[], []], [None, None], decider=False) == RestorePlan(
        checkpoint_id=None, seeded=False, source=0, newest_id=0
    )
