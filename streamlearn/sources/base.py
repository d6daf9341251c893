"""What a source tells its owner when partitions come and go."""

from __future__ import annotations

from typing import Protocol

from streamlearn.types import TopicPartition


class AssignmentListener(Protocol):
    def on_assigned(self, partitions: list[TopicPartition]) -> None: ...
    def on_revoked(self, partitions: list[TopicPartition]) -> None: ...
