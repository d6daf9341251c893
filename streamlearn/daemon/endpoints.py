"""What the daemon talks to: its source, its sink and the serving snapshot publisher.

The source and the sink exist only once the daemon has connected (the broker may be down at
start); :class:`Endpoints` holds them for every part of the daemon, ``None`` until then.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from streamlearn.core.engine import Engine
from streamlearn.core.protocols import Sink, Source
from streamlearn.metrics import Metrics
from streamlearn.sources.base import AssignmentListener

SourceFactory = Callable[[AssignmentListener], Source]
SinkFactory = Callable[[Metrics], Sink]


class SnapshotPublisher(Protocol):
    """Publishes a serving snapshot of the engine (the default is a ``SnapshotBoard``)."""

    def publish_from(self, engine: Engine) -> object: ...


@dataclass(slots=True)
class Endpoints:
    """The source and the sink the daemon is connected to; ``None`` while it is not."""

    source: Source | None = None
    sink: Sink | None = None
