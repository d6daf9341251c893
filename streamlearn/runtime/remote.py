"""Serving's client of the learner: requests over the IPC link, the status file for the rest.

Implements :class:`~streamlearn.serve.core.LearnerClient`. Each call turns the learner's
answer (or its absence) into what the HTTP and gRPC front ends already speak: a queue that
is full is a 429, a learner that is down or restarting a 503.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import queue
import threading
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
# Requests' served rows waiting in a serving process for the sender thread; past it they are
# dropped (counted), never waited for.
SERVED_BACKLOG = 1024


class RemoteLearner:
    """Serving's side of the learner link: requests over IPC, the rest from the status file.

    A learner that is down or restarting becomes a 503 to retry, a full queue a 429.
    """

    def __init__(self, link: LearnerLink, status: Path, metrics: ServingMetrics) -> None:
        self.link = link
        self._status = StatusReader(status)
        self._metrics = metrics
        self._served = ServedSender(link, metrics)

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
        self._served.offer(rows)

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


class ServedSender:
    """Served rows to the learner off the request thread (``labels.served_ids``).

    A request thread only puts its rows on a bounded queue (never waits: a full queue drops
    them, counted ``backlog``); one thread sends them, so a learner slow to read its socket
    slows this thread, never an answer. The learner's own bound drops the rest
    (``queue_full``); a learner that is down, all of them (``learner_down``).
    """

    def __init__(
        self, link: LearnerLink, metrics: ServingMetrics, backlog: int = SERVED_BACKLOG
    ) -> None:
        self.link = link
        self.metrics = metrics
        self._queue: queue.Queue[list[ServedRow]] = queue.Queue(maxsize=backlog)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def offer(self, rows: list[ServedRow]) -> None:
        self._ensure_started()
        try:
            self._queue.put_nowait(rows)
        except queue.Full:
            self._dropped("backlog", len(rows))

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="served-rows", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            rows = self._queue.get()
            sent = self.link.request({"op": "served", "rows": rows})
            sent.add_done_callback(functools.partial(self._answered, rows=len(rows)))

    def _answered(self, future: Future[Message], rows: int) -> None:
        if future.exception() is not None:
            self._dropped("learner_down", rows)
        elif dropped := int(future.result().get("dropped", 0)):
            self._dropped("queue_full", dropped)

    def _dropped(self, reason: str, rows: int) -> None:
        self.metrics.served_rows_dropped.labels(reason=reason).inc(rows)


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
