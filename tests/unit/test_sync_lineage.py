"""Two replicas make one learner's pool decisions (docs/scaling.md, "Steps per sample").

Each replica learns half of the batch one learner would, with Adam at sqrt(2) times the
rate (``sync.scale_learning_rate``): a step then moves the group as far as one learner's
step on the whole batch. A seeded drifting stream where the first decision after the first
concept change is close: one learner spawns a new expert. Two replicas at the configured
rate kept the old expert instead (their steps were 1/sqrt(2) as long, and the new concept
looked less new in the decision window), and from there the pools' histories parted
(docs/benchmarks.md, scale-out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from streamlearn.app.embedded import free_port
from streamlearn.core.engine import Engine, StepResult
from streamlearn.core.types import Sample
from streamlearn.settings import Settings, load_settings
from streamlearn.streams.synthetic import take
from streamlearn.sync.lockstep import finish, keep_pace
from streamlearn.sync.replica import replica_settings
from tests.support.replicas import engine_replica, run_pair, step

pytestmark = pytest.mark.timeout(180)

SEED = 2  # a stream whose first decision one learner makes by a margin of 0.05 in loss
SAMPLES = 2_600  # the first concept, its change at 2,000, and the decision after it
BATCH = 32  # one learner's step; each of 2 replicas steps on 16 (sync.split_batch)


def _stream() -> list[Sample]:
    return [Sample(s["x"], s["y"]) for s in take("agrawal", SAMPLES, seed=SEED, segment=2_000)]


def _decisions(result: StepResult) -> list[str]:
    return [e.kind for e in result.pool_events]


def _settings(rank: int, port: int) -> Settings:
    sync: dict[str, Any] = {"enabled": True, "rank": rank, "world_size": 2}
    # Rounds by steps only, and the replicas kept in step: the decision is the point, and a
    # replica running ahead of the other between rounds would mix the concepts a decision
    # window holds by the machine's load.
    sync |= {"every_steps": 10, "every_seconds": 10**6, "checkpoint_every_rounds": 10**6}
    sync |= {"master_addr": "127.0.0.1", "master_port": port}
    settings = load_settings(None, model={"seed": SEED}, checkpoint={"enabled": False}, sync=sync)
    return replica_settings(settings)


def _replica(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    events: list[str] = []
    engine, replica = engine_replica(
        _settings(rank, port), BATCH // 2, lambda result: events.extend(_decisions(result))
    )
    mine = _stream()[rank::2]
    for steps, i in enumerate(range(0, len(mine), BATCH // 2), 1):
        step(replica, mine[i : i + BATCH // 2], engine.process)
        keep_pace(replica, steps)
    finish(replica)
    replica.close()
    torch.save({"decisions": events}, Path(out) / f"rank{rank}.pt")


def test_two_replicas_decide_as_one_learner_on_the_whole_stream(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    settings = load_settings(None, model={"seed": SEED})
    alone = Engine(
        settings.model, settings.engine, settings.drift, settings.experts, settings.adapt
    )
    stream = _stream()
    decisions: list[str] = []
    for i in range(0, len(stream), BATCH):
        decisions += _decisions(alone.process(stream[i : i + BATCH]))
    assert decisions == ["spawn"]

    ranks = run_pair(_replica, (free_port(),), tmp_path)
    assert ranks[0]["decisions"] == decisions  # rank 0 reports the group's decisions
    assert ranks[1]["decisions"] == []
