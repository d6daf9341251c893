"""What serving hands to the learner: labeled samples, rows to adapt on, checkpoint requests.

It lives in the learner's process. The learner's IPC threads append what serving processes
send (:class:`~streamlearn.runtime.learner.LearnerHost`), under a short lock, and never wait
for the learner loop, which takes what is waiting at the top of each step. The sample queue
is bounded
(``serve.learn_queue_samples``): a request that does not fit is refused whole, so the
client gets 429 and retries instead of having half its samples learned. Served rows for
test-time adaptation (``adapt.on_requests``) are best effort: past the same bound they are
dropped and counted, and the request is answered as usual; so are answered rows kept for
their late label (``labels.served_ids``).
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from typing import Any

from streamlearn.core.types import Record, Sample

#: Where dead letters of samples posted to /v1/learn say they came from (no Kafka offset).
HTTP_RECORD = Record(topic="http:/v1/learn", partition=-1, offset=-1, value=b"")


class Inbox:
    """What serving handed the learner, waiting for the learner loop to take it.

    Appending takes only a short lock and never waits for the loop; a full inbox refuses.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._samples: deque[Sample] = deque()
        self._rows: deque[list[float]] = deque()
        self._served: deque[dict[str, Any]] = deque()
        self._checkpoints: list[Future[dict[str, Any]]] = []
        self._forgets: list[tuple[list[Sample], str | None, Future[dict[str, Any]]]] = []
        self._lock = threading.Lock()

    @property
    def samples(self) -> int:
        return len(self._samples)

    def pending(self) -> bool:
        return bool(
            self._samples or self._rows or self._served or self._checkpoints or self._forgets
        )

    def offer(self, samples: list[Sample]) -> bool:
        """Queue all of ``samples``, or none of them if they do not fit."""
        with self._lock:
            if len(self._samples) + len(samples) > self.capacity:
                return False
            self._samples.extend(samples)
            return True

    def take(self, limit: int) -> list[Sample]:
        with self._lock:
            count = min(limit, len(self._samples))
            return [self._samples.popleft() for _ in range(count)]

    def offer_rows(self, rows: list[list[float]]) -> int:
        """Queue served rows to adapt on, as many as fit; the number dropped."""
        return self._offer_some(self._rows, rows)

    def take_rows(self) -> list[list[float]]:
        with self._lock:
            taken, self._rows = list(self._rows), deque()
        return taken

    def offer_served(self, rows: list[dict[str, Any]]) -> int:
        """Queue answered rows kept for their late label, as many as fit; the number dropped."""
        return self._offer_some(self._served, rows)

    def _offer_some(self, queue: deque[Any], items: list[Any]) -> int:
        with self._lock:
            room = max(self.capacity - len(queue), 0)
            queue.extend(items[:room])
        return max(len(items) - room, 0)

    def take_served(self) -> list[dict[str, Any]]:
        with self._lock:
            taken, self._served = list(self._served), deque()
        return taken

    def request_checkpoint(self) -> Future[dict[str, Any]]:
        future: Future[dict[str, Any]] = Future()
        with self._lock:
            self._checkpoints.append(future)
        return future

    def request_forget(self, samples: list[Sample], expert: str | None) -> Future[dict[str, Any]]:
        """Samples to unlearn from an expert's rls head (POST /v1/forget)."""
        future: Future[dict[str, Any]] = Future()
        with self._lock:
            self._forgets.append((samples, expert, future))
        return future

    def take_forget_requests(
        self,
    ) -> list[tuple[list[Sample], str | None, Future[dict[str, Any]]]]:
        with self._lock:
            taken, self._forgets = self._forgets, []
        return [item for item in taken if item[2].set_running_or_notify_cancel()]

    def take_checkpoint_requests(self) -> list[Future[dict[str, Any]]]:
        with self._lock:
            taken, self._checkpoints = self._checkpoints, []
        return [f for f in taken if f.set_running_or_notify_cancel()]
