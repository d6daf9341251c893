"""The synchronizer's collectives and FedAvg-momentum math, on 2 real processes (loopback gloo)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from streamlearn.app.embedded import free_port
from streamlearn.core.errors import SettingsError
from streamlearn.sync.average import Averager, floating, replaced
from streamlearn.sync.group import Group, rendezvous
from streamlearn.sync.settings import SyncSettings
from tests.support.replicas import run_pair


def _state(rank: int, value: float) -> dict[str, Any]:
    """An engine-shaped state: expert "0" everywhere, expert "1" on rank 1 only, a replay
    buffer (never averaged) and a scaler."""
    members: dict[str, Any] = {
        "0": {
            "expert": {
                "module": {"w": torch.full((2, 2), value), "b": torch.tensor([value, -value])},
                "optimizer": {"state": {0: {"exp_avg": torch.full((2,), value * 10)}}},
            },
            "replay": {"x": torch.full((3,), float(rank))},
        }
    }
    if rank == 1:
        members["1"] = {"expert": {"module": {"w": torch.ones(1)}}}
    return {
        "pool": {"members": members, "active": str(rank)},
        "scaler": {"count": 5, "mean": torch.tensor([float(rank)]), "m2": torch.tensor([2.0])},
    }


def _replica(rank: int, port: int, out: str) -> None:
    settings = SyncSettings(
        enabled=True,
        master_addr="127.0.0.1",
        master_port=port,
        rank=rank,
        world_size=2,
        timeout_s=60,
    )
    group = Group(settings, torch.device("cpu"))
    try:
        results: dict[str, list[Any]] = {}
        stats: list[list[float]] = []
        for momentum in (0.0, 0.5):
            averager = Averager(momentum)
            rounds = results[str(momentum)] = []
            # Round 1: values 1 (rank 0) and 3 (rank 1); round 2: 5 and 9.
            for values in ((1.0, 3.0), (5.0, 9.0)):
                local = _state(rank, values[rank])
                template = group.broadcast_state(local if rank == 0 else None, src=0)
                rounds.append(averager.average(template, local, group.all_reduce_sum))
                stats.append([averager.divergence, float(averager.dropped)])
        gathered = group.all_gather_json({"rank": rank, "offsets": [["t", rank, 10 * rank]]})
        torch.save(
            {"results": results, "gathered": gathered, "stats": stats}, Path(out) / f"rank{rank}.pt"
        )
    finally:
        group.close()


def _assert_same(one: Any, other: Any) -> None:
    assert floating(one).keys() == floating(other).keys()
    for path, tensor in floating(one).items():
        assert torch.equal(floating(other)[path], tensor), path


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Two replicas, spawned once: each round's result on each rank."""
    return run_pair(_replica, (free_port(),), tmp_path_factory.mktemp("sync"))


def test_plain_average_is_the_mean_and_the_rest_is_the_template(
    pair: list[dict[str, Any]],
) -> None:
    first = pair[0]["results"]["0.0"][0]
    _assert_same(first, pair[1]["results"]["0.0"][0])  # identical on both replicas
    expert = first["pool"]["members"]["0"]["expert"]
    assert torch.equal(expert["module"]["w"], torch.full((2, 2), 2.0))
    assert torch.equal(expert["module"]["b"], torch.tensor([2.0, -2.0]))
    assert torch.equal(expert["optimizer"]["state"][0]["exp_avg"], torch.full((2,), 20.0))
    assert torch.equal(first["scaler"]["mean"], torch.tensor([0.5]))
    # Not averaged: the replay buffer and everything else come from the template (rank 0).
    assert torch.equal(first["pool"]["members"]["0"]["replay"]["x"], torch.zeros(3))
    assert first["pool"]["active"] == "0"
    assert "1" not in first["pool"]["members"]  # rank 0 (the decider) never spawned it
    # Round 2 is the plain mean again: (5 + 9) / 2.
    second = pair[1]["results"]["0.0"][1]
    assert torch.equal(
        second["pool"]["members"]["0"]["expert"]["module"]["w"], torch.full((2, 2), 7.0)
    )


