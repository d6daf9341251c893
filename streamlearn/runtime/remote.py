"""Serving's client of the learner: requests over the IPC link, the status file for the rest.

Implements :class:`~streamlearn.serve.core.LearnerClient`. Each call turns the learner's
answer (or its absence) into what the HTTP and gRPC front ends already speak: a queue that
is full is a 429, a learner that is down or restarting a 503.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from streamlearn.core.errors import RequestError
from streamlearn.core.types import Sample
from streamlearn.metrics import ServingMetrics
from streamlearn.runtime.ipc import LearnerLink, LinkClosedError, Message
from streamlearn.serve.core import LearnerView
from streamlearn.serve.served_ids import ServedRow

T = TypeVar("T")
_DOWN = "the learner is not running (starting or restarting); retry later"


class RemoteLearner:
    """Serving's side of the learner link: requests over IPC, the rest from the status file.

    A learner that is down or restarting becomes a 503 to retry, a full queue a 429.
    """

    def __init__(self, link: LearnerLink, status: Path, metrics: ServingMetrics) -> None:
        self.link = link
        self._status = StatusReader(status)
        self._metrics = metrics

    @property
    def up(self) -> bool:
        return self.link.connected.is_set()

    def learn(self, samples: list[Sample]) -> Future[dict[str, int]]:
        sent = self.link.request(
            {"op": "learn", "samples": [dataclasses.asdict(s) for s in samples]}
        )
        return _then(sent, _queued)

    def adapt_on(self, rows: list[list[float]]) -> None:
        sent = self.link.request({"op": "rows", "rows": rows})

        def count(future: Future[Message]) -> None:
            dropped = len(rows) if future.exception() else int(future.result()["dropped"])
            if dropped:
                self._metrics.tta_rows_dropped.inc(dropped)

        sent.add_done_callback(count)

    def keep_served(self, rows: list[ServedRow]) -> None:
        sent = self.link.request({"op": "served", "rows": rows})

        def count(future: Future[Message]) -> None:
            if future.exception() is not None:
                self._metrics.served_rows_dropped.labels(reason="learner_down").inc(len(rows))
            elif dropped := int(future.result().get("dropped", 0)):
                self._metrics.served_rows_dropped.labels(reason="queue_full").inc(dropped)

        sent.add_done_callback(count)

    def checkpoint(self) -> Future[dict[str, Any]]:
        sent = self.link.request({"op": "checkpoint"})
        out = _then(sent, lambda answer: dict(answer["result"]))
        # A client that gives up cancels: the learner then skips the checkpoint it would
        # otherwise still take for nobody.
        out.add_done_callback(lambda f: self.link.cancel(sent) if f.cancelled() else None)
        return out

    def forget(self, samples: list[Sample], expert: str | None) -> Future[dict[str, Any]]:
        sent = self.link.request(
            {
                "op": "forget",
                "samples": [dataclasses.asdict(s) for s in samples],
                "expert": expert,
            }
        )
        return _then(sent, _forgotten)

    def view(self) -> LearnerView:
        return self._status.read()


def _queued(answer: Message) -> dict[str, int]:
    if answer.get("full"):
        raise RequestError(
            429,
            "queue_full",
            f"learn queue full ({answer['queued']} of "
            f"{answer['capacity']} samples waiting); retry later",
        )
    return {"accepted": int(answer["accepted"]), "queued": int(answer["queued"])}


def _forgotten(answer: Message) -> dict[str, Any]:
    result = dict(answer["result"])
    if "error_code" in result:
        raise RequestError(409, str(result["error_code"]), str(result["detail"]))
    return result


def _then(future: Future[Message], convert: Callable[[Message], T]) -> Future[T]:
    """``convert`` the answer; a broken link becomes a 503, an error answer a 500."""
    out: Future[T] = Future()

    def done(f: Future[Message]) -> None:
        if out.cancelled():
            return
        error = f.exception()
        if isinstance(error, LinkClosedError):
            out.set_exception(RequestError(503, "learner_unavailable", _DOWN))
            return
        if error is not None:
            out.set_exception(error)
            return
        answer = f.result()
        try:
            if "error" in answer:
                raise RuntimeError(f"the learner failed the request: {answer['error']}")
            out.set_result(convert(answer))
        except Exception as exc:
            out.set_exception(exc)

    future.add_done_callback(done)
    return out


class StatusReader:
    """The learner's status file, parsed again only when it changed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: tuple[int, int] | None = None
        self._view = LearnerView()

    def read(self) -> LearnerView:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return self._view
        key = (stat.st_ino, stat.st_mtime_ns)
        if key != self._key:
            try:
                data = json.loads(self.path.read_bytes())
            except (OSError, ValueError):
                return self._view  # replaced under us: the next read gets the new one
            self._view = LearnerView(
                data.get("progress"),
                data.get("pid"),
                data.get("learn_queue", {}),
                data.get("drift_events", []),
                data.get("expert_events", []),
            )
            self._key = key
        return self._view
