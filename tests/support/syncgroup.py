"""Two replicas of ``streamlearn run`` learning the counting expert of
:mod:`tests.support.seqcounts` as one group, and what their coordinated checkpoints hold:
the reliability tests of issue 18 (a kill, a stall) share them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from streamlearn.app.embedded import free_port
from streamlearn.checkpoint.state import CheckpointState
from streamlearn.checkpoint.store import FileCheckpointStore, load_file
from tests.support.seqcounts import applied
from tests.support.seqproducer import SequenceProducer
from tests.support.waiting import wait_for

MODEL = {
    "task": "regression",
    "standardize": False,
    "n_features": 2,
    "factory": "tests.support.seqcounts:build",
}


# The kill tests' group (test_sync_kill, test_sync_short): rounds and checkpoints often, so
# a kill lands between coordinated checkpoints, and a dead peer is seen within seconds.
KILL_SETTINGS: dict[str, Any] = {
    "sync": {
        "enabled": True,
        "every_steps": 20,
        "every_seconds": 0.5,
        "checkpoint_every_rounds": 5,
        # The survivor of a dead peer gives up on a collective after this long (gloo
        # usually sees the closed socket at once) and rejoins.
        "timeout_s": 20,
        # A dead peer with idle partitions is seen by its heartbeat standing still.
        "peer_timeout_s": 5,
    },
    # A round also falls due with a checkpoint: the stream's end reaches one.
    "checkpoint": {"every_samples": 400, "every_seconds": 1.0},
}

R = TypeVar("R")


class HasCheckpoints(Protocol):
    checkpoint_dir: Path


class Replicating(HasCheckpoints, Protocol):
    """A replica process a test starts and reads metrics of (the reliability suite's)."""

    def start(self) -> Any: ...
    def metric(self, name: str) -> float | None: ...


def pair(
    make: Callable[..., R],
    topics: dict[str, str],
    settings: dict[str, Any],
    keys: int,
    seq_max: int,
    log: Path,
    env: Callable[[int], dict[str, str]] = lambda rank: {},
) -> list[R]:
    """Ranks 0 and 1 of one group (``make``: the reliability suite's ``reliable_daemon``),
    meeting at a free port, the counting expert sized ``keys`` x ``seq_max`` and logging
    its updates to ``log``; ``env(rank)`` adds to a rank's environment."""
    port, group = free_port(), f"g-sync-{free_port()}"
    return [
        make(
            topics,
            group=group,
            model=MODEL,
            # With serving on, `streamlearn run` supervises its learner process: the
            # supervisor starts a learner that left its group again.
            serve={"workers": 1},
            env={
                "RANK": str(rank),
                "WORLD_SIZE": "2",
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "SEQ_KEYS": str(keys),
                "SEQ_MAX": str(seq_max),
                "SEQ_LOG": str(log),
                **env(rank),
            },
            settings=settings,
        )
        for rank in range(2)
    ]


def learning_mid_stream(
    replicas: Sequence[Replicating], producer: SequenceProducer, records: int, seconds: float
) -> None:
    """Start the replicas together (each waits at the rendezvous for the other), stream
    ``records`` over about ``seconds``, and return once both learn with coordinated
    checkpoints and the stream still runs."""
    with ThreadPoolExecutor(len(replicas)) as pool:
        list(pool.map(lambda replica: replica.start(), replicas))
    producer.start(records, per_second=records / seconds)
    wait_for(
        lambda: (
            min(r.metric("streamlearn_samples_learned_total") or 0 for r in replicas) >= 200
            and min(len(held(r.checkpoint_dir)) for r in replicas) >= 2
        ),
        60,
        "both replicas learning, with checkpoints, mid-stream",
    )
    assert producer.running, "the stream ended before the kill"


def held(checkpoint_dir: Path) -> dict[int, Path]:
    """Checkpoint id (sync round) -> file, of the valid coordinated checkpoints."""
    found = {}
    for path in FileCheckpointStore(checkpoint_dir).files():
        try:
            found[int(load_file(path)["sync"]["round"])] = path
        except Exception:  # a file cut short by a kill is not a checkpoint
            continue
    return found


def _newest(replica: HasCheckpoints) -> tuple[int, dict[str, Any], dict[str, int]] | None:
    """(id, state, next offset by ``topic/partition``) of the newest checkpoint."""
    ids = held(replica.checkpoint_dir)
    if not ids:
        return None
    state = load_file(ids[max(ids)])
    offsets = CheckpointState.from_dict(state).offsets
    return max(ids), state, {f"{tp.topic}/{tp.partition}": o for tp, o in offsets.items()}


def checkpoint_offsets(replica: HasCheckpoints) -> dict[str, int]:
    """The newest checkpoint's next offset by ``topic/partition`` ({}: no checkpoint)."""
    newest = _newest(replica)
    return newest[2] if newest is not None else {}


def restore_point(replicas: Sequence[HasCheckpoints]) -> tuple[int, int]:
    """The id a group of ``replicas`` restores (the newest any holds, 0: none) and how many
    records its file covers (the sum of its next offsets)."""
    newest, offsets = restore_offsets(replicas)
    return newest, sum(offsets.values())


def restore_offsets(replicas: Sequence[HasCheckpoints]) -> tuple[int, dict[int, int]]:
    """The id a group of ``replicas`` restores (0: none) and its next offset by partition
    (of the one input topic)."""
    files = {i: p for r in replicas for i, p in held(r.checkpoint_dir).items()}
    if not files:
        return 0, {}
    newest = max(files)
    offsets = CheckpointState.from_dict(load_file(files[newest])).offsets
    return newest, {tp.partition: o for tp, o in offsets.items()}


def _sent(producer: SequenceProducer) -> dict[str, int]:
    return {f"{producer.topic}/{p}": n for p, n in producer.sent_to().items()}


def final(replica: HasCheckpoints, producer: SequenceProducer) -> dict[str, Any] | None:
    """The newest checkpoint's state if it holds every record sent, else None."""
    newest = _newest(replica)
    return newest[1] if newest is not None and newest[2] == _sent(producer) else None


def _progress(replicas: Sequence[HasCheckpoints], producer: SequenceProducer) -> str:
    """Each replica's newest checkpoint id and offsets against what was sent."""
    rows = []
    for rank, replica in enumerate(replicas):
        newest = _newest(replica)
        rows.append(f"rank {rank}: " + (f"id {newest[0]} at {newest[2]}" if newest else "none"))
    return f"sent {_sent(producer)}; " + "; ".join(rows)


def wait_for_final(
    replicas: Sequence[HasCheckpoints], producer: SequenceProducer, timeout: float = 60
) -> list[dict[str, Any]]:
    """Every replica's checkpoint that holds every record sent (the wait names where each
    stands if it times out)."""
    try:
        wait_for(
            lambda: all(final(r, producer) is not None for r in replicas),
            timeout,
            "a checkpoint of every replica that holds every record",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; {_progress(replicas, producer)}") from None
    states = [final(r, producer) for r in replicas]
    found = [s for s in states if s is not None]
    assert len(found) == len(replicas), _progress(replicas, producer)  # none moved back
    return found


def assert_exactly_once(states: Sequence[dict[str, Any]], producer: SequenceProducer) -> None:
    """The replicas hold one model, and in it every record sent was learned exactly once:
    ``applied * 2 == 1`` on every record sent (one update of two replicas' average), 0
    elsewhere."""
    assert_learned_once(states, producer, lambda key, seq: 0.5)


def assert_learned_once(
    states: Sequence[dict[str, Any]],
    producer: SequenceProducer,
    weight: Callable[[int, int], float],
) -> None:
    """The replicas hold one model, and in it each record sent was learned exactly once,
    by a generation of the group whose average gives its update ``weight(key, seq)`` (1/N
    of a group of N), and nothing else was learned."""
    counts = [applied(s) for s in states]
    assert all(torch.equal(counts[0], c) for c in counts[1:]), "the replicas' models differ"
    expected = torch.zeros_like(counts[0])
    for key, last in producer.expected().items():
        for seq in range(1, last + 1):
            expected[key, seq] = weight(key, seq)
    wrong = (counts[0] != expected).nonzero().tolist()
    assert not wrong, [(k, s, float(counts[0][k, s]), float(expected[k, s])) for k, s in wrong[:20]]
