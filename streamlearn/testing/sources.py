"""What every input source must do: the daemon's offsets and restarts rely on all of it.

:func:`check_source` holds a source to these promises, over partitions whose records it is
told:

- **poll**: ``poll(max_records, ...)`` never returns more than ``max_records``; polling
  until nothing more comes returns every record once, each partition's in offset order
  from 0, with its topic, partition, offset and value;
- **highwater**: once a partition has been read to its end, ``highwater`` is its end offset;
- **seek**: after ``seek({tp: k})`` the polls return that partition's records again from
  offset ``k``, the same ones;
- **commit**: ``commit(positions, metadata)`` is read back by ``committed(tp)`` as
  ``(offset, metadata)``, the newest commit winning (at once, or within a few polls for a
  source whose commits complete asynchronously, as Kafka's do);
- **pause**: after ``pause`` polls return nothing; after ``resume`` they go on where the
  partitions were;
- **close**: ``close(commit=positions)`` commits them under the last commit's metadata: a
  source made next (the same group) reports them from ``committed`` and its polls start
  there.

The metadata is compared only where the medium keeps it (``metadata=True``): tansu 0.6, the
embedded broker of the tests and the demo, stores a commit's offset but drops its metadata.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from streamlearn.core.protocols import Source
from streamlearn.core.types import Offsets, Record, TopicPartition
from streamlearn.testing.common import promise

MAX_RECORDS = 3  # small, so that reading a partition takes several polls
POLL_S = 0.2  # each poll's own timeout
QUIET_POLLS = 3  # empty polls in a row that mean "nothing more comes"

Logs = Mapping[TopicPartition, Sequence[bytes]]


def check_source(
    make: Callable[[], Source], logs: Logs, timeout_s: float = 30.0, metadata: bool = True
) -> None:
    """Raise AssertionError naming the first broken promise of the sources ``make`` builds.

    ``logs``: each partition the source reads and the values it holds from offset 0 (one
    partition of at least 4 records at least). Every call of ``make`` builds a source of the
    same consumer group, which has committed nothing before the first. ``timeout_s``: how
    long any one promise may take to show (a Kafka group needs seconds to form).
    ``metadata``: False where the broker drops commit metadata (commits are then compared by
    offset alone). The check closes every source it makes.
    """
    tp = max(logs, key=lambda p: len(logs[p]))
    assert len(logs[tp]) >= 4, "check_source needs a partition of at least 4 records"
    source = make()
    try:
        with promise("poll"):
            _reads_every_record_once(source, logs, timeout_s)
        with promise("highwater"):
            for p, values in logs.items():
                end = source.highwater(p)
                assert end == len(values), (
                    f"highwater({_name(p)}) is {end}, the end is {len(values)}"
                )
        with promise("seek"):
            _seek_replays(source, logs, tp, timeout_s)
        with promise("commit"):
            _commits_round_trip(source, tp, timeout_s, metadata)
        with promise("pause"):
            _pause_holds_records_back(source, logs, tp, timeout_s)
        positions = {p: len(values) for p, values in logs.items()}
        positions[tp] = len(logs[tp]) // 2
    except BaseException:
        source.close()
        raise
    with promise("close"):
        source.close(commit=positions)
        _next_source_starts_there(make, logs, tp, positions, timeout_s, metadata)


def _poll_until(source: Source, want: int, timeout_s: float) -> list[Record]:
    """Poll until ``want`` records came, or ``timeout_s`` passed; every poll within limits."""
    out: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < want and time.monotonic() < deadline:
        records = source.poll(MAX_RECORDS, POLL_S)
        assert len(records) <= MAX_RECORDS, f"{len(records)} records for max_records=3"
        out += records
    return out


def _quiet(source: Source) -> list[Record]:
    return [r for _ in range(QUIET_POLLS) for r in source.poll(MAX_RECORDS, POLL_S)]


def _by_partition(records: Sequence[Record]) -> dict[TopicPartition, list[tuple[int, bytes]]]:
    out: dict[TopicPartition, list[tuple[int, bytes]]] = {}
    for record in records:
        out.setdefault(record.tp, []).append((record.offset, record.value))
    return out


def _expected(
    logs: Logs, start: Mapping[TopicPartition, int]
) -> dict[TopicPartition, list[tuple[int, bytes]]]:
    return {
        p: list(enumerate(values))[start.get(p, 0) :]
        for p, values in logs.items()
        if start.get(p, 0) < len(values)
    }


def _reads_every_record_once(source: Source, logs: Logs, timeout_s: float) -> None:
    total = sum(len(values) for values in logs.values())
    read = _poll_until(source, total, timeout_s) + _quiet(source)
    got, want = _by_partition(read), _expected(logs, {})
    for p in sorted(want.keys() | got.keys()):
        assert got.get(p) == want.get(p), (
            f"{_name(p)}: read {_show(got.get(p))}, the partition holds {_show(want.get(p))}"
        )


def _seek_replays(source: Source, logs: Logs, tp: TopicPartition, timeout_s: float) -> None:
    start = len(logs[tp]) // 2
    source.seek({tp: start})
    read = _poll_until(source, len(logs[tp]) - start, timeout_s) + _quiet(source)
    got = _by_partition(read)
    want = {tp: list(enumerate(logs[tp]))[start:]}
    assert got == want, (
        f"after seek({_name(tp)}: {start}) read {_show_all(got)}, not {_show_all(want)}"
    )


def _commits_round_trip(
    source: Source, tp: TopicPartition, timeout_s: float, metadata: bool
) -> None:
    for offset, text in ((1, "check-a"), (2, "check-b")):
        source.commit({tp: offset}, text)
        want = (offset, text if metadata else "")
        got = _committed(source, tp, want, timeout_s, metadata)
        assert got == want, (
            f"committed({_name(tp)}) is {got} after commit({{{_name(tp)}: {offset}}}, {text!r})"
        )


def _committed(
    source: Source,
    tp: TopicPartition,
    want: tuple[int, str],
    timeout_s: float,
    metadata: bool,
    between: Callable[[], object] | None = None,
) -> tuple[int, str] | None:
    """``committed(tp)`` once it is ``want`` or ``timeout_s`` passed; ``between`` tries
    (default: a poll, which must return nothing, to let an asynchronous commit complete)."""

    def seen() -> tuple[int, str] | None:
        found = source.committed(tp)
        return found if metadata or found is None else (found[0], "")

    def poll_nothing() -> None:
        assert not source.poll(MAX_RECORDS, POLL_S), "a poll at the end returned records"

    deadline = time.monotonic() + timeout_s
    got = seen()
    while got != want and time.monotonic() < deadline:
        (between or poll_nothing)()
        got = seen()
    return got


def _pause_holds_records_back(
    source: Source, logs: Logs, tp: TopicPartition, timeout_s: float
) -> None:
    source.seek({tp: 0})
    source.pause()
    held = _quiet(source)
    assert not held, f"{len(held)} records polled while paused"
    source.resume()
    read = _poll_until(source, len(logs[tp]), timeout_s) + _quiet(source)
    got = _by_partition(read)
    assert got == {tp: list(enumerate(logs[tp]))}, (
        f"after resume read {_show_all(got)}, not {_name(tp)} again from offset 0"
    )


def _next_source_starts_there(
    make: Callable[[], Source],
    logs: Logs,
    tp: TopicPartition,
    positions: Offsets,
    timeout_s: float,
    metadata: bool,
) -> None:
    after = make()
    try:
        want = (positions[tp], "check-b" if metadata else "")
        # Not a poll: it would read records before their start is checked.
        got = _committed(after, tp, want, timeout_s, metadata, lambda: time.sleep(POLL_S))
        assert got == want, (
            f"after close(commit=...) the next source's committed({_name(tp)}) is {got}"
        )
        read = _poll_until(after, len(logs[tp]) - positions[tp], timeout_s) + _quiet(after)
        got_records, expected = _by_partition(read), _expected(logs, positions)
        assert got_records == expected, (
            f"the next source read {_show_all(got_records)}, not {_show_all(expected)}"
        )
    finally:
        after.close()


def _show(pairs: list[tuple[int, bytes]] | None) -> str:
    if not pairs:
        return "nothing"
    offsets = [offset for offset, _ in pairs]
    return f"{len(pairs)} records at offsets {offsets[:8]}{'...' if len(offsets) > 8 else ''}"


def _show_all(by_tp: Mapping[TopicPartition, list[tuple[int, bytes]]]) -> str:
    return "; ".join(f"{_name(p)}: {_show(v)}" for p, v in by_tp.items()) or "nothing"


def _name(tp: TopicPartition) -> str:
    return f"{tp.topic}/{tp.partition}"


__all__ = ["check_source"]
