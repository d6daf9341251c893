"""Dead letters carry what the producer sent, also when the engine refuses after decoding."""

import json
from pathlib import Path
from typing import Any

from streamlearn.metrics import ServingMetrics
from streamlearn.serve.board import SnapshotBoard
from streamlearn.serve.core import ServingCore
from streamlearn.serve.inbox import HTTP_RECORD
from tests.unit.test_daemon import Source, drain, make
from tests.unit.test_hostile_input import InboxLearner

# Two class slots and no recycling: a third label is refused by the engine, after decoding.
TWO_CLASSES: dict[str, Any] = {"model": {"hidden": [4], "max_classes": 2, "rare_class_samples": 0}}


def test_a_refused_plain_record_is_dead_lettered_with_its_own_bytes(tmp_path: Path) -> None:
    third = b'{"x": [1, 2],   "y": 7, "extra": "kept"}'
    source = Source("in", [[b'{"x": [0, 1], "y": 0}', b'{"x": [1, 0], "y": 1}', third]])
    daemon, sink = make(tmp_path, source, **TWO_CLASSES)
    daemon.start()
    drain(daemon, source)
    (letter,) = sink.dead
    assert letter.reason == "too_many_classes"
    assert letter.value == third and letter.sample_index is None


def test_a_refused_batch_item_keeps_its_ints_and_its_index(tmp_path: Path) -> None:
    batch = {
        "samples": [
            {"x": [0, 1], "y": 0},
            {"x": "bad"},
            {"x": [1, 0], "y": 1},
            {"x": [2, 2], "y": 9, "id": 5},
        ]
    }
    source = Source("in", [[json.dumps(batch).encode()]])
    daemon, sink = make(tmp_path, source, **TWO_CLASSES)
    daemon.start()
    drain(daemon, source)
    by_reason = {letter.reason: letter for letter in sink.dead}
    refused = by_reason["too_many_classes"]
    assert refused.sample_index == 3  # its place in the record, past the item the codec refused
    assert json.loads(refused.value) == {"x": [2, 2], "y": 9, "id": 5}
    assert by_reason["schema"].sample_index == 1


def test_a_refused_learn_request_sample_is_dead_lettered_as_posted(tmp_path: Path) -> None:
    source = Source("in", [[b'{"x": [0, 1], "y": 0}', b'{"x": [1, 0], "y": 1}']])
    daemon, sink = make(tmp_path, source, **TWO_CLASSES)
    daemon.start()
    drain(daemon, source)
    assert isinstance(daemon.snapshots, SnapshotBoard)  # the default publisher
    core = ServingCore(daemon.settings, daemon.snapshots, InboxLearner(daemon), ServingMetrics())
    assert core.learn([{"x": [3, 4], "y": 5}]).result() == {"accepted": 1}
    daemon.step()
    (letter,) = sink.dead
    assert letter.source is HTTP_RECORD and letter.reason == "too_many_classes"
    assert letter.value == b'{"x": [3, 4], "y": 5}'  # was {"x": [3.0, 4.0], ..., "ts": null}
