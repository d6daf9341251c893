"""Plain data that flows between the parts: records, samples, predictions, signals."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

#: A label as it arrives on the wire: an integer class, a string class, or a float target.
Label = int | str | float


class TopicPartition(NamedTuple):
    """A Kafka partition: topic and number."""

    topic: str
    partition: int


#: Next offset to read, per partition (Kafka's convention: last processed + 1).
Offsets = dict[TopicPartition, int]


@dataclass(frozen=True, slots=True)
class Record:
    """One message as it came from the source, before decoding."""

    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None
    timestamp_ms: int | None = None

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@dataclass(slots=True)
class Sample:
    """One decoded sample; ``y is None`` means unlabeled."""

    x: list[float]
    y: Label | None = None
    id: str | None = None
    task: str | None = None
    ts: float | None = None
    # Where a dead letter of this sample finds its original bytes: its position in a batch
    # record (None: the record's value is the sample), or its JSON as posted to /v1/learn.
    index: int | None = None
    raw: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Bytes that could not be used, the reason why, and where they came from."""

    value: bytes
    reason: str
    detail: str
    source: Record
    sample_index: int | None = None


@dataclass(slots=True)
class Prediction:
    """What the model said about one unlabeled sample."""

    id: str | None
    prediction: Label | None
    probabilities: dict[str, float] | None
    model_version: int
    expert: str = "0"
    variance: float | None = None  # predictive, where the expert's head gives one (Kalman)


@dataclass(slots=True)
class DecodedRecord:
    """A record's samples and dead letters; the offset is done once both are handled."""

    record: Record
    samples: list[Sample] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


class DriftSignal(enum.IntEnum):
    """A detector's verdict on one value: nothing, a warning, or a drift."""

    NONE = 0
    WARNING = 1
    DRIFT = 2


@dataclass(frozen=True, slots=True)
class DriftAlarm:
    """An event inside one batch given to a detector: its position and the signal there."""

    index: int
    signal: DriftSignal


@dataclass(frozen=True, slots=True)
class LoadedCheckpoint:
    """A checkpoint as read back, with the newer files that had to be passed over.

    ``state`` holds every key that was saved; a store may add its own (the file store adds
    ``format`` and ``created_at``).
    """

    path: Path
    state: dict[str, Any]
    skipped: list[Path]  # newer files that were torn or corrupt
