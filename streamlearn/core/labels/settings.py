"""The ``labels`` settings section: late labels joined by id, and the served-model guard."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from streamlearn.core.section import Section


class GuardSettings(Section):
    """Rolls the served model back when the live accuracy of what it served falls below
    its own band (classification only)."""

    enabled: bool = False
    # Joins in the recent window the guard judges; its accuracy's upper confidence bound
    # must fall below the good level minus ``margin`` to roll back.
    window: int = Field(100, ge=10)
    # How far below the good level (accuracy points, 0-1) counts as damage, beyond the
    # window's own noise (a 95% Wilson bound).
    margin: float = Field(0.05, ge=0, le=1)
    # A state becomes the rollback target once this many joins after it scored healthy:
    # a delayed label shows damage late, so a state is good only once its answers were.
    confirm_joins: int = Field(200, ge=10)
    # After a rollback the learner holds (learns no joined label) until live accuracy is
    # back in band, or at most this many joins: then the change is taken as real (drift,
    # not poison) and learning resumes from the rolled-back state.
    max_hold_joins: int = Field(3_000, ge=0)


_SAME_SHAPE_FIELDS = frozenset({"learning_rate", "momentum", "weight_decay", "seed"})


class ChallengerSettings(Section):
    """A shadow model scored against the served one on the same delayed labels, promoted
    when better by ``margin`` with ``confidence`` (classification only)."""

    enabled: bool = False
    # model.* fields the challenger changes. Only those that keep the learned state's
    # shape (learning_rate, momentum, weight_decay, seed): a promotion moves the
    # challenger's state into the champion, which must take it.
    model: dict[str, Any] = Field(default_factory=lambda: {"learning_rate": 1e-2})
    # Paired joins per test; the test is taken once per full block (fixed looks).
    window: int = Field(500, ge=50)
    # How much better (accuracy points, 0-1) the challenger must be, beyond the noise.
    margin: float = Field(0.01, ge=0, le=1)
    # One-sided confidence of "better by margin" (the lower bound's level).
    confidence: float = Field(0.95, gt=0.5, lt=1)

    @field_validator("model")
    @classmethod
    def _same_shape(cls, model: dict[str, Any]) -> dict[str, Any]:
        if other := sorted(set(model) - _SAME_SHAPE_FIELDS):
            raise ValueError(
                f"labels.challenger.model: {', '.join(other)} would change the learned "
                f"state's shape; allowed: {', '.join(sorted(_SAME_SHAPE_FIELDS))}"
            )
        return model


class LabelsSettings(Section):
    """Late labels: a topic of ``{"id", "y"}`` records joined to unlabeled samples by id."""

    # Off by default: on, the consumer also reads kafka.labels_topic.
    enabled: bool = False
    # How long (in event time: Kafka record timestamps) an unlabeled sample waits for its
    # label, and an early label for its sample; then they are counted as expired/unknown.
    ttl_s: float = Field(3_600.0, gt=0)
    # Unlabeled samples kept waiting for a label; past it the oldest is evicted (counted).
    max_pending: int = Field(100_000, ge=1)
    # Labels kept waiting for their sample (arrived first); past it the oldest is evicted.
    max_waiting: int = Field(100_000, ge=1)
    # Served inference requests that carry an id (the v2 request "id") are kept for their
    # late label like unlabeled samples from Kafka: the serving process hands the learner
    # each row's id, input and answer (best effort: past serve.learn_queue_samples waiting,
    # rows are dropped and counted, never refused). A request of n > 1 rows keeps its rows
    # as "<id>/0" .. "<id>/<n-1>".
    served_ids: bool = True
    # Windows (in joins) of streamlearn_served_accuracy.
    windows: list[int] = Field(default_factory=lambda: [100, 1000])
    guard: GuardSettings = Field(default_factory=GuardSettings)
    challenger: ChallengerSettings = Field(default_factory=ChallengerSettings)

    @field_validator("windows")
    @classmethod
    def _windows_positive(cls, windows: list[int]) -> list[int]:
        if not windows or any(w < 1 for w in windows):
            raise ValueError("labels.windows: one or more window sizes >= 1")
        return sorted(set(windows))
