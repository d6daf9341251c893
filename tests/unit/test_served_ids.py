"""Served rows kept for their late label: ids per row, and the learner's bounded queue."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any, cast

from streamlearn.metrics import ServingMetrics
from streamlearn.runtime.ipc import LearnerLink, LinkClosedError
from streamlearn.runtime.remote import ServedSender
from streamlearn.serve.core import ServingCore
from streamlearn.serve.inbox import Inbox
from streamlearn.serve.served_ids import row_ids, served_rows
from streamlearn.serve.tensors import TensorIn
from streamlearn.settings import load_settings
from tests.support.waiting import wait_for
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


class SlowLink:
    """A learner link whose sends block until released (a learner slow to read)."""

    def __init__(self, answer: dict[str, Any] | None) -> None:
        self.answer = answer
        self.release = threading.Event()
        self.waiting = threading.Event()  # a send is blocked
        self.sent: list[dict[str, Any]] = []

    def request(self, message: dict[str, Any]) -> Future[dict[str, Any]]:
        self.waiting.set()
        self.release.wait(10)
        self.sent.append(message)
        future: Future[dict[str, Any]] = Future()
        if self.answer is None:
            future.set_exception(LinkClosedError("the learner is not connected"))
        else:
            future.set_result(self.answer)
        return future


def _dropped(metrics: ServingMetrics, reason: str) -> float | None:
    return metrics.registry.get_sample_value(
        "streamlearn_served_rows_dropped_total", {"reason": reason}
    )


def test_a_slow_learner_never_holds_a_request_up_the_backlog_drops_and_counts() -> None:
    link, metrics = SlowLink({"dropped": 1}), ServingMetrics()
    sender = ServedSender(cast(LearnerLink, link), metrics, backlog=2)
    batches = [served_rows(f"r{i}", [[1.0], [2.0]], [0, 1], ["0", "0"], 1) for i in range(5)]
    sender.offer(batches[0])
    wait_for(link.waiting.is_set, 10, "the sender blocked on the learner")
    for rows in batches[1:]:  # two wait behind the blocked send, two are dropped
        sender.offer(rows)
    assert link.sent == []  # every offer returned while the learner read nothing
    assert _dropped(metrics, "backlog") == 4
    link.release.set()
    wait_for(lambda: len(link.sent) == 3, 10, "the three kept batches sent")
    assert [m["rows"][0]["id"] for m in link.sent] == ["r0/0", "r1/0", "r2/0"]
    # The learner's own bound dropped one row of each batch it got.
    wait_for(lambda: _dropped(metrics, "queue_full") == 3, 10, "queue_full counted")


def test_rows_for_a_learner_that_is_down_are_counted() -> None:
    link, metrics = SlowLink(None), ServingMetrics()
    link.release.set()
    sender = ServedSender(cast(LearnerLink, link), metrics)
    sender.offer(served_rows("r", [[1.0], [2.0], [3.0]], [0, 1, 0], ["0"] * 3, 1))
    wait_for(lambda: _dropped(metrics, "learner_down") == 3, 10, "learner_down counted")
