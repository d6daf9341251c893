"""ExpertPool.step: one call per labeled batch learns it, or holds it while a decision is
open, and closes the decision once the window is full; the outcome tells the engine what
happened. A tiny expert that predicts its seed makes every loss known in advance."""

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from streamlearn.core.experts.decision import Decision, GroupScores, PoolStep
from streamlearn.core.experts.pool import ExpertPool
from streamlearn.settings import ExpertsSettings

WINDOW = 40  # samples held per decision
RELEARN = 16  # rows per relearning step
BATCH = 25  # rows per labeled batch: two fill the window, 50 are relearned as 16+16+16+2


class Tiny:
    """Predicts its seed for every row; learning changes nothing and reports ``loss``."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.loss = 0.25
        self.skipped: str | None = None
        self.learned: list[int] = []  # rows per learn call

    @property
    def module(self) -> nn.Module | None:
        return None

    def predict(self, x: Tensor) -> Tensor:
        return torch.full((x.shape[0],), float(self.seed))

    def learn(self, x: Tensor, y: Tensor) -> Tensor:
        self.learned.append(x.shape[0])
        return torch.full((x.shape[0],), self.loss)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


def absolute(out: Tensor, y: Tensor) -> Tensor:
    return (out - y).abs()


def tiny_pool(**settings: Any) -> ExpertPool:
    experts = ExpertsSettings(decision_window=WINDOW, spawn="fresh", **settings)
    return ExpertPool(experts, Tiny, absolute, 2, torch.device("cpu"), 0, relearn_batch=RELEARN)


def batch(first: int, target: float = 0.5) -> tuple[Tensor, Tensor]:
    """``BATCH`` rows numbered from ``first`` (so chunks can be traced), all with ``target``."""
    x = torch.arange(first, first + BATCH, dtype=torch.float32).unsqueeze(1).repeat(1, 2)
    return x, torch.full((BATCH,), target)


def step(pool: ExpertPool, first: int, target: float = 0.5) -> PoolStep:
    """The pool's step on a batch at stream position ``first``; the answerer's losses are
    the active expert's (seed 0: ``target`` itself)."""
    x, y = batch(first, target)
    return pool.step(x, x, x, y, torch.full((BATCH,), target), first)


def tiny(pool: ExpertPool, id_: str) -> Tiny:
    expert = pool.members[id_].expert
    assert isinstance(expert, Tiny)
    return expert


def test_a_drift_holds_the_window_then_a_new_expert_learns_it_in_relearn_sized_steps() -> None:
    pool = tiny_pool()
    learned = step(pool, 0)
    assert (learned.held, learned.steps, learned.events) == (False, 1, [])
    assert learned.losses.tolist() == [0.25] * BATCH  # the expert's own, from learn
    assert [(c.expert, c.x.shape[0]) for c in learned.learned] == [("0", BATCH)]

    pool.begin_decision(BATCH)  # what the engine does on a drift
    first = step(pool, BATCH)
    assert (first.held, first.steps, first.events, first.learned) == (True, 0, [], [])
    assert first.losses.tolist() == [0.5] * BATCH  # the leader's, on the held rows
    assert pool.deciding

    closing = step(pool, 2 * BATCH)
    assert closing.held and not pool.deciding
    # No band is ready, so nothing is reused: a new regime, a new expert.
    assert [(e.kind, e.expert, e.previous, e.sample) for e in closing.events] == [
        ("spawn", "1", "0", 3 * BATCH)
    ]
    assert closing.events[0].scores == {"0": 0.5}
    assert closing.steps == 4
    assert [(c.expert, c.x.shape[0]) for c in closing.learned] == [
        ("1", 16),
        ("1", 16),
        ("1", 16),
        ("1", 2),
    ]
    held = torch.cat([c.x[:, 0] for c in closing.learned])
    assert held.tolist() == list(range(BATCH, 3 * BATCH))  # both batches, in stream order
    assert tiny(pool, "1").learned == [16, 16, 16, 2] and tiny(pool, "0").learned == [BATCH]
    assert pool.active_id == "1" and pool.members["1"].samples_learned == 2 * BATCH


def test_a_window_inside_the_active_experts_band_keeps_it() -> None:
    pool = tiny_pool()
    for k in range(8):  # 200 losses of exactly 0.5: past the band's transient, ready
        step(pool, k * BATCH)
    assert pool.active.band.ready
    pool.begin_decision(8 * BATCH)
    assert step(pool, 8 * BATCH).events == []
    closing = step(pool, 9 * BATCH)
    assert [(e.kind, e.expert, e.previous) for e in closing.events] == [("keep", "0", "0")]
    assert (closing.steps, [c.x.shape[0] for c in closing.learned]) == (4, [16, 16, 16, 2])
    assert list(pool.members) == ["0"] and pool.members["0"].wins == 2


def test_non_finite_losses_are_replaced_by_the_scored_ones_and_a_skip_is_counted() -> None:
    pool = tiny_pool()
    expert = tiny(pool, "0")
    expert.loss, expert.skipped = float("nan"), "loss"
    outcome = step(pool, 0, target=0.75)
    assert outcome.losses.tolist() == [0.75] * BATCH
    assert pool.take_skips() == {"loss": 1}
    expert.skipped = None
    step(pool, BATCH)
    assert pool.take_skips() == {}


def test_the_pool_credits_answers_and_hands_out_forwards_and_modules() -> None:
    pool = tiny_pool()
    pool.begin_decision(0)
    step(pool, 0)
    step(pool, BATCH)  # spawns "1"
    pool.credit(["0", "1", "1", "0"], torch.tensor([True, False, False, True]))
    assert (pool.members["0"].accuracy, pool.members["1"].accuracy) == (1.0, 0.0)
    assert sorted(pool.forwards()) == ["0", "1"] == sorted(pool.live_ids())
    assert pool.forwards()["1"](torch.zeros(3, 2)).tolist() == [1.0] * 3
    assert pool.modules() == {}  # Tiny has no network: nothing to adapt


