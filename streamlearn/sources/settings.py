"""The ``kafka`` settings section: brokers, the consumer group, the topics, flow control."""

from __future__ import annotations

from importlib.util import find_spec
from typing import Literal

from pydantic import Field, field_validator, model_validator

from streamlearn.core.section import Section

CONFLUENT_MISSING = "confluent needs `pip install streamlearn[confluent]`"


class KafkaSettings(Section):
    """Brokers, the consumer group, and the input and output topics."""

    # The input's client library. kafka-python (pure Python) is the default and the tested
    # baseline; confluent (librdkafka, the optional extra) polls 2-3x the records per
    # second (docs/benchmarks.md); end to end learning and decoding stay the bounds, so the
    # gain there is smaller. Outputs always go through kafka-python.
    client: Literal["kafka-python", "confluent"] = "kafka-python"
    bootstrap_servers: str = "localhost:9092"
    group_id: str = "streamlearn"
    client_id: str = "streamlearn"
    input_topic: str = "streamlearn.samples"
    predictions_topic: str = "streamlearn.predictions"
    events_topic: str = "streamlearn.events"
    dlq_topic: str = "streamlearn.dlq"
    # Late labels ({"id": ..., "y": ...}), read beside the input when labels.enabled.
    labels_topic: str = "streamlearn.labels"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    # A group forms only after about one session timeout, so shorter is faster to start;
    # too short and a GC pause or a slow broker gets the member evicted.
    session_timeout_ms: int = Field(10_000, ge=1_000)
    heartbeat_interval_ms: int = Field(3_000, ge=100)
    max_poll_interval_ms: int = Field(300_000, ge=1_000)
    max_poll_records: int = Field(2_000, ge=1)
    poll_timeout_ms: int = Field(100, ge=0)
    # Above this many decoded-but-unlearned samples the partitions are paused (polling
    # goes on, so the member stays in its group); they resume below half of it.
    max_buffered_samples: int = Field(20_000, ge=1)
    publish_predictions: bool = True
    # How long the sinks may take to land their records before a checkpoint is skipped.
    flush_timeout_s: float = Field(10.0, gt=0)
    # Largest output message (the producer's max_request_size; the broker's message.max.bytes
    # is 1 MiB by default). A bigger one can never land: it is cut down or dropped, counted,
    # and never retried.
    max_message_bytes: int = Field(1_048_576, ge=1_024)
    # Outputs that failed to land and wait to be sent again (an output topic missing, a broker
    # refusing). Above this input is paused until they land: memory stays bounded and no
    # output is dropped.
    max_pending_outputs: int = Field(10_000, ge=1)
    # Static group membership (KIP-345): a member that restarts under the same id within the
    # session timeout gets its partitions back without a rebalance. Unique per replica (the
    # Kubernetes StatefulSet sets it to the pod name); null = dynamic membership.
    group_instance_id: str | None = Field(None, min_length=1, max_length=249)

    @field_validator("client")
    @classmethod
    def _client_installed(cls, client: str) -> str:
        # Refused with the other settings, before the daemon starts, not at its first connect.
        if client == "confluent" and find_spec("confluent_kafka") is None:
            raise ValueError(CONFLUENT_MISSING)
        return client

    @model_validator(mode="after")
    def _heartbeat_below_session(self) -> KafkaSettings:
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError(
                "heartbeat_interval_ms must be at most a third of session_timeout_ms "
                f"(got {self.heartbeat_interval_ms} and {self.session_timeout_ms})"
            )
        return self
