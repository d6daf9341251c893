"""Decoded records waiting to be learned, and the micro-batch rule.

A batch is due when ``max_batch`` samples wait or the oldest has waited ``max_wait_ms``.
Records are taken whole, so a record's offset is marked done only once all of its samples
(and dead letters) have been handled.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

from streamlearn.core.types import DecodedRecord, TopicPartition


class InputBuffer:
    """Decoded records waiting for the next micro-batch, and when that batch is due.

    Holds whole records, so an offset is done only once every sample of its record is.
    """

    def __init__(
        self, max_batch: int, max_wait_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._items: deque[tuple[float, DecodedRecord]] = deque()
        self.samples = 0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, records: Iterable[DecodedRecord]) -> None:
        now = self._clock()
        for record in records:
            self._items.append((now, record))
            self.samples += len(record.samples)

    def due(self, flush: bool = False) -> bool:
        if not self._items:
            return False
        return flush or self.samples >= self.max_batch or self.wait_left() == 0.0

    def wait_left(self) -> float:
        """Seconds until the oldest record's wait is up (0 when due, max_wait when empty)."""
        if not self._items:
            return self.max_wait_s
        return max(0.0, self._items[0][0] + self.max_wait_s - self._clock())

    def take(self) -> list[DecodedRecord]:
        """Whole records from the front, up to ``max_batch`` samples (at least one record)."""
        taken: list[DecodedRecord] = []
        count = 0
        while self._items and (
            not taken or count + len(self._items[0][1].samples) <= self.max_batch
        ):
            record = self._items.popleft()[1]
            taken.append(record)
            count += len(record.samples)
        self.samples -= count
        return taken

    def drop(self, partitions: Iterable[TopicPartition]) -> int:
        """Forget records of partitions this process no longer owns; returns how many."""
        gone = set(partitions)
        keep = deque(item for item in self._items if item[1].record.tp not in gone)
        dropped = len(self._items) - len(keep)
        self._items = keep
        self.samples = sum(len(item[1].samples) for item in keep)
        return dropped
