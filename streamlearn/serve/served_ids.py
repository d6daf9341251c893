"""Served rows kept for their late label: what a request with an id was answered.

A v2 inference request may carry an ``id``. With ``labels.served_ids`` on, each of its rows
goes to the learner as ``{"id", "x", "prediction", "version", "expert", "ts"}``: the learner
keeps it in the late-label store like an unlabeled sample read from Kafka, so a label on
the labels topic later joins it, scores the answer served then and learns the sample. One
row keeps the request's id; a request of n > 1 rows keeps ``"<id>/0"`` .. ``"<id>/<n-1>"``.

Best effort by design: it never delays or fails the answer. The request thread puts the
rows on a bounded queue; a sender thread carries them to the learner in one IPC message
(:class:`~streamlearn.runtime.remote.ServedSender`); whatever does not fit either queue, or
finds the learner down, is counted in ``streamlearn_served_rows_dropped{reason}``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from streamlearn.core.types import Label

ServedRow = dict[str, Any]


def row_ids(request_id: str, rows: int) -> list[str]:
    """The id each row of a request is kept under."""
    if rows == 1:
        return [request_id]
    return [f"{request_id}/{i}" for i in range(rows)]


def served_rows(
    request_id: str,
    x: list[list[float]],
    predictions: Sequence[Label],
    experts: Sequence[str],
    version: int,
) -> list[ServedRow]:
    """The rows of one answered request, as the learner keeps them."""
    now = time.time()  # event time, like a Kafka record's timestamp
    return [
        {"id": id_, "x": row, "prediction": p, "version": version, "expert": e, "ts": now}
        for id_, row, p, e in zip(row_ids(request_id, len(x)), x, predictions, experts, strict=True)
    ]