def test_divergence_and_dropped_tensors_are_reported(pair: list[dict[str, Any]]) -> None:
    # Round 1: rank 0's w=1, b=(1,-1) vs the mean w=2, b=(2,-2): every element 1 off -> RMS 1;
    # rank 1 (w=3) likewise. Rank 1's expert "1" is not in rank 0's pool: 1 tensor dropped.
    assert pair[0]["stats"][0] == [1.0, 0.0]
    assert pair[1]["stats"][0] == [1.0, 1.0]
    # Round 2: 5 and 9 around 7 -> RMS 2.
    assert pair[0]["stats"][1] == [2.0, 0.0]


def test_server_momentum_steps_from_the_last_global_weights(pair: list[dict[str, Any]]) -> None:
    rounds = pair[0]["results"]["0.5"]
    for mine, theirs in zip(rounds, pair[1]["results"]["0.5"], strict=True):
        _assert_same(mine, theirs)
    w = [r["pool"]["members"]["0"]["expert"]["module"]["w"] for r in rounds]
    # Round 1: no global weights yet -> the mean, 2; v = 0.
    assert torch.equal(w[0], torch.full((2, 2), 2.0))
    # Round 2: mean 7, delta = 2 - 7 = -5, v = 0.5 * 0 - 5 = -5, g = 2 + 5 = 7.
    assert torch.equal(w[1], torch.full((2, 2), 7.0))
    # Optimizer state takes no momentum step: (50 + 90) / 2.
    exp_avg = rounds[1]["pool"]["members"]["0"]["expert"]["optimizer"]["state"][0]
    assert torch.equal(exp_avg["exp_avg"], torch.full((2,), 70.0))


def test_momentum_accumulates_velocity_over_rounds() -> None:
    averager = Averager(0.5)
    template = {"pool": {"members": {"0": {"expert": {"module": {"w": torch.zeros(1)}}}}}}

    def sync(mean: float) -> float:
        state = replaced(template, {"pool/members/0/expert/module/w": torch.tensor([mean])})
        out = averager.average(state, state, lambda t: t.clone())  # one replica: sum == own
        return float(out["pool"]["members"]["0"]["expert"]["module"]["w"][0])

    assert sync(1.0) == 1.0  # first round: the mean
    # mean 2: v = 0.5*0 + (1-2) = -1, g = 1 + 1 = 2
    assert sync(2.0) == 2.0
    # mean 2 again: v = 0.5*-1 + (2-2) = -0.5, g = 2 + 0.5 = 2.5 (momentum carries on)
    assert sync(2.0) == 2.5
    # mean 2.5: v = 0.5*-0.5 + (2.5-2.5) = -0.25, g = 2.75
    assert sync(2.5) == 2.75


def test_all_gather_json_returns_every_rank(pair: list[dict[str, Any]]) -> None:
    expected = [{"rank": r, "offsets": [["t", r, 10 * r]]} for r in range(2)]
    assert pair[0]["gathered"] == expected == pair[1]["gathered"]


def test_rendezvous_reads_torchrun_env_unless_set() -> None:
    env = {"MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500", "RANK": "1", "WORLD_SIZE": "3"}
    assert rendezvous(SyncSettings(enabled=True), env) == ("10.0.0.1", 29500, 1, 3)
    assert rendezvous(SyncSettings(rank=2), env) == ("10.0.0.1", 29500, 2, 3)
    with pytest.raises(SettingsError):
        rendezvous(SyncSettings(), {})
    with pytest.raises(SettingsError):
        rendezvous(SyncSettings(rank=3), env)


def test_server_learning_rate_scales_the_averaged_update() -> None:
    averager = Averager(0.0, server_lr=2.0)
    template = {"pool": {"members": {"0": {"expert": {"module": {"w": torch.zeros(1)}}}}}}

    def sync(mean: float) -> float:
        state = replaced(template, {"pool/members/0/expert/module/w": torch.tensor([mean])})
        out = averager.average(state, state, lambda t: t.clone())
        return float(out["pool"]["members"]["0"]["expert"]["module"]["w"][0])

    assert sync(1.0) == 1.0  # first round: the mean
    # mean 2 from g 1: the replicas moved +1 on average; two replicas' updates added: g = 3
    assert sync(2.0) == 3.0
    # mean 3.5 from g 3: +0.5 each, added: g = 4
    assert sync(3.5) == 4.0
