"""Turning sync on keeps the model: where no replica holds a sync checkpoint, the lowest rank
holding a single process's checkpoint seeds the group with its newest (docs/scaling.md,
"Coordinated checkpoints"). Two replicas, each its own process on loopback gloo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from streamlearn.app.embedded import free_port
from streamlearn.daemon import Daemon
from streamlearn.metrics import Metrics
from streamlearn.settings import load_settings
from streamlearn.sinks import MemorySink
from streamlearn.sync.average import floating
from tests.support.replicas import run_pair
from tests.unit.test_sync_daemon import N, Source, _daemon, _records


def _single_process(directory: Path) -> dict[str, Any]:
    """A daemon without sync learns partition 0 and checkpoints: what the group should take."""
    source = Source("in", [_records(0), []])
    settings = load_settings(
        None,
        model={"hidden": [8], "seed": 3},
        experts={"enabled": False},
        checkpoint={"dir": str(directory), "every_samples": 10**9, "every_seconds": 3600},
    )
    daemon = Daemon(
        settings, lambda listener: source._bind(listener), lambda m: MemorySink(), Metrics()
    )
    assert daemon.start()
    while not (source.exhausted() and len(daemon.buffer) == 0):
        daemon.step()
    assert daemon.checkpoint("test")
    return {
        "weights": floating(daemon.engine.state_dict()["pool"]),
        "lineage": daemon.checkpointer.lineage,
    }


def _replica(rank: int, port: int, out: str) -> None:
    daemon, _ = _daemon(rank, port, Path(out) / f"rank{rank}")
    daemon.restore()
    assert daemon.replica is not None
    seen = {
        "round": daemon.replica.round,
        "learned": daemon.engine.samples_learned,
        "known": {f"{tp.topic}/{tp.partition}": o for tp, o in daemon.known.items()},
        "lineage": daemon.checkpointer.lineage,
        "weights": floating(daemon.engine.state_dict()["pool"]),
    }
    daemon.replica.close()
    torch.save(seen, Path(out) / f"rank{rank}.pt")


@pytest.mark.parametrize("seeder", [0, 1])
def test_a_group_starts_from_a_single_process_checkpoint(tmp_path: Path, seeder: int) -> None:
    before = _single_process(tmp_path / f"rank{seeder}")
    ranks = run_pair(_replica, (free_port(),), tmp_path)
    for seen in ranks:
        assert seen["round"] == 0  # no sync id yet: the first round's checkpoint is id 1
        assert seen["learned"] == N
        assert seen["known"] == {"in/0": N}  # partition 0 goes on where the process stopped
        assert seen["lineage"] == before["lineage"]
        assert seen["weights"].keys() == before["weights"].keys()
        for path, tensor in before["weights"].items():
            assert torch.equal(seen["weights"][path], tensor), path
