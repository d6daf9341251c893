"""Keeps every output in lists: for unit tests and learner-only benchmarks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from streamlearn.core.types import DeadLetter, Prediction

if TYPE_CHECKING:
    from streamlearn.core.protocols import Sink


class MemorySink:
    """Keeps every output in lists, for tests and learner-only benchmarks."""

    def __init__(self) -> None:
        self.predicted: list[Prediction] = []
        self.dead: list[DeadLetter] = []
        self.events: list[tuple[str, dict[str, Any]]] = []

    def predictions(self, items: list[Prediction]) -> None:
        self.predicted.extend(items)

    def dead_letters(self, items: list[DeadLetter]) -> None:
        self.dead.extend(items)

    def event(self, kind: str, payload: Mapping[str, Any]) -> None:
        self.events.append((kind, dict(payload)))

    @property
    def pending(self) -> int:
        return 0

    def retry(self) -> None:
        pass

    def flush(self, timeout_s: float) -> bool:
        return True

    def close(self) -> None:
        pass


if TYPE_CHECKING:  # mypy holds MemorySink to Sink (see streamlearn.core.protocols)

    def _conforms(sink: MemorySink) -> Sink:
        return sink
