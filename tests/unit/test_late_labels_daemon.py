"""Late labels through the learner loop, on an in-memory source of two topics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streamlearn.checkpoint import FileCheckpointStore
from streamlearn.checkpoint.inspect import describe
from streamlearn.core.labels.guard import GuardAction, Verdict
from streamlearn.core.types import Sample, TopicPartition
from streamlearn.daemon import Daemon
from streamlearn.sinks import MemorySink
from tests.unit.test_daemon import Source, drain, make

LABELS = "labels"
SAMPLES_TP, LABELS_TP = TopicPartition("in", 0), TopicPartition(LABELS, 0)
ON: dict[str, Any] = {"labels": {"enabled": True}, "kafka": {"labels_topic": LABELS}}


def unlabeled(ids: range) -> list[bytes]:
    return [json.dumps({"x": [i % 7, i % 3], "id": f"s{i}"}).encode() for i in ids]


def label_records(ids: range) -> list[bytes]:
    return [json.dumps({"id": f"s{i}", "y": i % 2}).encode() for i in ids]


def value(daemon: Daemon, name: str, labels: dict[str, str] | None = None) -> float | None:
    return daemon.metrics.registry.get_sample_value(name, labels or {})


def joins(daemon: Daemon) -> float:
    return sum(
        value(daemon, "streamlearn_served_joins_total", {"expert": "0", "result": r}) or 0
        for r in ("right", "wrong")
    )


def started(tmp_path: Path, sections: dict[str, Any]) -> tuple[Daemon, Source, MemorySink]:
    """A started daemon on empty input and labels topics."""
    source = Source("in", [[]])
    source.add_topic(LABELS, [[]])
    daemon, sink = make(tmp_path, source, **sections)
    assert daemon.start()
    return daemon, source, sink


def phase(daemon: Daemon, source: Source, ids: range, flip: bool) -> None:
    """A learnable stream (y = i % 2, from x), each label right after its sample; its
    labels flipped with ``flip``; learned 8 samples at a time."""
    for i in ids:
        x = [float(i % 2), float(1 - i % 2)]
        source.append(SAMPLES_TP, json.dumps({"x": x, "id": f"s{i}"}).encode())
        source.append(LABELS_TP, json.dumps({"id": f"s{i}", "y": (i + flip) % 2}).encode())
        if i % 8 == 7:
            drain(daemon, source)


def test_labels_after_their_samples_join_are_scored_and_learned(tmp_path: Path) -> None:
    # A few labeled samples first, so the model answers with a class.
    first = [json.dumps({"x": [1, 2], "y": i % 2}).encode() for i in range(10)]
    source = Source("in", [first + unlabeled(range(100))])
    daemon, sink = make(tmp_path, source, **ON)
    source.add_topic(LABELS, [[]])
    assert daemon.start()
    drain(daemon, source)
    assert daemon.engine.samples_learned == 10
    assert len(daemon.late_labels.store.pending) == 100
    assert len(sink.predicted) == 100
    for v in label_records(range(90)):
        source.append(LABELS_TP, v)
    drain(daemon, source)
    assert daemon.engine.samples_learned == 100  # 10 inline + 90 joined
    assert len(daemon.late_labels.store.pending) == 10
    assert joins(daemon) == 90
    daemon.late_labels.update_gauges(force=True)
    assert value(daemon, "streamlearn_pending_labels", {"area": "samples"}) == 10
    served = value(daemon, "streamlearn_served_accuracy", {"window": "100"})
    right = value(daemon, "streamlearn_served_joins_total", {"expert": "0", "result": "right"})
    assert served is not None and right is not None and served == right / 90
    assert daemon.positions == {SAMPLES_TP: 110, LABELS_TP: 90}
    daemon._publish_progress()
    live = daemon.progress.served
    assert live is not None
    assert live["served_accuracy"]["100"] == served and live["joins"] == 90
    assert (live["pending_samples"], live["waiting_labels"], live["guard"]) == (10, 0, None)


def test_labels_before_their_samples_wait_and_join(tmp_path: Path) -> None:
    source = Source("in", [[]])
    daemon, _ = make(tmp_path, source, **ON)
    source.add_topic(LABELS, [label_records(range(50))])
    assert daemon.start()
    drain(daemon, source)
    assert len(daemon.late_labels.store.waiting) == 50
    for v in unlabeled(range(50)):
        source.append(SAMPLES_TP, v)
    drain(daemon, source)
    assert daemon.engine.samples_learned == 50
    assert not daemon.late_labels.store.waiting and not daemon.late_labels.store.pending
    assert joins(daemon) == 50


def test_bad_label_records_are_dead_lettered_counted_and_passed(tmp_path: Path) -> None:
    source = Source("in", [[]])
    daemon, sink = make(tmp_path, source, **ON)
    source.add_topic(LABELS, [[b"nope", b'{"id": "a"}', b'{"id": "b", "y": 1}']])
    assert daemon.start()
    drain(daemon, source)
    assert [(d.reason, d.source.topic, d.source.offset) for d in sink.dead] == [
        ("not_json", LABELS, 0),
        ("schema", LABELS, 1),
    ]
    assert "y:" in sink.dead[1].detail
    assert value(daemon, "streamlearn_records_invalid_total", {"reason": "schema"}) == 1
    assert list(daemon.late_labels.store.waiting) == ["b"]
    assert daemon.positions[LABELS_TP] == 3


def test_pending_samples_and_waiting_labels_survive_a_restart_and_join_once(
    tmp_path: Path,
) -> None:
    """Half the samples answered and half of their labels in before the checkpoint, and
    labels of samples not yet read: the restart joins each of the 60 exactly once."""
    source = Source("in", [unlabeled(range(40))])
    source.add_topic(LABELS, [label_records(range(20)) + label_records(range(50, 60))])
    daemon, _ = make(tmp_path, source, **ON)
    assert daemon.start()
    drain(daemon, source)
    assert daemon.engine.samples_learned == 20
    assert daemon.checkpoint("test")
    daemon.shutdown()
    loaded = FileCheckpointStore(tmp_path).load_latest()
    assert loaded is not None and loaded.state["labels"] is not None
    assert describe(loaded.path)["late_labels"] == {
        "pending_samples": 20,
        "waiting_labels": 10,
        "served_joins": 20,
        "guard": None,
        "challenger": None,
    }

    again = Source("in", [unlabeled(range(60))])
    again.add_topic(LABELS, [label_records(range(20)) + label_records(range(50, 60))])
    for v in label_records(range(20, 50)):
        again.append(LABELS_TP, v)
    second, _ = make(tmp_path, again, **ON)
    assert second.start()
    assert len(second.late_labels.store.pending) == 20
    assert list(second.late_labels.store.waiting) == [f"s{i}" for i in range(50, 60)]
    drain(second, again)
    assert second.engine.samples_learned == 60
    assert not second.late_labels.store.pending and not second.late_labels.store.waiting
    assert joins(second) == 40
    assert second.positions == {SAMPLES_TP: 60, LABELS_TP: 60}


def test_the_guard_rolls_back_when_served_answers_go_wrong(tmp_path: Path) -> None:
    """A learnable stream, then its labels flipped: the guard rolls the learner back to the
    last confirmed state, reports it, holds the flipped labels back, and versions go on."""
    guard = {"enabled": True, "window": 20, "confirm_joins": 20, "max_hold_joins": 1000}
    sections = {**ON, "labels": {"enabled": True, "guard": guard}}
    daemon, source, sink = started(tmp_path, sections)

    phase(daemon, source, range(400), flip=False)
    assert daemon.guard.rollbacks == 0
    served = value(daemon, "streamlearn_served_accuracy", {"window": "100"})
    version = daemon.engine.version
    phase(daemon, source, range(400, 600), flip=True)
    assert daemon.guard.rollbacks == 1
    assert value(daemon, "streamlearn_rollbacks_total") == 1
    assert value(daemon, "streamlearn_guard_holding") == 1
    assert [kind for kind, _ in sink.events].count("served_model_rolled_back") == 1
    assert daemon.engine.version > version  # rolled back, yet the version moved on
    held = value(daemon, "streamlearn_label_outcomes_total", {"outcome": "held"})
    assert held is not None and held > 100
    assert served is not None

    # The guard's band, rollback target and hold are in the checkpoint: a restart keeps them.
    good_level = daemon.guard.guard.good_level
    assert daemon.checkpoint("test")
    daemon.shutdown()
    loaded = FileCheckpointStore(tmp_path).load_latest()
    assert loaded is not None
    inspected = describe(loaded.path)["late_labels"]["guard"]
    assert inspected["holding"] and inspected["rollbacks"] == 1
    assert inspected["good_accuracy"] == good_level
    assert inspected["good_version"] is not None and inspected["good_version"] < version
    again = Source("in", [[]])
    again.add_topic(LABELS, [[]])
    second, _ = make(tmp_path, again, **sections)
    assert second.start()
    assert second.guard.guard.holding and second.guard.rollbacks == 1
    assert second.guard.guard.good_level == good_level
    assert second.guard.state_dict() is not None
    assert value(second, "streamlearn_guard_holding") == 1


def test_settings_refuse_what_late_labels_cannot_do() -> None:
    from streamlearn.core.errors import SettingsError
    from streamlearn.settings import load_settings

    cases: dict[str, dict[str, Any]] = {
        "kafka.labels_topic must differ": {"kafka": {"labels_topic": "streamlearn.samples"}},
        "labels.guard needs model.task: classification": {
            "model": {"task": "regression"},
            "labels": {"enabled": True, "guard": {"enabled": True}},
        },
        "labels.challenger needs model.task: classification": {
            "model": {"task": "regression"},
            "labels": {"enabled": True, "challenger": {"enabled": True}},
        },
        "hidden would change the learned state's shape": {
            "labels": {"enabled": True, "challenger": {"model": {"hidden": [8]}}},
        },
    }
    for message, given in cases.items():
        sections = {"labels": {"enabled": True}, **given}
        try:
            load_settings(None, **sections)
        except SettingsError as exc:
            assert message in str(exc), (message, str(exc))
        else:
            raise AssertionError(f"accepted: {sections}")


def test_regression_scores_the_served_error_and_the_delay_per_expert(tmp_path: Path) -> None:
    source = Source(
        "in", [[json.dumps({"x": [i % 7, i % 3], "id": f"s{i}"}).encode() for i in range(40)]]
    )
    source.add_topic(LABELS, [[json.dumps({"id": f"s{i}", "y": 2.0}).encode() for i in range(40)]])
    daemon, sink = make(tmp_path, source, model={"hidden": [4], "task": "regression"}, **ON)
    assert daemon.start()
    drain(daemon, source)
    daemon.late_labels.update_gauges(force=True)
    answers = {p.id: p.prediction for p in sink.predicted}
    errors = [abs(2.0 - float(answers[f"s{i}"] or 0.0)) for i in range(40)]
    error = value(daemon, "streamlearn_served_error", {"window": "100"})
    assert error is not None and error == pytest.approx(sum(errors) / 40)
    assert value(daemon, "streamlearn_served_accuracy", {"window": "100"}) is None
    assert value(daemon, "streamlearn_label_delay_seconds_count", {"expert": "0"}) == 40
    view = daemon.late_labels.view()
    assert view is not None and view["served_mean_abs_error"]["100"] == error


def test_a_forget_drops_the_guards_states_so_no_rollback_brings_samples_back(
    tmp_path: Path,
) -> None:
    """The guard keeps deep copies (candidate, good) that hold every sample learned. After
    POST /v1/forget both are dropped and confirmation restarts: a rollback right after
    has no target (it holds, restores nothing) and the checkpoint keeps no such state."""
    guard = {"enabled": True, "window": 20, "confirm_joins": 20, "max_hold_joins": 1000}
    sections = {
        **ON,
        "model": {"head": "rls", "hidden": [4], "seed": 3},
        "labels": {"enabled": True, "guard": guard},
    }
    daemon, source, sink = started(tmp_path, sections)
    phase(daemon, source, range(200), flip=False)
    before = daemon.guard.state_dict()
    assert before is not None and before["good"] is not None  # a confirmed target

    answer = daemon.inbox.request_forget([Sample([0.0, 1.0], 0), Sample([1.0, 0.0], 1)], None)
    daemon.step()
    assert answer.result(timeout=5)["forgotten"] == 2
    after = daemon.guard.state_dict()
    assert after is not None and (after["good"], after["candidate"]) == (None, None)
    assert not daemon.guard.guard.has_good and not daemon.guard.guard.has_candidate

    # A rollback forced now: nothing confirmed to go back to, so the learner stays as is.
    version = daemon.engine.version
    daemon.guard._rollback(Verdict(GuardAction.ROLLBACK, 0.1, 0.9, 0.2))
    assert daemon.guard.rollbacks == 0 and daemon.engine.version == version
    assert [kind for kind, _ in sink.events][-1] == "guard_holding"

    assert daemon.checkpoint("test")
    loaded = FileCheckpointStore(tmp_path).load_latest()
    assert loaded is not None
    assert describe(loaded.path)["late_labels"]["guard"]["good_version"] is None
