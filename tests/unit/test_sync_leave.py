"""A replica that stops leaves through a last round (docs/scaling.md, "Membership changes"):
its shutdown asks the group for one more round instead of a checkpoint of its own, every
replica saves in it, and the generation ends with it. Two daemons as replicas (2 processes,
loopback gloo, in-memory sources): rank 1 stops once both learned their partitions; rank 0
is in its learning loop and leaves the generation after that round, and both files of its
id hold everything either learned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from structlog.testing import capture_logs

from streamlearn.app.embedded import free_port
from streamlearn.checkpoint import FileCheckpointStore
from streamlearn.checkpoint.store import load_file
from streamlearn.sync.group import GroupLostError
from tests.support.replicas import run_pair
from tests.unit.test_sync_daemon import N, _daemon, drain_and_meet


def _replica(rank: int, port: int, out: str) -> None:
    directory = Path(out) / f"rank{rank}"
    daemon, source = _daemon(rank, port, directory)
    result: dict[str, Any] = {}
    with capture_logs() as logs:
        if rank == 1:  # it stops: its shutdown's checkpoint is the group's last round
            drain_and_meet(daemon, source, rank)
            assert daemon.replica is not None
            result["left_saved"] = daemon.replica.leave()
        else:  # it learns on, and leaves the generation after the round rank 1 asked for
            # (which may come while it still waits to meet: rank 1 drained and met first)
            try:
                drain_and_meet(daemon, source, rank)
                while True:
                    daemon.step()
            except GroupLostError as exc:
                result["lost"] = str(exc)
    assert daemon.replica is not None
    ended = [e for e in logs if e["event"] == "sync_generation_ended"]
    result |= {"ended": [(e["round"], e["saved"]) for e in ended], "round": daemon.replica.round}
    result["live"] = daemon.replica.live
    daemon.replica.close()
    torch.save(result, Path(out) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def left(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("leave")
    return out, run_pair(_replica, (free_port(),), out)


def test_a_stopping_replica_and_its_peer_both_save_the_last_round(
    left: tuple[Path, list[dict[str, Any]]],
) -> None:
    out, ranks = left
    last = ranks[0]["round"]
    assert ranks[1]["left_saved"] is True
    assert [r["ended"] for r in ranks] == [[(last, True)], [(last, True)]]
    assert ranks[1]["round"] == last
    for rank in (0, 1):
        newest = load_file(FileCheckpointStore(out / f"rank{rank}").files()[-1])
        assert newest["sync"]["round"] == last
        # Everything either replica learned is in it: nothing is learned again.
        assert sorted(newest["offsets"]) == [["in", 0, N], ["in", 1, N]]


def test_the_peer_leaves_the_generation_after_the_last_round(
    left: tuple[Path, list[dict[str, Any]]],
) -> None:
    _, ranks = left
    assert "ended this generation of the group" in ranks[0]["lost"]
    assert [r["live"] for r in ranks] == [False, False]
