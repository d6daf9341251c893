"""Input sources: Kafka for production, memory for tests and learner-only benchmarks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamlearn.core.errors import SettingsError
from streamlearn.sources.base import AssignmentListener
from streamlearn.sources.memory import MemorySource
from streamlearn.sources.settings import CONFLUENT_MISSING, KafkaSettings

if TYPE_CHECKING:
    from streamlearn.core.protocols import Source


def open_source(
    settings: KafkaSettings, listener: AssignmentListener, extra_topics: tuple[str, ...] = ()
) -> Source:
    """The Kafka source ``kafka.client`` names, joined to its group; kafka-python's
    ``KafkaError`` when no broker answers, for either client (the daemon retries on it).

    The client libraries are imported here, so that importing streamlearn needs neither
    and the ``confluent`` extra stays optional. ``extra_topics`` (late labels) are read
    by the same consumer; kafka-python only (the settings refuse them on confluent).
    """
    if settings.client == "confluent":
        try:
            from streamlearn.sources.confluent import ConfluentSource
        except ModuleNotFoundError as exc:
            if exc.name != "confluent_kafka":
                raise
            raise SettingsError([f"kafka.client: {CONFLUENT_MISSING}"]) from None
        return ConfluentSource(settings, listener)
    from streamlearn.sources.kafka import KafkaSource

    return KafkaSource(settings, listener, extra_topics)


__all__ = ["AssignmentListener", "MemorySource", "open_source"]
