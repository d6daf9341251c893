"""A replica of a group that decides together holds its samples from its own alarm on
(a tentative window) until the round the alarm asks for: there the group's losses confirm
the window, which keeps every sample held, or the active expert learns them after all
(docs/scaling.md). One engine in one process; the other replica's share is made up."""

from __future__ import annotations

import torch

from streamlearn.core.engine import Engine, StepResult
from streamlearn.core.types import Sample
from streamlearn.settings import load_settings
from streamlearn.sync.decisions import GroupDecisions, Shared, interleave

BATCH = 8


def _engine() -> Engine:
    settings = load_settings(
        None,
        model={"hidden": [8], "seed": 1},
        drift={"false_alarms_per_100k": 10},
        experts={"decision_window": 64},
    )
    engine = Engine(
        settings.model, settings.engine, settings.drift, settings.experts, settings.adapt
    )
    engine.decides_at_rounds = True
    return engine


def _samples(n: int, seed: int) -> list[Sample]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=gen)
    return [Sample(r.tolist(), int(r[0] > 0)) for r in x]


def _learned(engine: Engine, samples: list[Sample]) -> None:
    for start in range(0, len(samples), BATCH):
        engine.process(samples[start : start + BATCH])


def _warm_then_alarm(reported: list[StepResult]) -> tuple[Engine, GroupDecisions]:
    """An engine past its detector's warm-up, at a round, that then raises an alarm of its
    own and holds two batches."""
    engine = _engine()
    _learned(engine, _samples(1500, 0))
    decisions = GroupDecisions(engine, reported.append)
    decisions.share()  # the round: what it kept went to the group
    decisions.restored()
    assert engine.pool is not None and not engine.pool.deciding
    engine.pool.begin_decision(engine.samples_learned, tentative=True)  # as an alarm does
    _learned(engine, _samples(2 * BATCH, 1))
    return engine, decisions


def _peer(losses: list[float]) -> Shared:
    return {"held": -1, "tentative": False, "vote": {}, "losses": losses}


def test_a_window_the_groups_losses_do_not_bear_out_goes_back_to_the_active_expert() -> None:
    reported: list[StepResult] = []
    engine, decisions = _warm_then_alarm(reported)
    assert engine.pool is not None
    learned_before = engine.pool.active.samples_learned
    mine = decisions.share()
    assert (mine["held"], mine["tentative"], len(mine["losses"])) == (2 * BATCH, True, 2 * BATCH)
    calm = [min(mine["losses"])] * (2 * BATCH)
    assert decisions.settle([mine, _peer(calm)], engine.samples_learned, False, 0)
    assert not engine.pool.deciding and list(engine.pool.members) == ["0"]
    assert engine.pool.active.samples_learned == learned_before + 2 * BATCH
    assert reported == []


def test_a_window_the_groups_losses_confirm_keeps_what_it_held() -> None:
    reported: list[StepResult] = []
    engine, decisions = _warm_then_alarm(reported)
    assert engine.pool is not None
    mine = decisions.share()
    # The other replica's share of a new concept: losses far above the expert's.
    assert not decisions.settle([mine, _peer([10.0] * 100)], engine.samples_learned, False, 0)
    decision = engine.pool.decision
    assert decision is not None and not decision.tentative and decision.count == 2 * BATCH
    assert [e.kind for r in reported for e in r.drift_events].count("drift") == 1
    # The window fills as the group's from the samples held before the round on: the next
    # round, with 64 held, decides on them all (the stream never changed: the expert stays).
    learned_before = engine.pool.active.samples_learned
    _learned(engine, _samples(6 * BATCH, 2))
    mine = decisions.share()
    assert mine["held"] == 8 * BATCH and not mine["tentative"]
    assert decisions.settle([mine, _peer([])], engine.samples_learned, False, 0)
    assert not engine.pool.deciding
    assert [(e.kind, e.expert) for r in reported for e in r.pool_events] == [("keep", "0")]
    assert engine.pool.active.samples_learned == learned_before + 8 * BATCH


def test_the_replicas_losses_merge_by_their_place_in_each_share() -> None:
    merged = interleave([[1.0, 2.0], [10.0, 20.0, 30.0, 40.0]])
    assert merged == [10.0, 1.0, 20.0, 30.0, 2.0, 40.0]
    assert interleave([[1.0, 2.0], [3.0, 4.0]]) == [1.0, 3.0, 2.0, 4.0]
    assert interleave([[], [5.0]]) == [5.0]
