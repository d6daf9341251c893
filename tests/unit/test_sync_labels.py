"""Class slots agreed at rounds (streamlearn/sync/labels.py; docs/scaling.md, "Class slots"):
a replica holds a sample of a class without a slot until the round, where every replica gives
the group's new classes the same slots. Then two replicas (2 processes, loopback gloo) that
see different classes in different orders learn one model that tells all of them apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from streamlearn.app.embedded import free_port
from streamlearn.core.admission import LABEL_PENDING, Rejection
from streamlearn.core.engine import Engine, StepResult
from streamlearn.core.preprocess import LabelIndex
from streamlearn.core.types import Record, Sample
from streamlearn.settings import load_settings
from streamlearn.sync.average import floating
from streamlearn.sync.labels import PendingLabels, agree
from streamlearn.sync.lockstep import finish
from tests.support.replicas import engine_replica, run_pair, step
from tests.unit.test_daemon import Source, drain, make, records

pytestmark = pytest.mark.timeout(120)


def test_pending_keeps_only_samples_waiting_for_a_slot_in_order() -> None:
    chunk = [Sample([0.0], y) for y in ("a", "b", "c", "b")]
    rejections = [
        Rejection(1, LABEL_PENDING, ""),
        Rejection(2, "bad_label", ""),
        Rejection(3, LABEL_PENDING, ""),
    ]
    pending: PendingLabels[int] = PendingLabels()
    others = pending.hold(rejections, chunk, [10, 11, 12, 13])
    assert [r.index for r in others] == [2]
    assert pending.new_labels() == ["b"] and len(pending) == 2
    assert pending.take() == ([chunk[1], chunk[3]], [11, 13])
    assert len(pending) == 0


def test_every_replica_gives_the_new_classes_the_same_slots_in_rank_order() -> None:
    one, other = LabelIndex(8), LabelIndex(8)
    for index in (one, other):
        index.encode("x")
    gathered = [["b", "a"], ["c", "a", "x"]]
    assert agree(one, gathered) == agree(other, gathered) == ["b", "a", "c", "x"]
    assert one.labels == other.labels == ["x", "b", "a", "c"]
    assert one.counts == [1, 0, 0, 0]  # a slot given counts no sample: the learning does


def test_a_class_the_index_has_no_room_for_gets_no_slot_anywhere() -> None:
    index = LabelIndex(2)
    assert agree(index, [["a", "b", "c"]]) == ["a", "b"]
    assert index.labels == ["a", "b"]


def test_a_slot_given_at_the_round_is_not_taken_back_by_the_next_new_class() -> None:
    index = LabelIndex(3, rare=5)
    for label in ["a"] * 5 + ["b"] * 5 + ["c"]:
        index.encode(label)
    # c is rare: x takes its slot; y finds no rare slot but x's, just given.
    assert agree(index, [["x"], ["y"]]) == ["x"]
    assert index.labels == ["a", "b", "x"]
    assert [(r.index, r.old, r.new) for r in index.take_recycled()] == [(2, "c", "x")]


def test_a_replica_defers_a_new_class_and_refuses_it_for_good_after_the_round() -> None:
    settings = load_settings(None, model={"hidden": [4], "max_classes": 2})
    engine = Engine(settings.model, settings.engine)
    engine.process([Sample([0.0, 1.0], "a")])
    engine.unknown_labels = "defer"
    batch = [Sample([0.0, 1.0], "a"), Sample([1.0, 0.0], "b"), Sample([1.0, 1.0], 3)]
    result = engine.process(batch)
    assert [(r.index, r.reason) for r in result.rejections] == [
        (1, LABEL_PENDING),
        (2, "bad_label"),  # the wrong kind of label is refused at once, as ever
    ]
    assert result.labeled == 1 and engine.labels.labels == ["a"]
    engine.unknown_labels = "refuse"
    refused = engine.process([Sample([1.0, 0.0], "b")]).rejections
    assert [(r.index, r.reason) for r in refused] == [(0, "too_many_classes")]
    assert "max_classes=2" in refused[0].detail


# Three classes in 2 features: each replica's partition holds two of them, in its own order.
CENTRES = {"a": (3.0, 0.0), "b": (0.0, 3.0), "c": (-3.0, -3.0)}
SEEN = {0: ("a", "b"), 1: ("c", "b")}
PER_REPLICA, BATCH = 400, 8


def _samples(labels: tuple[str, ...], n: int, seed: int) -> list[Sample]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        label = labels[i % len(labels)]
        centre = torch.tensor(CENTRES[label])
        out.append(Sample((centre + torch.randn(2, generator=gen)).tolist(), label))
    return out


def _replica(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    settings = load_settings(
        None,
        # A step size that learns three well-apart classes in a few hundred samples.
        model={"hidden": [8], "seed": 1, "learning_rate": 0.03},
        checkpoint={"enabled": False},
        experts={"enabled": False},
        sync={
            "enabled": True,
            "every_steps": 5,
            "master_addr": "127.0.0.1",
            "master_port": port,
            "rank": rank,
            "world_size": 2,
            "timeout_s": 60,
        },
    )
    engine, replica = engine_replica(settings, BATCH)
    correct = [0]  # right answers of every step here, held samples' included

    def learn(chunk: list[Sample]) -> StepResult:
        result = engine.process(chunk)
        correct[0] += result.correct
        return result

    def learn_held(held: list[Sample], origins: list[Any]) -> None:
        learn(held)

    replica.learn = learn_held
    rejected = 0
    mine = _samples(SEEN[rank], PER_REPLICA, seed=rank)
    for start in range(0, len(mine), BATCH):
        rejected += len(step(replica, mine[start : start + BATCH], learn))
    finish(replica)
    test = _samples(("a", "b", "c"), 300, seed=7)
    x = torch.tensor([s.x for s in test])
    assert engine.scaler is not None and engine.pool is not None
    scores = engine.pool.active_expert.predict(engine.scaler.transform(x))
    predicted = [engine.labels.labels[int(i)] for i in scores[:, : len(engine.labels)].argmax(1)]
    torch.save(
        {
            "labels": list(engine.labels.labels),
            "learned": engine.samples_learned,
            "rejected": rejected,
            "correct": correct[0],
            "scored": engine.stats.state_dict(),
            "accuracy": sum(p == s.y for p, s in zip(predicted, test, strict=True)) / len(test),
            "weights": floating(engine.state_dict()["pool"]["members"]),
        },
        Path(out) / f"rank{rank}.pt",
    )
    replica.close()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return run_pair(_replica, (free_port(),), tmp_path_factory.mktemp("labels"))


def test_replicas_seeing_different_classes_agree_on_one_slot_each(
    ranks: list[dict[str, Any]],
) -> None:
    zero, one = ranks
    # Round 1 gathers rank 0's [a, b] and rank 1's [c, b]: slots in rank order.
    assert zero["labels"] == one["labels"] == ["a", "b", "c"]
    assert [r["learned"] for r in ranks] == [PER_REPLICA, PER_REPLICA]  # held, then learned
    assert [r["rejected"] for r in ranks] == [0, 0]
    for path, tensor in zero["weights"].items():
        assert torch.equal(tensor, one["weights"][path]), path


def test_each_replica_keeps_its_own_prequential_scores(ranks: list[dict[str, Any]]) -> None:
    # The rounds load the template's engine state; the scores behind the accuracy gauges
    # stay each replica's own.
    for seen in ranks:
        assert seen["scored"]["count"] == PER_REPLICA
        assert seen["scored"]["sums"]["correct"] == seen["correct"]


def test_the_group_model_tells_every_class_apart(ranks: list[dict[str, Any]]) -> None:
    # Classes 4 sd apart: a model whose output rows mix two classes scores near 2/3 here.
    assert all(r["accuracy"] >= 0.95 for r in ranks), [r["accuracy"] for r in ranks]


class _Published:
    """A snapshot publisher that notes the model version of each snapshot."""

    def __init__(self) -> None:
        self.versions: list[int] = []

    def publish_from(self, engine: Engine) -> None:
        self.versions.append(engine.version)


def test_held_samples_learned_in_a_round_publish_no_snapshot_and_count_once(
    tmp_path: Path,
) -> None:
    """Inside a round the replica's own model is not the group's until the round averages
    it again and publishes: a snapshot in between would serve an answer no other replica
    gives. The held samples counted towards checkpoint.every_samples when they were read."""
    source = Source("in", [records(20)])
    daemon, _ = make(tmp_path, source)
    assert daemon.start()
    drain(daemon, source)
    published = _Published()
    daemon.snapshots = published
    held = [Sample([1.0, 2.0], 1), Sample([2.0, 0.0], 0)]
    origins: list[tuple[Record, int | None]] = [
        (Record("in", 0, 100 + i, b"{}"), None) for i in range(2)
    ]
    since, version = daemon.checkpointer._since_checkpoint, daemon.engine.version
    daemon._last_publish = float("-inf")  # a snapshot is due
    daemon._learn_held(held, origins)
    assert daemon.engine.version > version  # learned
    assert published.versions == []
    assert daemon.checkpointer._since_checkpoint == since
    daemon._learn_samples(held, origins, [])  # read and learned as a step: both
    assert published.versions == [daemon.engine.version]
    assert daemon.checkpointer._since_checkpoint == since + 2
