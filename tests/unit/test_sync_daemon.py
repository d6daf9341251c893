"""Two daemons as replicas (2 processes, loopback gloo, in-memory sources): sync rounds make
their models identical, checkpoints are coordinated, a restart restores the newest id any
replica holds, a group planned for 3 forms with the 2 that came, and a group scaled down to
one replica goes on from it."""

from __future__ import annotations

import json
import shutil
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
import torch
from structlog.testing import capture_logs
from torch.distributed.distributed_c10d import Store

from streamlearn.app.embedded import free_port
from streamlearn.checkpoint import FileCheckpointStore
from streamlearn.checkpoint.store import load_file
from streamlearn.core.experts.expert import NeuralExpert
from streamlearn.daemon import Daemon
from streamlearn.metrics import Metrics
from streamlearn.settings import load_settings
from streamlearn.sinks import MemorySink
from streamlearn.sources import MemorySource
from streamlearn.sources.base import AssignmentListener
from streamlearn.sync.average import floating
from streamlearn.sync.replica import replica_settings
from tests.support.replicas import run_pair

N = 150  # records per replica's partition
MORE = 10  # records per partition sent after the group scaled down


class Source(MemorySource):
    def _bind(self, listener: AssignmentListener) -> Source:
        self._listener = listener
        return self


def _records(rank: int, n: int = N) -> list[bytes]:
    """Each replica's partition: the same concept, different samples."""
    gen = torch.Generator().manual_seed(rank)
    x = torch.randn(n, 3, generator=gen)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return [json.dumps({"x": r.tolist(), "y": int(c)}).encode() for r, c in zip(x, y, strict=True)]


def _daemon(
    rank: int,
    port: int,
    directory: Path,
    world_size: int = 2,
    partitions: list[list[bytes]] | None = None,
    sync: dict[str, Any] | None = None,
) -> tuple[Daemon, Source]:
    if partitions is None:
        partitions = [_records(0), []] if rank == 0 else [[], _records(1)]
    source = Source("in", partitions)
    settings = load_settings(
        None,
        model={"hidden": [8], "seed": 3},
        experts={"enabled": False},
        checkpoint={"dir": str(directory), "every_samples": 10**9, "every_seconds": 3600},
        sync={
            "enabled": True,
            "every_steps": 2,
            "checkpoint_every_rounds": 1,
            "master_addr": "127.0.0.1",
            "master_port": port,
            "rank": rank,
            "world_size": world_size,
            "timeout_s": 60,
            **(sync or {}),
        },
    )
    sink = MemorySink()
    daemon = Daemon(
        settings, lambda listener: source._bind(listener), lambda m: sink, metrics=Metrics()
    )
    return daemon, source


def drain_and_meet(daemon: Daemon, source: Source, rank: int) -> Store:
    """Start, learn the whole partition (taking the rounds asked for), and step on until
    both replicas drained: a round the other asks for meanwhile finds this one in it."""
    assert daemon.start()
    while not (source.exhausted() and len(daemon.buffer) == 0):
        daemon.step()
    assert daemon.replica is not None and daemon.replica.group is not None
    store = daemon.replica.group.store
    store.set(f"drained/{rank}", "1")
    while not store.check(["drained/0", "drained/1"]):
        daemon.step()
    return store


def _run(daemon: Daemon, source: Source, rank: int) -> None:
    """Learn the whole partition (taking the rounds asked for), then three more rounds asked
    for through the store as the daemon does (never a collective one replica would not
    enter): at least three checkpoint ids, every round checkpointing here."""
    store = drain_and_meet(daemon, source, rank)
    assert daemon.replica is not None
    if rank == 0:
        while True:  # another replica's request may move the count meanwhile: retry
            now = store.get("sync/requested").decode()
            final = str(int(now) + 3)
            if store.compare_set("sync/requested", now, final).decode() == final:
                break
        store.set("final", final)
    while not store.check(["final"]) or daemon.replica.round < int(store.get("final")):
        daemon.step()


