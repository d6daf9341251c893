"""RELIABILITY.md F: two daemons in one group while members join, leave and crash, on each
``kafka.client`` (the rebalance callbacks and the seeks at assignment are the client's)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from streamlearn.app.embedded import EmbeddedBroker
from tests.reliability.checks import CommitWatch
from tests.reliability.conftest import SEQ_MODEL, ReliableDaemon, timestamp
from tests.support.seqlineage import covered, expert_state, read_log
from tests.support.seqproducer import SequenceProducer
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4
KEYS = 8  # two per partition
RECORDS = 12_000
PRODUCE_SECONDS = 30


def assignment(daemon: ReliableDaemon) -> set[str]:
    """The partitions the current process holds, from its log."""
    held: set[str] = set()
    for event in daemon.events():
        if event.get("event") == "partitions_assigned":
            held |= set(event["partitions"])
        elif event.get("event") in ("partitions_revoked", "partitions_lost"):
            held -= set(event["partitions"])
    return held


def split(*daemons: ReliableDaemon) -> bool:
    """Every partition held by exactly one of ``daemons``, each holding some."""
    held = [assignment(d) for d in daemons]
    return (
        all(held)
        and sum(len(h) for h in held) == PARTITIONS
        and len(set().union(*held)) == PARTITIONS
    )


def resumes(daemon: ReliableDaemon) -> list[tuple[float, dict[str, int]]]:
    """Each assignment of every start of ``daemon``: (when, where each partition with a
    known place resumed) from partitions_assigned's seek (this lineage's checkpoint) and
    partitions_resumed_from_group (the group's commit lay further on)."""
    out: list[tuple[float, dict[str, int]]] = []
    for start in range(1, daemon.starts + 1):
        for event in daemon.events(start):
            if event.get("event") == "partitions_assigned":
                out.append((timestamp(event), dict(event["seek"])))
            elif event.get("event") == "partitions_resumed_from_group" and out:
                out[-1][1].update(event["offsets"])
    return out


def revoke_checkpoints(daemon: ReliableDaemon, start: int) -> int:
    return sum(
        1
        for e in daemon.events(start)
        if e.get("event") == "checkpoint_saved" and e.get("reason") == "revoke"
    )


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
def test_members_join_leave_and_crash_without_losing_or_relearning(
    broker: EmbeddedBroker,
    seq_topics: Callable[[int], dict[str, str]],
    reliable_daemon: Callable[..., ReliableDaemon],
    tmp_path: Path,
    client: str,
) -> None:
    """A starts; B joins; A stops (SIGTERM); A comes back; B is killed (SIGKILL); B comes
    back; then both run to the end, all while records arrive.

    Each daemon's model is its own lineage. Along it no record is applied twice (its
    checkpointed state has no update whose seq did not advance its key); its state may
    have gaps where the other member learned. Together they lose nothing: the union of
    their states covers every record. A partition that changes hands cleanly (revoke:
    checkpoint and commit first) is resumed where its last owner stopped, so the two
    A member that gets a partition resumes at the newer of its own checkpoint's offset and
    the group's committed one: never below a commit the broker held before the assignment
    (read every 0.2 s by the test), so it never re-reads what another member learned and
    committed. What a member learned after its last commit is learned again by the next
    owner (a revoke checkpoint is not committed: the partition is no longer its own; a
    killed member's is lost with it), so the two lineages may share such records: counted.
    """
    topics = seq_topics(PARTITIONS)
    group = "g-rebalance-" + topics["input"]
    producer = SequenceProducer(broker.bootstrap, topics["input"], keys=KEYS, partitions=PARTITIONS)
    logs = {name: tmp_path / f"applied-{name}.log" for name in "AB"}
    common = {
        "model": SEQ_MODEL,
        "serve": {"enabled": False},
        "group": group,
        "checkpoint": {"every_samples": 1_000, "every_seconds": 3600},
        "settings": {
            "kafka": {
                "client": client,
                "session_timeout_ms": 3000,
                "heartbeat_interval_ms": 1000,
                "max_poll_interval_ms": 10_000,
            }
        },
    }
    a = reliable_daemon(topics, env={"SEQ_LOG": str(logs["A"])}, **common)
    b = reliable_daemon(topics, env={"SEQ_LOG": str(logs["B"])}, **common)
    producer.start(RECORDS, per_second=RECORDS / PRODUCE_SECONDS)
    watch = CommitWatch(broker, group, topics["input"], PARTITIONS)
    try:
        a.start()
        wait_for(
            lambda: len(assignment(a)) == PARTITIONS and bool(read_log(logs["A"])),
            30,
            "A alone, learning",
        )
        b.start()
        wait_for(lambda: split(a, b), 30, "A and B sharing the partitions")
        # The revoke checkpoint runs on the learner thread right after the poll that revoked.
        wait_for(lambda: revoke_checkpoints(a, 1) >= 1, 10, "A's revoke checkpoint")

        assert a.terminate()[0] == 0
        wait_for(lambda: len(assignment(b)) == PARTITIONS, 30, "B alone")
        a.start()
        wait_for(lambda: split(a, b), 30, "A back beside B")
        wait_for(lambda: revoke_checkpoints(b, 1) >= 1, 10, "B's revoke checkpoint")

        b.kill()
        wait_for(lambda: len(assignment(a)) == PARTITIONS, 30, "A alone after B's crash")
        b.start()
        wait_for(lambda: split(a, b), 30, "B back beside A")
        assert b.event("checkpoint_restored") is not None

        producer.join(timeout=PRODUCE_SECONDS + 30)
        expected = producer.expected()
        wait_for(lambda: applied_last(logs) == expected, 60, "every record applied")
        assert a.terminate()[0] == 0
        assert b.terminate()[0] == 0
    finally:
        producer.close()
        watch.close()

    states = {"A": expert_state(a.checkpoint_dir), "B": expert_state(b.checkpoint_dir)}
    learned = {name: covered(state["spans"]) for name, state in states.items()}
    # No loss: between them the two lineages hold every record.
    lost = {
        k: sorted(
            set(range(1, last + 1)) - learned["A"].get(k, set()) - learned["B"].get(k, set())
        )[:10]
        for k, last in expected.items()
    }
    assert {k: v for k, v in lost.items() if v} == {}
    # Nothing twice along one lineage: seqs only ever advance (a gap is the other member's).
    for name, state in states.items():
        repeated = [v for v in state["violations"] if v[2] < 1]
        assert repeated == [], f"{name} applied a record twice along its lineage"
        assert sum(state["count"].values()) == sum(len(s) for s in learned[name].values())
    # Every resume at or past the group's commit as the broker held it before.
    below = [
        (name, when, tp, offset, watch.before(when)[tp])
        for name, daemon in (("A", a), ("B", b))
        for when, where in resumes(daemon)
        for tp, offset in where.items()
        if offset < watch.before(when).get(tp, 0)
    ]
    assert below == [], "a member resumed below the group's commit"
    both = {k: learned["A"].get(k, set()) & learned["B"].get(k, set()) for k in expected}
    overlap = sum(len(s) for s in both.values())
    relearned = len(read_log(logs["A"])) + len(read_log(logs["B"])) - sum(expected.values())
    moves = sum(
        1
        for d in (a, b)
        for s in range(1, d.starts + 1)
        for e in d.events(s)
        if e.get("event") == "partitions_assigned"
    )
    print(
        f"\nrebalance ({client}): {sum(expected.values())} records, {moves} assignments, 0 lost, "
        f"0 learned twice along a lineage, {overlap} in both lineages, {relearned} updates "
        f"redone in all (lost with the killed member, or learned by both)"
    )


def applied_last(logs: dict[str, Path]) -> dict[int, int]:
    """The highest seq of each key applied by either daemon."""
    last: dict[int, int] = {}
    for path in logs.values():
        for key, seq, _, _ in read_log(path):
            last[key] = max(last.get(key, 0), seq)
    return last
