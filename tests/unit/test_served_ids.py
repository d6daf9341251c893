"""Served rows kept for their late label: ids per row, and the learner's bounded queue."""

from __future__ import annotations

from typing import Any

from streamlearn.serve.core import ServingCore
from streamlearn.serve.inbox import Inbox
from streamlearn.serve.served_ids import row_ids, served_rows
from streamlearn.serve.tensors import TensorIn
from streamlearn.settings import load_settings
from tests.unit.test_label_datatype import Learner, _core


def test_one_row_keeps_the_request_id_and_several_rows_are_numbered() -> None:
    assert row_ids("req", 1) == ["req"]
    assert row_ids("req", 3) == ["req/0", "req/1", "req/2"]
    rows = served_rows("req", [[1.0, 2.0], [3.0, 4.0]], [1, 0], ["0", "2"], version=7)
    assert [(r["id"], r["x"], r["prediction"], r["expert"], r["version"]) for r in rows] == [
        ("req/0", [1.0, 2.0], 1, "0", 7),
        ("req/1", [3.0, 4.0], 0, "2", 7),
    ]
    assert rows[0]["ts"] == rows[1]["ts"]  # answered together


def test_the_learner_queues_what_fits_and_counts_the_rest() -> None:
    inbox = Inbox(capacity=3)
    rows = served_rows("a", [[float(i)] for i in range(2)], [0, 1], ["0", "0"], 1)
    assert inbox.offer_served(rows) == 0
    assert inbox.pending()
    more = served_rows("b", [[float(i)] for i in range(2)], [0, 1], ["0", "0"], 1)
    assert inbox.offer_served(more) == 1  # one of two fits
    assert [r["id"] for r in inbox.take_served()] == ["a/0", "a/1", "b/0"]
    assert inbox.take_served() == [] and not inbox.pending()


class Keeping(Learner):
    def __init__(self) -> None:
        self.kept: list[list[dict[str, Any]]] = []

    def keep_served(self, rows: list[dict[str, Any]]) -> None:
        self.kept.append(rows)


def _kept(request_id: str | None, rows: int, **labels: Any) -> tuple[Keeping, ServingCore]:
    learner = Keeping()
    settings = load_settings(None, labels={"enabled": True, **labels})
    core = _core(settings=settings, learner=learner)
    data = [[float(i), 1.0] for i in range(rows)]
    core.infer("streamlearn", [TensorIn("input", "FP32", [rows, 2], data)], request_id=request_id)
    return learner, core


def test_serving_hands_the_learner_what_a_request_with_an_id_was_answered() -> None:
    learner, _ = _kept("r1", 2)
    [rows] = learner.kept
    assert [(r["id"], r["x"], r["prediction"], r["version"]) for r in rows] == [
        ("r1/0", [0.0, 1.0], 0, 7),
        ("r1/1", [1.0, 1.0], 0, 7),
    ]
    assert _kept(None, 1)[0].kept == []  # no id: nothing to join
    assert _kept("r2", 1, served_ids=False)[0].kept == []


def test_an_id_too_long_to_join_is_answered_and_counted() -> None:
    learner, core = _kept("x" * 300, 3)
    assert learner.kept == []
    registry = core.metrics.registry
    assert (
        registry.get_sample_value("streamlearn_served_rows_dropped_total", {"reason": "bad_id"})
        == 3
    )