def test_closing_a_decision_early_learns_what_it_held_and_an_empty_one_just_ends() -> None:
    # A replica that does not decide closes its window at a sync round (docs/scaling.md).
    pool = tiny_pool()
    step(pool, 0)
    pool.begin_decision(BATCH)
    step(pool, BATCH)  # held: the window (40) is not full
    closing = pool.close_decision(2 * BATCH)
    assert not pool.deciding
    assert [(e.kind, e.expert, e.sample) for e in closing.events] == [("spawn", "1", 2 * BATCH)]
    assert [(c.expert, c.x.shape[0]) for c in closing.learned] == [("1", 16), ("1", 9)]
    assert closing.steps == 2

    pool.begin_decision(2 * BATCH)
    empty = pool.close_decision(2 * BATCH)
    assert not pool.deciding and (empty.events, empty.learned, empty.steps) == ([], [], 0)


def test_a_group_window_stays_open_past_its_size_until_the_round_closes_it() -> None:
    # A replica of a group that decides together (docs/scaling.md): its pool holds on.
    pool = tiny_pool()
    pool.closes_at_window = False
    pool.begin_decision(0)
    for k in range(3):  # 75 held, past the window of 40
        assert step(pool, k * BATCH).events == []
    assert pool.deciding and pool.decision is not None and pool.decision.count == 3 * BATCH


def test_a_tentative_window_holds_as_the_active_expert_answers_and_withdraws_into_it() -> None:
    # A replica's own alarm, before its group's round confirms it (docs/scaling.md).
    pool = tiny_pool()
    pool.closes_at_window = False
    step(pool, 0)
    pool.begin_decision(BATCH, tentative=True)
    held = step(pool, BATCH, target=0.75)
    assert (held.held, held.tentative, held.steps, held.learned) == (True, True, 0, [])
    assert held.losses.tolist() == [0.75] * BATCH  # the active expert's: the detectors' feed
    assert pool.answerers(torch.zeros(3, 2)) == ["0", "0", "0"]
    withdrawn = pool.withdraw_decision(2 * BATCH)
    assert not pool.deciding and withdrawn.events == []
    assert [(c.expert, c.x.shape[0]) for c in withdrawn.learned] == [("0", 16), ("0", 9)]
    assert withdrawn.steps == 2 and tiny(pool, "0").learned == [BATCH, 16, 9]
    assert list(pool.members) == ["0"] and pool.members["0"].samples_learned == 2 * BATCH


def test_a_confirmed_tentative_window_decides_on_every_sample_it_held() -> None:
    pool = tiny_pool()
    pool.begin_decision(0, tentative=True)
    step(pool, 0)
    pool.begin_decision(BATCH)  # the group's round: the same window, no longer tentative
    assert pool.decision is not None and not pool.decision.tentative
    assert pool.decision.count == BATCH and pool.decision.sample == 0
    closing = step(pool, BATCH)
    assert [(e.kind, e.expert) for e in closing.events] == [("spawn", "1")]
    assert sum(c.x.shape[0] for c in closing.learned) == 2 * BATCH


def test_replicas_closing_on_the_groups_scores_choose_alike_and_learn_their_own_rows() -> None:
    holding, empty = tiny_pool(), tiny_pool()  # alike, as every replica's after a round
    for pool in (holding, empty):
        pool.closes_at_window = False
        pool.begin_decision(0)
    step(holding, 0)  # 25 rows held here, none on the other replica
    votes = [holding.decision.vote(), empty.decision.vote()]  # type: ignore[union-attr]
    assert votes == [{"0": [12.5, 25.0]}, {"0": [0.0, 0.0]}]
    scores = GroupScores.combine(votes, 25)
    assert scores == GroupScores({"0": 0.5}, 25)

    closed = [pool.close_decision(100, scores) for pool in (holding, empty)]
    for outcome in closed:
        assert [(e.kind, e.expert, e.sample, e.scores) for e in outcome.events] == [
            ("spawn", "1", 100, {"0": 0.5})
        ]
    assert [(c.expert, c.x.shape[0]) for c in closed[0].learned] == [("1", 16), ("1", 9)]
    assert (closed[1].learned, closed[1].steps) == ([], 0)
    assert holding.active_id == empty.active_id == "1" and not empty.deciding


def test_group_scores_average_over_the_replicas_that_scored_each_expert() -> None:
    votes = [
        {"0": [10.0, 20.0], "1": [4.0, 20.0]},
        {"0": [30.0, 40.0], "1": [0.0, 0.0]},  # "1" not scored here (off its shortlist)
        {"0": [0.0, 0.0], "1": [0.0, 0.0]},  # nothing held here
    ]
    scores = GroupScores.combine(votes, 60)
    assert scores.means == {"0": 40.0 / 60.0, "1": 0.2} and scores.count == 60
    assert GroupScores.combine([{"0": [0.0, 0.0]}], 0).means == {"0": math.inf}


def test_a_window_rekeyed_to_the_groups_experts_leaves_the_unscored_out_of_its_vote() -> None:
    decision = Decision(0, ["0", "1"])
    decision.loss_sums, decision.count = {"0": 3.0, "1": math.inf}, 6
    decision.rekeyed(["0", "1", "2"])
    assert decision.vote() == {"0": [3.0, 6.0], "1": [0.0, 0.0], "2": [0.0, 0.0]}