def _replica(rank: int, ports: list[int], out: str) -> None:
    directory = Path(out) / f"rank{rank}"
    daemon, source = _daemon(rank, ports[0], directory)
    _run(daemon, source, rank)
    assert daemon.replica is not None
    first = {
        "round": daemon.replica.round,
        "learned": daemon.engine.samples_learned,
        "weights": floating(daemon.engine.state_dict()["pool"]),
        "committed": {
            f"{tp.topic}/{tp.partition}": o for tp, o in source.committed_offsets.items()
        },
    }
    daemon.replica.close()
    # The newest checkpoint id goes missing on rank 1 (its disk lost the last write).
    held = FileCheckpointStore(directory).files()
    if rank == 1:
        held[-1].unlink()
    restarted, _ = _daemon(rank, ports[1], directory)
    with capture_logs() as logs:
        restarted.restore()
    assert restarted.replica is not None
    second = _restored(restarted, logs)
    restarted.replica.close()
    # Planned as a group of 3, the third never comes: after form_wait_s the two form it.
    short, _ = _daemon(
        rank, ports[3], directory, world_size=3, sync={"min_replicas": 2, "form_wait_s": 1.0}
    )
    with capture_logs() as logs:
        short.restore()
    assert short.replica is not None and short.replica.group is not None
    shorted = _restored(short, logs) | {
        "rank": short.replica.group.rank,
        "size": short.replica.group.world_size,
        "batch": (short.settings.engine.max_batch, short.buffer.max_batch),
    }
    short.replica.close()
    scaled: dict[str, Any] = {}
    if rank == 0:  # the group scaled down to one replica (WORLD_SIZE 1), both partitions its
        both = [_records(r, N + MORE) for r in (0, 1)]
        kept = shutil.copytree(directory, Path(out) / "scaled")  # the pair's files stay
        alone, source = _daemon(rank, ports[2], kept, world_size=1, partitions=both)
        with capture_logs() as logs:
            assert alone.start()
        scaled = _restored(alone, logs)
        restored_count = alone.engine.samples_learned
        while not (source.exhausted() and len(alone.buffer) == 0):
            alone.step()
        scaled["learned_after"] = alone.engine.samples_learned - restored_count
        assert alone.replica is not None
        alone.replica.close()
    torch.save(
        {"first": first, "second": second, "short": shorted, "scaled": scaled},
        Path(out) / f"rank{rank}.pt",
    )


def _restored(daemon: Daemon, logs: list[MutableMapping[str, Any]]) -> dict[str, Any]:
    assert daemon.replica is not None
    restored = next(e for e in logs if e["event"] == "sync_restored")
    expert = daemon.engine.pool.active_expert if daemon.engine.pool else None
    assert isinstance(expert, NeuralExpert)
    return {
        "lr": [g["lr"] for g in expert.optimizer.param_groups],
        "id": restored["checkpoint_id"],
        "round": daemon.replica.round,
        "known": {f"{tp.topic}/{tp.partition}": o for tp, o in daemon.known.items()},
        "weights": {k: v.clone() for k, v in floating(daemon.engine.state_dict()["pool"]).items()},
    }


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("replicas")
    return out, run_pair(_replica, ([free_port() for _ in range(4)],), out)


