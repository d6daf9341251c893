"""Kafka input on librdkafka (confluent-kafka, the optional ``confluent`` extra).

The same consumer group, offsets and promises as :class:`~streamlearn.sources.kafka.KafkaSource`;
``kafka.client: confluent`` selects it (:func:`streamlearn.sources.open_source`).

Threading: librdkafka runs the group protocol and the fetches on its own threads, but it
calls the rebalance, commit, error and log callbacks on the thread that polls, *inside*
``consume()`` or ``close()``. The learner thread is the only one that calls those, so the
listener runs parked at a safe point between micro-batches, as with kafka-python.

Seeks: inside the assignment callback the partitions are not assigned yet, so a seek there
would fail; the listener's seeks are collected and become the assignment's start offsets.
Right after an assignment a partition's fetcher may not have started (the group's commit
is still being read) and a seek fails with an "erroneous state": it is tried again before
each poll, and until it takes, that partition's records are dropped (they come from the
wrong offset).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as KafkaTP
from kafka.errors import KafkaTimeoutError

from streamlearn.core.logging import get_logger
from streamlearn.core.types import Offsets, Record, TopicPartition
from streamlearn.sources.base import AssignmentListener
from streamlearn.sources.connect import BOOTSTRAP_TIMEOUT_MS
from streamlearn.sources.settings import KafkaSettings

if TYPE_CHECKING:
    from streamlearn.core.protocols import Source

log = get_logger(__name__)

# Asked once per assignment, on the learner thread; past this the lineage's own offset is
# used (at worst records another member learned are learned here too, never lost).
_COMMITTED_TIMEOUT_S = 5.0
# librdkafka's "no offset" (OFFSET_INVALID): start at the group's commit, or by
# auto.offset.reset.
_NO_OFFSET = -1001


class ConfluentSource:
    """Polls a Kafka consumer group through librdkafka and commits offsets by hand.

    Only the learner thread may call it; the rebalance listener runs during its ``poll``.
    """

    def __init__(self, settings: KafkaSettings, listener: AssignmentListener) -> None:
        self._listener = listener
        self._topic = settings.input_topic
        self._metadata = ""
        self._assigning: dict[TopicPartition, int] | None = None  # seeks during on_assign
        self._pending: dict[TopicPartition, int] = {}  # seeks waiting for the fetcher
        self._consumer = _bootstrapped(_config(settings))
        try:
            self._consumer.subscribe(
                [settings.input_topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                # Evicted: the partitions already belong to someone else, so nothing may be
                # committed for them; the next checkpoint drops them. A revoke otherwise.
                on_lost=self._on_revoke,
            )
        except BaseException:
            self._consumer.close()
            raise

    # -- rebalance callbacks (inside consume() or close(), on the learner thread) ----------

    def _on_assign(self, consumer: Consumer, partitions: list[KafkaTP]) -> None:
        self._assigning = {}
        try:
            if partitions:
                self._listener.on_assigned(sorted(_ours(tp) for tp in partitions))
            for tp in partitions:
                tp.offset = self._assigning.get(_ours(tp), _NO_OFFSET)
        finally:
            self._assigning = None
        consumer.assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[KafkaTP]) -> None:
        gone = {_ours(tp) for tp in partitions}
        self._pending = {tp: o for tp, o in self._pending.items() if tp not in gone}
        if gone:
            self._listener.on_revoked(sorted(gone))

    # -- Source ----------------------------------------------------------------------------

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        if self._pending:
            self._seek(dict(self._pending))
        messages = self._consumer.consume(num_messages=max_records, timeout=timeout_s)
        records = _records(messages, self._topic)
        if len(records) < len(messages):
            for m in messages:
                if m.error() is not None:
                    log.warning("consume_failed", error=str(m.error()))
        if self._pending:  # read from before a seek that has not taken yet
            return [r for r in records if r.tp not in self._pending]
        return records

    def seek(self, positions: Mapping[TopicPartition, int]) -> None:
        if self._assigning is not None:
            self._assigning.update(positions)
        else:
            self._seek(positions)

    def _seek(self, positions: Mapping[TopicPartition, int]) -> None:
        for tp, offset in positions.items():
            try:
                self._consumer.seek(KafkaTP(tp.topic, tp.partition, offset))
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError._STATE:
                    raise
                self._pending[tp] = offset  # the fetcher has not started: again next poll
            else:
                self._pending.pop(tp, None)

    def commit(self, positions: Offsets, metadata: str = "") -> None:
        """Commit without blocking; the checkpoint, not Kafka, is the source of truth."""
        self._metadata = metadata  # close() commits under the same lineage
        if not positions:
            return
        try:
            self._consumer.commit(offsets=_kafka_offsets(positions, metadata), asynchronous=True)
        except KafkaException as exc:
            log.warning("commit_failed", error=str(exc))

    def committed(self, tp: TopicPartition) -> tuple[int, str] | None:
        """The group's commit for ``tp`` (blocks on the broker: learner thread only)."""
        try:
            (found,) = self._consumer.committed(
                [KafkaTP(tp.topic, tp.partition)], timeout=_COMMITTED_TIMEOUT_S
            )
        except KafkaException as exc:
            log.warning("committed_unknown", partition=f"{tp.topic}/{tp.partition}", error=str(exc))
            return None
        if found.error is not None or found.offset < 0:
            return None
        return int(found.offset), found.metadata or ""

    def pause(self) -> None:
        self._consumer.pause(self._consumer.assignment())

    def resume(self) -> None:
        # Resuming a partition that is not paused is a no-op, so all of the assignment is.
        self._consumer.resume(self._consumer.assignment())

    def assignment(self) -> list[TopicPartition]:
        return sorted(_ours(tp) for tp in self._consumer.assignment())

    def highwater(self, tp: TopicPartition) -> int | None:
        """End of the partition as of the last fetch (librdkafka's cached high watermark)."""
        try:
            _, high = self._consumer.get_watermark_offsets(
                KafkaTP(tp.topic, tp.partition), cached=True
            )
        except KafkaException:
            return None
        return None if high < 0 else int(high)

    def close(self, commit: Offsets | None = None) -> None:
        """Commit ``commit`` and leave the group. librdkafka's close waits for the commit
        (its failure is logged by the commit callback) and, with the broker gone, returns
        at once."""
        if commit:
            self.commit(commit, self._metadata)
        try:
            self._consumer.close()
        except KafkaException as exc:
            log.warning("consumer_close_failed", error=str(exc))


