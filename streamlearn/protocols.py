"""The boundaries between streamlearn's parts, as small ``typing.Protocol``s.

Every implementation keeps its state as a plain ``state_dict`` (tensors, numbers, strings,
lists and dicts) so checkpoints load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from torch import Tensor

from streamlearn.types import (
    DeadLetter,
    DriftAlarm,
    DriftSignal,
    Offsets,
    Prediction,
    Record,
)

StateDict = dict[str, Any]


class Source(Protocol):
    """Ordered, replayable, seekable input."""

    def poll(self, max_records: int, timeout_s: float) -> list[Record]: ...
    def seek(self, positions: Mapping[Any, int]) -> None: ...
    def commit(self, positions: Offsets, metadata: str = "") -> None: ...
    def committed(self, tp: Any) -> tuple[int, str] | None:
        """The group's committed offset of ``tp`` and its metadata; None if none or unknown."""
        ...

    def pause(self) -> None: ...
    def resume(self) -> None: ...


class Sink(Protocol):
    """Where predictions, events and dead letters go. ``flush`` is True once all landed.

    ``pending`` counts outputs that failed to land and wait for ``retry`` (or ``flush``) to
    send them again; the daemon pauses input while it is at ``kafka.max_pending_outputs``.
    """

    def predictions(self, items: list[Prediction]) -> None: ...
    def dead_letters(self, items: list[DeadLetter]) -> None: ...
    def event(self, kind: str, payload: Mapping[str, Any]) -> None: ...
    @property
    def pending(self) -> int: ...
    def retry(self) -> None: ...
    def flush(self, timeout_s: float) -> bool: ...
    def close(self) -> None: ...


class Expert(Protocol):
    """A batched learner: tensors in, tensors out."""

    def predict(self, x: Tensor) -> Tensor: ...
    def learn(self, x: Tensor, y: Tensor) -> Tensor: ...
    def state_dict(self) -> StateDict: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class DriftDetector(Protocol):
    """A sequential change test: feed it one value, get NONE, WARNING or DRIFT.

    Its state must be plain data, so it checkpoints with the rest.
    """

    def update(self, value: float) -> DriftSignal: ...
    def reset(self) -> None: ...
    def state_dict(self) -> StateDict: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class BatchDriftDetector(DriftDetector, Protocol):
    """What the engine needs: a batch at once, and how near the test is to an alarm.

    ``update_many`` gives the same signals as ``update`` value by value, reporting each
    DRIFT and each WARNING that follows a non-WARNING, by position in the batch.
    """

    def update_many(self, values: Sequence[float]) -> list[DriftAlarm]: ...
    @property
    def statistic(self) -> float: ...  # 0 calm, 1 at the drift threshold


class CheckpointStore(Protocol):
    """Durable, atomic, checksummed storage of the whole learning state."""

    def save(self, state: StateDict) -> Path: ...
    def load_latest(self) -> StateDict | None: ...
    def files(self) -> list[Path]: ...