def _assert_same(one: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> None:
    assert one.keys() == other.keys() and one
    for path, tensor in one.items():
        assert torch.equal(tensor, other[path]), path


def test_replicas_hold_one_model_after_a_sync(replicas: tuple[Path, list[dict[str, Any]]]) -> None:
    _, ranks = replicas
    first = [r["first"] for r in ranks]
    assert first[0]["round"] == first[1]["round"] >= 3
    assert [f["learned"] for f in first] == [N, N]  # each learned its own partition, once
    _assert_same(first[0]["weights"], first[1]["weights"])


def test_every_replica_checkpoints_each_round_with_the_groups_offsets(
    replicas: tuple[Path, list[dict[str, Any]]],
) -> None:
    out, ranks = replicas
    last = ranks[0]["first"]["round"]
    newest = load_file(FileCheckpointStore(out / "rank0").files()[-1])
    assert newest["sync"]["round"] == last
    # Rank 0 read only partition 0, yet its checkpoint holds where the group stopped on both.
    assert sorted(newest["offsets"]) == [["in", 0, N], ["in", 1, N]]
    ids = [load_file(p)["sync"]["round"] for p in FileCheckpointStore(out / "rank1").files()]
    assert ids == [last - 2, last - 1]  # keep 3, the newest deleted by the test
    # Once both saved the last id, each committed it for the partitions it reads.
    assert [r["first"]["committed"] for r in ranks] == [{"in/0": N}, {"in/1": N}]


def test_restart_restores_the_newest_id_any_replica_holds(
    replicas: tuple[Path, list[dict[str, Any]]],
) -> None:
    out, ranks = replicas
    last = ranks[0]["first"]["round"]
    second = [r["second"] for r in ranks]
    # Rank 1 lost its file of id last; rank 0's is the group's whole state at that round:
    # both load it and number their rounds on from it (the next round is last + 1).
    assert [s["id"] for s in second] == [last, last]
    assert second[0]["round"] == second[1]["round"] == last
    _assert_same(second[0]["weights"], second[1]["weights"])
    restored = floating(load_file(_file_of(out / "rank0", last))["engine"]["pool"])
    _assert_same(second[1]["weights"], restored)
    # Every partition goes on where the group stopped, the one rank 1 read included.
    assert second[0]["known"] == second[1]["known"] == {"in/0": N, "in/1": N}
    # The restored expert steps at the replica's rate, sqrt(2) times the configured one:
    # the checkpoint's saved rate (already scaled) is not scaled again.
    configured = load_settings(None).model.learning_rate
    for rank in second:
        assert rank["lr"] == [pytest.approx(configured * 2**0.5, rel=1e-12)]


def test_a_group_short_of_a_replica_forms_without_it_and_steps_as_a_group_of_its_size(
    replicas: tuple[Path, list[dict[str, Any]]],
) -> None:
    """world_size 3, min_replicas 2, the third never joins: after sync.form_wait_s the two
    form a generation of 2 (ranks 0 and 1), restore the group's newest id, and learn in
    halves of the batch at sqrt(2) times the rate, as a group of 2 planned so would."""
    _, ranks = replicas
    last = ranks[0]["first"]["round"]
    short = [r["short"] for r in ranks]
    assert [(s["rank"], s["size"]) for s in short] == [(0, 2), (1, 2)]
    assert [s["id"] for s in short] == [last, last]
    _assert_same(short[0]["weights"], ranks[0]["second"]["weights"])
    configured = load_settings(None).model.learning_rate
    halves = load_settings(None).engine.max_batch // 2  # not thirds
    assert halves != load_settings(None).engine.max_batch // 3
    for rank in short:
        assert rank["batch"] == (halves, halves)
        assert rank["lr"] == [pytest.approx(configured * 2**0.5, rel=1e-12)]


def test_a_group_scaled_down_goes_on_from_its_newest_id(
    replicas: tuple[Path, list[dict[str, Any]]],
) -> None:
    """WORLD_SIZE 2 -> 1 (a StatefulSet scaled down): the replica left restores the group's
    model and the offsets of the partitions the other replica read, so Kafka's reassignment
    goes on where the group stopped, learning nothing twice."""
    _, ranks = replicas
    last = ranks[0]["first"]["round"]
    scaled = ranks[0]["scaled"]
    assert scaled["id"] == scaled["round"] == last
    _assert_same(scaled["weights"], ranks[0]["first"]["weights"])
    assert scaled["known"] == {"in/0": N, "in/1": N}
    # Assigned both partitions, it learns only the records past where the group stopped.
    assert scaled["learned_after"] == 2 * MORE
    # It learns alone at the configured rate, not at the group of two's sqrt(2) times it.
    assert scaled["lr"] == [pytest.approx(load_settings(None).model.learning_rate, rel=1e-12)]


def _file_of(directory: Path, round_: int) -> Path:
    return next(
        p for p in FileCheckpointStore(directory).files() if load_file(p)["sync"]["round"] == round_
    )


@pytest.mark.parametrize(
    ("world", "split", "expected"),
    [(1, True, (32, 256)), (2, True, (16, 128)), (3, True, (10, 85)), (2, False, (32, 256))],
)
def test_a_replica_learns_in_its_share_of_the_batch_a_backlog_included(
    world: int, split: bool, expected: tuple[int, int]
) -> None:
    sync: dict[str, Any] = {"enabled": True, "rank": 0, "world_size": world}
    sync |= {"split_batch": split, "master_addr": "127.0.0.1", "master_port": 1}
    settings = load_settings(sync=sync, engine={"max_batch": 32})
    engine = replica_settings(settings).engine
    assert (engine.max_batch, engine.max_adaptive_batch) == expected


@pytest.mark.parametrize(
    ("world", "optimizer", "split", "scale", "expected"),
    [
        (1, "adam", True, True, 0.003),
        (2, "adam", True, True, 0.003 * 2**0.5),
        (3, "adam", True, True, 0.003 * 3**0.5),
        (2, "adam", True, False, 0.003),  # sync.scale_learning_rate: false
        (2, "adam", False, True, 0.003),  # a whole batch each: Adam's steps are one learner's
        (2, "sgd", True, True, 0.003),  # SGD follows the mean gradient at any batch
    ],
)
def test_with_adam_a_replica_learns_its_share_at_sqrt_n_times_the_rate(
    world: int, optimizer: str, split: bool, scale: bool, expected: float
) -> None:
    sync: dict[str, Any] = {"enabled": True, "rank": 0, "world_size": world}
    sync |= {"split_batch": split, "scale_learning_rate": scale}
    sync |= {"master_addr": "127.0.0.1", "master_port": 1}
    model = {"optimizer": optimizer, "learning_rate": 0.003}
    settings = load_settings(sync=sync, model=model)
    assert replica_settings(settings).model.learning_rate == pytest.approx(expected, rel=1e-12)