def _config(settings: KafkaSettings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "group.id": settings.group_id,
        "client.id": settings.client_id,
        "enable.auto.commit": False,
        "auto.offset.reset": settings.auto_offset_reset,
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": settings.heartbeat_interval_ms,
        "max.poll.interval.ms": settings.max_poll_interval_ms,
        "on_commit": _log_commit,
        "error_cb": _log_error,
        "logger": _Log(),  # librdkafka's own lines as structlog events, not raw stderr
    }
    if settings.group_instance_id is not None:
        config["group.instance.id"] = settings.group_instance_id
    return config


def _bootstrapped(config: dict[str, Any]) -> Consumer:
    """A consumer that has reached a broker. librdkafka connects in the background and
    would retry for ever; asking for the cluster's metadata makes an unreachable broker an
    error within ``BOOTSTRAP_TIMEOUT_MS``, raised as kafka-python's source raises it (its
    ``KafkaTimeoutError``: the daemon retries on kafka-python's errors), the consumer
    closed first: nothing is left running after a failed try (as in ``connect.py``)."""
    consumer = Consumer(config)
    try:
        consumer.list_topics(timeout=BOOTSTRAP_TIMEOUT_MS / 1000)
    except KafkaException as exc:
        consumer.close()
        raise KafkaTimeoutError(
            f"Unable to bootstrap from {config['bootstrap.servers']}: {exc.args[0]}"
        ) from None
    except BaseException:
        consumer.close()
        raise
    return consumer


def _records(messages: list[Message], topic: str) -> list[Record]:
    """The records of the messages without an error. The hot loop (about 2 us a record, half
    of it the Record): one topic is subscribed, so every message is of ``topic``, and a
    message without an error always has a partition and an offset (hence the ignores, not
    a check per record). Timestamp kind 0: the broker gave none."""
    return [
        Record(
            topic,
            m.partition(),  # type: ignore[arg-type]
            m.offset(),  # type: ignore[arg-type]
            m.value() or b"",
            m.key(),
            ts[1] if (ts := m.timestamp())[0] else None,
        )
        for m in messages
        if m.error() is None
    ]


def _ours(tp: KafkaTP) -> TopicPartition:
    return TopicPartition(tp.topic, tp.partition)


def _kafka_offsets(positions: Offsets, metadata: str) -> list[KafkaTP]:
    return [
        KafkaTP(tp.topic, tp.partition, offset, metadata=metadata)
        for tp, offset in positions.items()
    ]


def _log_commit(error: KafkaError | None, partitions: list[KafkaTP]) -> None:
    if error is not None:
        log.warning("commit_failed", error=str(error))


def _log_error(error: KafkaError) -> None:
    # librdkafka reconnects by itself: these say what it is riding out (a broker down).
    log.warning("kafka_client_error", error=str(error), fatal=error.fatal())


class _Log:
    """What librdkafka's ``logger`` setting calls: ``log(level, format, facility, ...)``."""

    def log(self, level: int, fmt: str, *args: Any) -> None:
        # A failed connection is also reported to error_cb (kafka_client_error): its FAIL
        # line, at ERROR and repeated on every reconnect, goes one level down to debug.
        if args and args[0] == "FAIL":
            level = logging.DEBUG
        log.log(level, "librdkafka", message=fmt % args)


if TYPE_CHECKING:  # mypy holds ConfluentSource to Source (see streamlearn.core.protocols)

    def _conforms(source: ConfluentSource) -> Source:
        return source
