"""What every output sink must do: the daemon checkpoints only after a flush it trusts.

:func:`check_sink` holds a sink to these promises on a healthy path (its destination up):

- **idle**: a new sink has nothing pending, and ``flush`` with nothing sent is True;
- **landed**: once ``flush`` returned True, every prediction (by id), dead letter (by
  value) and event (by kind, with its payload) given so far has landed, once, and nothing
  else has; a second round lands beside the first;
- **pending**: ``pending`` is 0 once ``flush`` returned True;
- **retry**: ``retry`` with nothing pending lands nothing more;
- **close**: ``close`` after a flush raises nothing.

What landed is read back by a function the caller gives (a consumer of the topics for Kafka,
the lists of a memory sink), as :class:`Landed`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamlearn.core.protocols import Sink
from streamlearn.core.types import DeadLetter, Prediction, Record
from streamlearn.testing.common import promise


@dataclass
class Landed:
    """What has arrived where a sink writes: prediction ids, dead-letter values, events."""

    predictions: list[str | None] = field(default_factory=list)
    dead_letters: list[bytes] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass
class _Sent:
    predictions: list[Prediction] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def check_sink(sink: Sink, landed: Callable[[], Landed], timeout_s: float = 30.0) -> None:
    """Raise AssertionError naming the first broken promise of ``sink``.

    ``landed``: reads back everything that has arrived so far (nothing before the check).
    ``timeout_s``: what each ``flush`` is given. The check closes the sink.
    """
    sent = _Sent()
    with promise("idle"):
        assert sink.pending == 0, f"pending is {sink.pending} on a new sink"
        assert sink.flush(timeout_s), "flush with nothing sent returned False"
    for round_ in (1, 2):
        with promise("landed"):
            _send(sink, sent, round_)
            assert sink.flush(timeout_s), "flush returned False on a healthy path"
        with promise("pending"):
            assert sink.pending == 0, f"pending is {sink.pending} after flush returned True"
        with promise("landed"):
            _all_landed(landed(), sent)
    with promise("retry"):
        sink.retry()
        assert sink.flush(timeout_s), "flush returned False on a healthy path"
        _all_landed(landed(), sent)
    with promise("close"):
        sink.close()


def _send(sink: Sink, sent: _Sent, round_: int) -> None:
    predictions = [Prediction(f"p{round_}-{i}", i % 2, {"0": 0.5, "1": 0.5}, 7) for i in range(3)]
    source = Record("in", 0, round_, b"source")
    letters = [
        DeadLetter(f"bad {round_}-{i}".encode(), "invalid_json", "check_sink", source)
        for i in range(2)
    ]
    events: list[tuple[str, dict[str, Any]]] = [
        ("drift", {"expert": "0", "round": round_}),
        ("spawn", {"expert": str(round_)}),
    ]
    sink.predictions(predictions)
    sink.dead_letters(letters)
    for kind, payload in events:
        sink.event(kind, payload)
    sent.predictions += predictions
    sent.dead_letters += letters
    sent.events += events


def _all_landed(landed: Landed, sent: _Sent) -> None:
    _same_items("predictions", landed.predictions, [p.id for p in sent.predictions])
    _same_items("dead letters", landed.dead_letters, [d.value for d in sent.dead_letters])
    unmatched = list(landed.events)
    for kind, given in sent.events:
        found = [
            i for i, (k, payload) in enumerate(unmatched) if k == kind and _holds(payload, given)
        ]
        assert found, f"event {kind!r} {given} not landed with its payload"
        unmatched.pop(found[0])
    assert not unmatched, f"events landed that were not sent (or twice): {unmatched}"


def _holds(payload: dict[str, Any], given: dict[str, Any]) -> bool:
    return all(key in payload and payload[key] == value for key, value in given.items())


def _same_items(what: str, got: Sequence[Hashable], want: Sequence[Hashable]) -> None:
    missing, extra = Counter(want) - Counter(got), Counter(got) - Counter(want)
    assert not missing, f"{what} not landed: {_listed(missing)}"
    assert not extra, f"{what} landed that were not sent (or twice): {_listed(extra)}"


def _listed(items: Counter[Hashable]) -> str:
    return "[" + ", ".join(sorted(map(repr, items.elements()))) + "]"


__all__ = ["Landed", "check_sink"]
