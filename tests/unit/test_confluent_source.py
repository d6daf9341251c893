"""``kafka.client: confluent`` without a broker: the choice, the missing extra, a failed
bootstrap. (On a broker: tests/integration/test_conformance_kafka.py and the reliability
suite's confluent variants.)"""

from __future__ import annotations

import os
import sys

import pytest
from kafka.errors import KafkaError

from streamlearn.app.embedded import free_port
from streamlearn.core.errors import SettingsError
from streamlearn.core.types import TopicPartition
from streamlearn.settings import KafkaSettings, load_settings
from streamlearn.sources import open_source


class NoListener:
    def on_assigned(self, partitions: list[TopicPartition]) -> None:
        pass

    def on_revoked(self, partitions: list[TopicPartition]) -> None:
        pass


@pytest.fixture
def without_confluent(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if confluent-kafka were not installed (None in sys.modules fails its import)."""
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)
    monkeypatch.delitem(sys.modules, "streamlearn.sources.confluent", raising=False)


def test_kafka_python_is_the_default() -> None:
    assert load_settings().kafka.client == "kafka-python"


@pytest.mark.usefixtures("without_confluent")
def test_a_missing_extra_is_a_settings_error_naming_the_install() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(kafka={"client": "confluent"})
    assert caught.value.problems == [
        "kafka.client: Value error, confluent needs `pip install streamlearn[confluent]` "
        "(got 'confluent')"
    ]


@pytest.mark.usefixtures("without_confluent")
def test_open_source_says_the_same_to_an_embedder_who_skipped_validation() -> None:
    settings = KafkaSettings.model_construct(client="confluent")
    with pytest.raises(SettingsError, match=r"pip install streamlearn\[confluent\]"):
        open_source(settings, NoListener())


def _threads_and_descriptors() -> tuple[int, int]:
    # librdkafka's threads are native ones: threading.active_count() does not see them.
    return len(os.listdir("/proc/self/task")), len(os.listdir("/proc/self/fd"))


@pytest.mark.slow
def test_failed_bootstraps_raise_kafka_error_and_leave_nothing_running() -> None:
    """The daemon retries its connection while the broker is down: each failed try must
    raise what it retries on (kafka-python's KafkaError) and close its consumer."""
    settings = KafkaSettings(client="confluent", bootstrap_servers=f"127.0.0.1:{free_port()}")
    counts = []
    for _ in range(3):
        with pytest.raises(KafkaError, match="Unable to bootstrap"):
            open_source(settings, NoListener())
        counts.append(_threads_and_descriptors())
    assert counts[1] == counts[0] and counts[2] == counts[0], counts
