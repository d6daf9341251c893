"""Kafka input on kafka-python: a consumer group with manual offsets.

Threading (kafka-python >= 3): group membership runs on the client's IO thread, and the
rebalance listener is called on that thread *while the calling thread is blocked inside*
``poll()`` or ``close()``. The learner thread is the only one that calls those, so when the
listener runs the learner is parked at a safe point between micro-batches, and the listener
may read and checkpoint learning state. It must not call blocking consumer methods (they
would wait on the very thread that runs it), which is why commits from it are asynchronous.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kafka import KafkaConsumer, OffsetAndMetadata
from kafka import TopicPartition as KafkaTP
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError

from streamlearn.core.logging import get_logger
from streamlearn.core.types import Offsets, Record, TopicPartition
from streamlearn.sources.base import AssignmentListener
from streamlearn.sources.connect import BOOTSTRAP_TIMEOUT_MS, closing_on_failure
from streamlearn.sources.settings import KafkaSettings

if TYPE_CHECKING:
    from streamlearn.core.protocols import Source

log = get_logger(__name__)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, listener: AssignmentListener) -> None:
        self._listener = listener

    def on_partitions_revoked(self, revoked: set[KafkaTP]) -> None:
        if revoked:
            self._listener.on_revoked(sorted(_ours(tp) for tp in revoked))

    def on_partitions_assigned(self, assigned: set[KafkaTP]) -> None:
        if assigned:
            self._listener.on_assigned(sorted(_ours(tp) for tp in assigned))

    def on_partitions_lost(self, lost: set[KafkaTP]) -> None:
        # Evicted: the partitions already belong to someone else, so nothing may be committed
        # for them; the next checkpoint drops them. Same handling as a revoke otherwise.
        self.on_partitions_revoked(lost)


# Asked once per assignment, on the learner thread; past this the lineage's own offset is
# used (at worst records another member learned are learned here too, never lost).
_COMMITTED_TIMEOUT_MS = 5_000


class KafkaSource:
    """Polls a Kafka consumer group and commits offsets by hand.

    Only the learner thread may call it; the rebalance listener runs during its ``poll``.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        listener: AssignmentListener,
        extra_topics: tuple[str, ...] = (),
    ) -> None:
        """``extra_topics``: read beside the input by the same consumer (late labels)."""
        self._settings = settings
        self._metadata = ""
        with closing_on_failure() as client_factory:
            self._consumer = KafkaConsumer(
                bootstrap_servers=settings.bootstrap_servers.split(","),
                group_id=settings.group_id,
                group_instance_id=settings.group_instance_id,
                client_id=settings.client_id,
                enable_auto_commit=False,
                auto_offset_reset=settings.auto_offset_reset,
                session_timeout_ms=settings.session_timeout_ms,
                heartbeat_interval_ms=settings.heartbeat_interval_ms,
                max_poll_interval_ms=settings.max_poll_interval_ms,
                max_poll_records=settings.max_poll_records,
                bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
                kafka_client=client_factory,
            )
        self._consumer.subscribe(
            [settings.input_topic, *extra_topics], listener=_Rebalance(listener)
        )

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        return [
            Record(r.topic, r.partition, r.offset, r.value or b"", r.key, r.timestamp)
            for records in batches.values()
            for r in records
        ]

    def seek(self, positions: Mapping[TopicPartition, int]) -> None:
        for tp, offset in positions.items():
            self._consumer.seek(KafkaTP(tp.topic, tp.partition), offset)

    def commit(self, positions: Offsets, metadata: str = "") -> None:
        """Commit without blocking; the checkpoint, not Kafka, is the source of truth."""
        self._metadata = metadata  # close() commits under the same lineage
        if positions:
            self._consumer.commit_async(_kafka_offsets(positions, metadata), callback=_log_commit)

    def commit_sync(self, positions: Offsets, timeout_s: float) -> bool:
        try:
            self._consumer.commit(
                _kafka_offsets(positions, self._metadata), timeout_ms=int(timeout_s * 1000)
            )
        except KafkaError as exc:
            log.warning("commit_failed", error=str(exc))
            return False
        return True

    def committed(self, tp: TopicPartition) -> tuple[int, str] | None:
        """The group's commit for ``tp`` (blocks on the broker: learner thread only)."""
        try:
            found = self._consumer.committed(
                KafkaTP(tp.topic, tp.partition), metadata=True, timeout_ms=_COMMITTED_TIMEOUT_MS
            )
        except KafkaError as exc:
            log.warning("committed_unknown", partition=f"{tp.topic}/{tp.partition}", error=str(exc))
            return None
        return None if found is None else (int(found.offset), str(found.metadata or ""))

    def pause(self) -> None:
        self._consumer.pause(*self._consumer.assignment())

    def resume(self) -> None:
        self._consumer.resume(*self._consumer.paused())

    def assignment(self) -> list[TopicPartition]:
        return sorted(_ours(tp) for tp in self._consumer.assignment())

    def highwater(self, tp: TopicPartition) -> int | None:
        """End of the partition as of the last fetch (ListOffsets is unreliable on tansu)."""
        value = self._consumer.highwater(KafkaTP(tp.topic, tp.partition))
        return None if value is None else int(value)

    def close(self, commit: Offsets | None = None, timeout_s: float = 3.0) -> None:
        if commit:
            self.commit_sync(commit, timeout_s)
        try:
            self._consumer.close(autocommit=False, timeout_ms=int(timeout_s * 1000))
        except KafkaError as exc:
            log.warning("consumer_close_failed", error=str(exc))


def _ours(tp: KafkaTP) -> TopicPartition:
    return TopicPartition(tp.topic, tp.partition)


def _kafka_offsets(positions: Offsets, metadata: str) -> dict[KafkaTP, OffsetAndMetadata]:
    return {
        KafkaTP(tp.topic, tp.partition): OffsetAndMetadata(offset, metadata, -1)
        for tp, offset in positions.items()
    }


def _log_commit(offsets: Any, response: Any) -> None:
    if isinstance(response, Exception):
        log.warning("commit_failed", error=str(response))


if TYPE_CHECKING:  # mypy holds KafkaSource to Source (see streamlearn.core.protocols)

    def _conforms(source: KafkaSource) -> Source:
        return source
