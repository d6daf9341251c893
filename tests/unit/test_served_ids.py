"""Served rows kept for their late label: ids per row, and the learner's bounded queue."""

from __future__ import annotations

from streamlearn.serve.inbox import Inbox
from streamlearn.serve.served_ids import row_ids, served_rows


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
