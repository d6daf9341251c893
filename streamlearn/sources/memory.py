"""An in-memory source with Kafka's semantics: partitions, offsets, seek, commit, pause."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from streamlearn.core.types import Offsets, Record, TopicPartition
from streamlearn.sources.base import AssignmentListener

if TYPE_CHECKING:
    from streamlearn.core.protocols import Source


class MemorySource:
    """Partitions held in lists, with Kafka's offsets, seeks, commits and pauses, for tests."""

    def __init__(
        self,
        topic: str,
        partitions: Sequence[Sequence[bytes]],
        listener: AssignmentListener | None = None,
    ) -> None:
        self.logs = {
            TopicPartition(topic, p): [Record(topic, p, o, v) for o, v in enumerate(values)]
            for p, values in enumerate(partitions)
        }
        self.positions: Offsets = {tp: 0 for tp in self.logs}
        self.committed_offsets: Offsets = {}
        self.commit_metadata: dict[TopicPartition, str] = {}
        self.paused = False
        self._metadata = ""  # close() commits under the last commit's, as Kafka's does
        self._listener = listener
        self._assigned = False

    def add_topic(self, topic: str, partitions: Sequence[Sequence[bytes]]) -> None:
        """Another topic read by the same consumer (late labels), before the first poll."""
        for p, values in enumerate(partitions):
            tp = TopicPartition(topic, p)
            self.logs[tp] = [Record(topic, p, o, v) for o, v in enumerate(values)]
            self.positions[tp] = 0

    def append(self, tp: TopicPartition, value: bytes) -> None:
        """One more record at the end of a partition, as a producer would."""
        log = self.logs[tp]
        log.append(Record(tp.topic, tp.partition, len(log), value))

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        if not self._assigned:
            self._assigned = True
            self.positions.update(self.committed_offsets)
            if self._listener is not None:
                self._listener.on_assigned(sorted(self.logs))
        if self.paused:
            return []
        out: list[Record] = []
        for tp, log in self.logs.items():
            start = self.positions[tp]
            chunk = log[start : start + max_records - len(out)]
            out.extend(chunk)
            self.positions[tp] = start + len(chunk)
        return out

    def seek(self, positions: Mapping[TopicPartition, int]) -> None:
        self.positions.update(positions)

    def commit(self, positions: Offsets, metadata: str = "") -> None:
        self._metadata = metadata
        self.committed_offsets.update(positions)
        self.commit_metadata.update(dict.fromkeys(positions, metadata))

    def committed(self, tp: TopicPartition) -> tuple[int, str] | None:
        if tp not in self.committed_offsets:
            return None
        return self.committed_offsets[tp], self.commit_metadata.get(tp, "")

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def highwater(self, tp: TopicPartition) -> int | None:
        return len(self.logs[tp]) if tp in self.logs else None

    def close(self, commit: Offsets | None = None) -> None:
        if commit:
            self.commit(commit, self._metadata)

    def exhausted(self) -> bool:
        return all(self.positions[tp] >= len(log) for tp, log in self.logs.items())


if TYPE_CHECKING:  # mypy holds MemorySource to Source (see streamlearn.core.protocols)

    def _conforms(source: MemorySource) -> Source:
        return source
