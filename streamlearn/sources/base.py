"""What a source tells its owner when partitions come and go."""

from __future__ import annotations

from typing import Protocol

from streamlearn.core.types import TopicPartition


class AssignmentListener(Protocol):
    """Told when the source gains or loses partitions.

    From Kafka it is called on the consumer's IO thread while the learner waits in ``poll``:
    it must not call blocking consumer methods.
    """

    def on_assigned(self, partitions: list[TopicPartition]) -> None: ...
    def on_revoked(self, partitions: list[TopicPartition]) -> None: ...
