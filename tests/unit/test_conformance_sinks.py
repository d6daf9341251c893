"""check_sink passes MemorySink and rejects a twin of it that breaks exactly one promise,
naming that promise. (KafkaSink: tests/integration/test_conformance_kafka.py.)"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from streamlearn.core.types import DeadLetter, Prediction
from streamlearn.sinks import MemorySink
from streamlearn.testing import Landed, check_sink


def landed(sink: MemorySink) -> Landed:
    return Landed([p.id for p in sink.predicted], [d.value for d in sink.dead], list(sink.events))


def test_memory_sink_keeps_every_promise() -> None:
    sink = MemorySink()
    check_sink(sink, lambda: landed(sink))


class Pessimist(MemorySink):
    def flush(self, timeout_s: float) -> bool:
        return False


class LosesDeadLetters(MemorySink):
    def dead_letters(self, items: list[DeadLetter]) -> None:
        pass


class DropsPayloads(MemorySink):
    def event(self, kind: str, payload: Mapping[str, Any]) -> None:
        super().event(kind, {})


class LazyFlush(MemorySink):
    """Lands predictions only on ``retry``, yet says they landed on ``flush``."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[Prediction] = []

    def predictions(self, items: list[Prediction]) -> None:
        self.waiting += items

    def retry(self) -> None:
        super().predictions(self.waiting)
        self.waiting = []


class StuckPending(MemorySink):
    @property
    def pending(self) -> int:
        return int(bool(self.predicted))


class EchoingRetry(MemorySink):
    def retry(self) -> None:
        self.predicted += self.predicted[-1:]


class ClosesLoudly(MemorySink):
    def close(self) -> None:
        raise RuntimeError("the producer was closed already")


TWINS: list[tuple[type[MemorySink], str]] = [
    (Pessimist, r"^idle: flush with nothing sent returned False"),
    (LosesDeadLetters, r"^landed: dead letters not landed: \[b'bad 1-0', b'bad 1-1'\]"),
    (DropsPayloads, r"^landed: event 'drift' \{'expert': '0', 'round': 1\} not landed"),
    (LazyFlush, r"^landed: predictions not landed: \['p1-0', 'p1-1', 'p1-2'\]"),
    (StuckPending, r"^pending: pending is 1 after flush returned True"),
    (EchoingRetry, r"^retry: predictions landed that were not sent \(or twice\): \['p2-2'\]"),
    (ClosesLoudly, r"^close: raised RuntimeError: the producer was closed already"),
]


@pytest.mark.parametrize("twin, promise", TWINS, ids=[twin.__name__ for twin, _ in TWINS])
def test_a_twin_that_breaks_one_promise_is_rejected_for_it(
    twin: type[MemorySink], promise: str
) -> None:
    sink = twin()
    with pytest.raises(AssertionError, match=promise):
        check_sink(sink, lambda: landed(sink), timeout_s=0.5)
