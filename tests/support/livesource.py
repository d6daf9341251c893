"""An in-memory source fed while the daemon runs; poll waits like Kafka when it is empty."""

from __future__ import annotations

import threading
import time
from typing import Any

from streamlearn.core.types import Record
from streamlearn.sources import MemorySource


class LiveSource(MemorySource):
    def __init__(self, topic: str = "in") -> None:
        super().__init__(topic, [[]])
        self.topic = topic
        self._lock = threading.Lock()

    def bind(self, listener: Any) -> LiveSource:
        self._listener = listener
        return self

    def add(self, values: list[bytes]) -> None:
        with self._lock:
            log = next(iter(self.logs.values()))
            start = len(log)
            log.extend(Record(self.topic, 0, start + i, v) for i, v in enumerate(values))

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        with self._lock:
            out = super().poll(max_records, timeout_s)
        if not out:
            time.sleep(min(timeout_s, 0.01))
        return out
