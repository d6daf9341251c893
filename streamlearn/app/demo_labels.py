"""``streamlearn demo --late-labels``: the demo's labels sent late, on the labels topic.

Each labeled record goes out without its ``y``; the label follows on
``kafka.labels_topic`` 1-5 s later (``{"id", "y"}``), as a click or a chargeback would. The
daemon answers the sample at once, joins the label when it comes, scores the answer it
gave (served accuracy) and learns the sample then.
"""

from __future__ import annotations

import heapq
import json
import random
import threading
import time
from collections.abc import Iterator

from streamlearn.app.producer import connect

_DELAY_S = (1.0, 5.0)


class LateLabelFeed:
    """Takes the labels off records and sends each one later."""

    def __init__(self, bootstrap: str, topic: str, seed: int = 21) -> None:
        self.topic = topic
        self._producer = connect(bootstrap)
        self._rng = random.Random(seed)
        self._due: list[tuple[float, int, bytes]] = []
        self._lock = threading.Lock()
        self._count = 0
        self.sent = 0

    def strip(self, records: Iterator[bytes]) -> Iterator[bytes]:
        """The records as produced, labels held back (records that are not labeled JSON
        samples with an id pass as they are)."""
        for value in records:
            try:
                sample = json.loads(value)
            except ValueError:
                yield value
                continue
            if not isinstance(sample, dict) or "y" not in sample or "id" not in sample:
                yield value
                continue
            label = json.dumps({"id": sample["id"], "y": sample.pop("y")}).encode()
            with self._lock:
                self._count += 1
                due = time.monotonic() + self._rng.uniform(*_DELAY_S)
                heapq.heappush(self._due, (due, self._count, label))
            yield json.dumps(sample).encode()

    def run(self, stop: threading.Event) -> None:
        """Send labels as they fall due, until stopped."""
        while not stop.is_set():
            now = time.monotonic()
            with self._lock:
                ready = []
                while self._due and self._due[0][0] <= now:
                    ready.append(heapq.heappop(self._due)[2])
            for label in ready:
                self._producer.send(self.topic, value=label)
            self.sent += len(ready)
            stop.wait(0.05)
        self._producer.close(timeout=2)
