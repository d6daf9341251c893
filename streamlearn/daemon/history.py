"""Recent events kept in memory for the ``/v1`` endpoints; all of them also go to the events
topic, which is where a longer history lives."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Generic, Protocol, TypeVar


class Event(Protocol):
    """An event the ``/v1`` endpoints can list: a kind, the expert it concerns, a plain dict."""

    @property
    def kind(self) -> str: ...
    @property
    def expert(self) -> str: ...
    def to_dict(self) -> dict[str, Any]: ...


E = TypeVar("E", bound=Event)


class EventHistory(Generic[E]):
    """The latest ``size`` events; written by the learner only, read by request threads."""

    def __init__(self, size: int) -> None:
        self._events: deque[E] = deque(maxlen=size)
        self._lock = threading.Lock()  # readers copy while the learner appends

    def extend(self, events: list[E]) -> None:
        with self._lock:
            self._events.extend(events)

    def recent(
        self, limit: int | None = None, expert: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        with self._lock:
            events = list(self._events)
        chosen = [
            e
            for e in events
            if (expert is None or e.expert == expert) and (kind is None or e.kind == kind)
        ]
        if limit is not None:
            chosen = chosen[-limit:] if limit else []
        return [e.to_dict() for e in chosen]
