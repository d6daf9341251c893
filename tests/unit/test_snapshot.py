"""Snapshots are frozen copies: learning on never changes what one answers."""

import pytest
import torch

from streamlearn.core.engine import Engine
from streamlearn.core.types import Sample
from streamlearn.metrics import Metrics
from streamlearn.serve.board import SnapshotBoard, build_snapshot
from streamlearn.settings import ModelSettings


def samples(n: int, offset: float = 0.0) -> list[Sample]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g) + offset
    return [Sample(x=row.tolist(), y=int(row[0] > offset)) for row in x]


def engine() -> Engine:
    e = Engine(ModelSettings(hidden=[8], learning_rate=0.05))
    e.process(samples(64))
    return e


def test_nothing_to_serve_before_the_model_exists() -> None:
    assert build_snapshot(Engine(ModelSettings())) is None


def test_a_snapshot_does_not_change_while_the_learner_goes_on() -> None:
    e = engine()
    snapshot = build_snapshot(e)
    assert snapshot is not None
    probe = torch.randn(5, 3)
    before = snapshot.predict(probe)
    for _ in range(20):
        e.process(samples(64, offset=1.0))  # moves weights and scaler statistics
    after = snapshot.predict(probe)
    assert before.probabilities is not None and after.probabilities is not None
    assert torch.equal(before.probabilities, after.probabilities)
    assert snapshot.version == 1 and e.version == 21
    rebuilt = build_snapshot(e)
    assert rebuilt is not None
    fresh = rebuilt.predict(probe)
    assert fresh.probabilities is not None
    assert not torch.equal(before.probabilities, fresh.probabilities)


def test_snapshot_matches_the_engine_prediction_path() -> None:
    e = engine()
    x = [[0.1, -0.3, 2.0]]
    (expected,) = e.process([Sample(x=x[0])]).predictions
    snapshot = build_snapshot(e)
    assert snapshot is not None
    got = snapshot.predict(torch.tensor(x))
    assert got.predictions == [expected.prediction]
    names = [str(label) for label in e.labels.labels]
    assert got.probabilities is not None
    assert dict(zip(names, got.probabilities[0].tolist(), strict=True)) == expected.probabilities


def test_publish_skips_unchanged_versions_and_never_goes_back() -> None:
    metrics = Metrics()
    board = SnapshotBoard(metrics)
    e = engine()
    first = board.publish_from(e)
    assert board.publish_from(e) is first  # same version: the same object stays
    e.process(samples(32))
    newer = board.publish_from(e)
    assert newer is not None and first is not None
    assert newer.version == 2 and board.current is newer
    board.publish(first)  # an older one arriving late is ignored
    assert board.current is newer
    assert metrics.snapshot_publishes.labels(result="ok")._value.get() == 2


def test_a_failed_build_keeps_the_previous_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    board = SnapshotBoard(Metrics())
    e = engine()
    good = board.publish_from(e)
    e.process(samples(32))
    monkeypatch.setattr(
        "streamlearn.serve.board.build_snapshot",
        lambda engine: (_ for _ in ()).throw(RuntimeError("out of memory")),
    )
    assert board.publish_from(e) is good and board.current is good
