"""Two engines as replicas that decide together (sync.decisions: group; 2 processes, loopback
gloo, no broker): a concept change on a stream split between them is detected once for the
group, every replica makes the same pool decision, and after the last round both hold the
same pool, weights and detectors. Rank 0 alone reports the group's events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from streamlearn.app.embedded import free_port
from streamlearn.core.engine import StepResult
from streamlearn.core.types import Sample
from streamlearn.settings import load_settings
from streamlearn.sync.average import floating
from streamlearn.sync.lockstep import finish
from tests.support.replicas import engine_replica, run_pair, step

pytestmark = pytest.mark.timeout(120)

PER_CONCEPT, BATCH = 800, 16  # samples of each concept in the stream; per replica's step


def _stream() -> list[Sample]:
    """x ~ N(0, 1) in 2 features; y = x0 > 0, then the labels flip: a new concept."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2 * PER_CONCEPT, 2, generator=gen)
    y = (x[:, 0] > 0).long()
    y[PER_CONCEPT:] = 1 - y[PER_CONCEPT:]
    return [Sample(r.tolist(), int(c)) for r, c in zip(x, y, strict=True)]


def _replica(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    settings = load_settings(
        None,
        model={"hidden": [8], "seed": 1},
        checkpoint={"enabled": False},
        drift={"warmup": 100, "refractory": 100, "false_alarms_per_100k": 1000},
        experts={"decision_window": 64},
        sync={
            "enabled": True,
            # A round after every step keeps the replicas in step, as the partitions of a
            # live stream are: a window never mixes one's old concept with the other's new.
            "every_steps": 1,
            "master_addr": "127.0.0.1",
            "master_port": port,
            "rank": rank,
            "world_size": 2,
            "timeout_s": 60,
        },
    )
    reported: list[StepResult] = []
    engine, replica = engine_replica(settings, BATCH, reported.append)
    mine = _stream()[rank::2]
    for start in range(0, len(mine), BATCH):
        step(replica, mine[start : start + BATCH], engine.process)
    finish(replica)
    assert engine.pool is not None and engine.drift is not None
    torch.save(
        {
            "events": [(e.kind, e.expert) for r in reported for e in r.pool_events],
            "drifts": sum(e.kind == "drift" for r in reported for e in r.drift_events),
            "history": [
                (e.kind, e.sample) for r in reported for e in r.drift_events if e.kind == "drift"
            ]
            + [(e.kind, e.sample) for r in reported for e in r.pool_events],
            "members": list(engine.pool.members),
            "active": engine.pool.active_id,
            "weights": floating(engine.state_dict()["pool"]["members"]),
            "detectors": engine.drift.state_dict(),
        },
        Path(out) / f"rank{rank}.pt",
    )
    replica.close()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return run_pair(_replica, (free_port(),), tmp_path_factory.mktemp("decisions"))


def test_the_group_detects_the_change_and_spawns_once_everywhere(
    ranks: list[dict[str, Any]],
) -> None:
    zero, one = ranks
    assert zero["drifts"] >= 1 and ("spawn", "1") in zero["events"], zero["history"]
    assert one["events"] == [] and one["drifts"] == 0  # the group's events: rank 0 reports
    assert zero["members"] == one["members"] and "1" in zero["members"]
    assert zero["active"] == one["active"] == "1"  # the flipped labels' expert serves


def test_after_the_last_round_both_hold_one_pool_and_one_set_of_detectors(
    ranks: list[dict[str, Any]],
) -> None:
    zero, one = ranks
    assert zero["weights"].keys() == one["weights"].keys() and zero["weights"]
    for path, tensor in zero["weights"].items():
        assert torch.equal(tensor, one["weights"][path]), path
    # Every replica's detectors saw the group's losses, in the same order.
    assert zero["detectors"] == one["detectors"] and zero["detectors"]["experts"]
