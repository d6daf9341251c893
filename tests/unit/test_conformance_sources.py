"""check_source passes MemorySource and rejects a twin of it that breaks exactly one promise,
naming that promise. (KafkaSource: tests/integration/test_conformance_kafka.py.)"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from streamlearn.core.types import Offsets, Record, TopicPartition
from streamlearn.sources import MemorySource
from streamlearn.testing import check_source

VALUES = [[b"a", b"b", b"c", b"d", b"e", b"f"], [b"x", b"y"], []]
LOGS = {TopicPartition("in", p): values for p, values in enumerate(VALUES)}


def group_of(cls: type[MemorySource]) -> Callable[[], MemorySource]:
    """Sources of one consumer group: they share its commits, as Kafka's members do."""
    offsets: Offsets = {}
    metadata: dict[TopicPartition, str] = {}

    def make() -> MemorySource:
        source = cls("in", VALUES)
        source.committed_offsets, source.commit_metadata = offsets, metadata
        return source

    return make


def test_memory_source_keeps_every_promise() -> None:
    check_source(group_of(MemorySource), LOGS, timeout_s=2.0)


class Greedy(MemorySource):
    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        return super().poll(max_records * 2, timeout_s)


class Skips(MemorySource):
    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        records = super().poll(max_records, timeout_s)
        for tp in {r.tp for r in records}:
            self.positions[tp] += 1  # off by one: a record is never read
        return records


class StaleHighwater(MemorySource):
    def highwater(self, tp: TopicPartition) -> int | None:
        end = super().highwater(tp)
        return None if end is None else end - 1


class DeafSeek(MemorySource):
    def seek(self, positions: Mapping[TopicPartition, int]) -> None:
        pass


class ForgetfulCommit(MemorySource):
    def committed(self, tp: TopicPartition) -> tuple[int, str] | None:
        found = super().committed(tp)
        return None if found is None else (found[0], "")


class LeakyPause(MemorySource):
    def pause(self) -> None:
        pass


class StuckPause(MemorySource):
    def resume(self) -> None:
        pass


class DropsCloseCommit(MemorySource):
    def close(self, commit: Offsets | None = None) -> None:
        pass


class ClosesWithoutMetadata(MemorySource):  # what MemorySource did before the check
    def close(self, commit: Offsets | None = None) -> None:
        if commit:
            self.commit(commit)


TWINS: list[tuple[type[MemorySource], str]] = [
    (Greedy, r"^poll: 6 records for max_records=3"),
    (Skips, r"^poll: in/0: read 5 records at offsets \[0, 1, 2, 4, 5\]"),
    (StaleHighwater, r"^highwater: highwater\(in/0\) is 5, the end is 6"),
    (DeafSeek, r"^seek: after seek"),
    (ForgetfulCommit, r"^commit: committed\(in/0\) is \(1, ''\)"),
    (LeakyPause, r"^pause: \d+ records polled while paused"),
    (StuckPause, r"^pause: after resume read nothing"),
    (DropsCloseCommit, r"^close: after close\(commit=\.\.\.\) the next source's committed"),
    (ClosesWithoutMetadata, r"^close: .* is \(3, ''\)"),
]


@pytest.mark.parametrize("twin, promise", TWINS, ids=[twin.__name__ for twin, _ in TWINS])
def test_a_twin_that_breaks_one_promise_is_rejected_for_it(
    twin: type[MemorySource], promise: str
) -> None:
    with pytest.raises(AssertionError, match=promise):
        check_source(group_of(twin), LOGS, timeout_s=0.5)
