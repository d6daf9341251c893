"""Property-based fuzzing of the codec and the learner loop behind it (RELIABILITY.md test K).

Whatever bytes arrive, decoding never raises, and every item of a record has exactly one
outcome: a sample, or a dead letter with a reason from ``REASONS`` (inside a batch record, with
its index). Good samples of a batch survive next to bad ones, unchanged. The learner loop
dead-letters and counts every bad item once and learns every good labeled sample.

Items are generated in three kinds: good (must decode, to known values), bad (must be
dead-lettered, for a known reason), and edge (values at the limits of what the model can hold:
huge numbers, long strings; either outcome is allowed, but a sample must fit float32).

Every test runs a fixed, derandomized set of examples: the same inputs on every machine, in
seconds, and no example database. Failures are not shrunk (shrinking big records takes minutes);
set STREAMLEARN_FUZZ_SHRINK=1 to shrink one to its smallest form.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import pydantic_core
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from streamlearn.core.codecs import REASONS, Codec
from streamlearn.core.types import DecodedRecord, Record, Sample
from streamlearn.daemon import Daemon
from streamlearn.metrics import Metrics
from streamlearn.settings import load_settings
from streamlearn.sinks import MemorySink
from streamlearn.sources import MemorySource

FLOAT32_MAX = 3.4028234663852886e38
NAMES = ("a", "b", "c")
# Codec shapes: positional features (classification, regression), named ones, and a width
# learned from the data (n_features unset).
CODECS: dict[str, dict[str, Any]] = {
    "classification": {"task": "classification", "n_features": 3},
    "regression": {"task": "regression", "n_features": 3},
    "named": {"task": "classification", "features": NAMES},
    "unsized": {"task": "classification"},
}
KINDS = st.sampled_from(sorted(CODECS))


PHASES = (Phase.explicit, Phase.generate) + (
    (Phase.shrink,) if os.environ.get("STREAMLEARN_FUZZ_SHRINK") else ()
)


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=PHASES,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


def codec(kind: str) -> Codec:
    return Codec(**CODECS[kind])


def decode(kind: str, value: bytes) -> tuple[Record, DecodedRecord]:
    record = Record("in", 0, 7, value)
    return record, codec(kind).decode(record)


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()  # NaN and Infinity as JavaScript spells them


# -- generators ------------------------------------------------------------------------------

# Text a JSON producer can write (lone surrogates are the arbitrary-bytes tests' business).
SAFE_TEXT = st.characters(exclude_categories=["Cs"])
NUMBER = st.one_of(
    st.floats(-1e30, 1e30, allow_nan=False, allow_infinity=False), st.integers(-(2**53), 2**53)
)
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
BIG = st.one_of(
    st.floats(1e39, 1.7e308).flatmap(lambda v: st.sampled_from([v, -v])),
    st.integers(2**128, 10**300),
)  # finite JSON, infinite as float32


HUGE = 10**400  # JSON integers go to 4,300 digits
JSON_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-HUGE, HUGE), st.floats(), st.text(max_size=20)
)
JSON_VALUE = st.recursive(
    JSON_SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(
            st.sampled_from(["x", "y", "id", "task", "ts", "samples", *NAMES])
            | st.text(max_size=4),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=25,
)
NOT_AN_OBJECT = st.one_of(JSON_SCALAR, st.lists(JSON_SCALAR, max_size=3))


@dataclass
class Item:
    """One sample object as a producer wrote it, and what the codec must make of it."""

    value: Any
    kind: str  # "good", "bad" or "edge"
    expected: Sample | None = None  # good: the decoded sample
    reasons: frozenset[str] = frozenset()  # bad: the reasons it may be dead-lettered for


@st.composite
def good_item(draw: st.DrawFn, kind: str) -> Item:
    numbers = [draw(NUMBER) for _ in NAMES]
    x: Any = (
        dict(zip(NAMES, numbers, strict=True))
        if kind == "named" and draw(st.booleans())
        else numbers
    )
    value: dict[str, Any] = {"x": x}
    expected = Sample([float(v) for v in numbers])
    if draw(st.booleans()):
        if kind == "regression":
            y: float | str = draw(NUMBER)
            expected.y = float(y)
        else:
            y = draw(
                st.one_of(
                    st.integers(-(2**31), 2**31),
                    st.text(SAFE_TEXT, min_size=1, max_size=16),
                    st.integers(-1000, 1000).map(float),
                )
            )  # 2.0 is class 2
            expected.y = int(y) if isinstance(y, float) else y
        value["y"] = y
    elif draw(st.booleans()):
        value["y"] = None
    if draw(st.booleans()):
        id_ = draw(st.one_of(st.text(SAFE_TEXT, max_size=32), st.integers(-(2**53), 2**53)))
        value["id"], expected.id = id_, str(id_)
    if draw(st.booleans()):
        task = draw(st.text(SAFE_TEXT, max_size=16))
        value["task"], expected.task = task, task
    if draw(st.booleans()):
        ts = draw(st.floats(0, 2e9))
        value["ts"], expected.ts = ts, ts
    if draw(st.booleans()):  # unknown fields are ignored
        value[draw(st.sampled_from(["meta", "source", "label"]))] = draw(JSON_VALUE)
    return Item(value, "good", expected)


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**base, **changes}


@st.composite
def bad_item(draw: st.DrawFn, kind: str) -> Item:
    """A sample object that is wrong in one way, with the reasons that name that way."""
    good = draw(good_item(kind)).value
    xs = [1.0, 2.0, 3.0]
    at = draw(st.integers(0, 2))
    wrong_element = draw(
        st.one_of(
            st.booleans(),
            st.text(max_size=5),
            st.none(),
            st.lists(NUMBER, max_size=2),
            st.dictionaries(st.text(max_size=2), NUMBER, max_size=2),
        )
    )
    cases: list[tuple[Any, set[str]]] = [
        (_with(good, x=[*xs[:at], draw(NON_FINITE), *xs[at + 1 :]]), {"non_finite"}),
        (_with(good, x=[*xs[:at], wrong_element, *xs[at + 1 :]]), {"schema"}),
        ({k: v for k, v in good.items() if k != "x"}, {"schema"}),
        (_with(good, x=draw(st.one_of(JSON_SCALAR, st.text(max_size=8)))), {"schema"}),
        (draw(NOT_AN_OBJECT), {"schema"}),
        (_with(good, x=[]), {"feature_count"}),
        (
            _with(
                good,
                y=draw(
                    st.one_of(
                        st.booleans(),
                        st.lists(NUMBER, max_size=2),
                        st.dictionaries(st.text(max_size=2), NUMBER, max_size=2),
                    )
                ),
            ),
            {"schema"},
        ),
        (_with(good, y=draw(NON_FINITE)), {"non_finite"}),
        (
            _with(
                good,
                id=draw(st.one_of(st.lists(NUMBER, min_size=1, max_size=2), st.floats(0.1, 0.9))),
            ),
            {"schema"},
        ),
        (_with(good, ts=draw(st.lists(NUMBER, max_size=2))), {"schema"}),
    ]
    if kind != "unsized":
        width = draw(st.sampled_from([1, 2, 4, 7]))
        cases.append((_with(good, x=[1.0] * width), {"feature_count"}))
    if kind == "named":
        names = draw(st.sampled_from([["a", "b"], ["a", "b", "c", "d"], ["a", "b", "z"]]))
        cases.append((_with(good, x=dict.fromkeys(names, 1.0)), {"feature_count"}))
    else:
        cases.append((_with(good, x={"a": 1.0}), {"schema"}))
    if kind == "regression":
        cases.append((_with(good, y=draw(st.text(max_size=8))), {"bad_label"}))
    else:
        cases.append(
            (
                _with(good, y=draw(st.floats(0.01, 1e6).filter(lambda v: not v.is_integer()))),
                {"bad_label"},
            )
        )
    value, reasons = draw(st.sampled_from(cases))
    return Item(value, "bad", reasons=frozenset(reasons))


@st.composite
def edge_item(draw: st.DrawFn, kind: str) -> Item:
    """Values at the limits: either outcome is fine, a crash or a non-float32 sample is not."""
    good = draw(good_item(kind)).value
    at = draw(st.integers(0, 2))
    x = [1.0, 2.0, 3.0]
    x[at] = draw(
        st.one_of(BIG, st.floats(3.4e38, 3.5e38), st.floats(-3.5e38, -3.4e38), st.floats(0, 1e-300))
    )
    cases = [
        _with(good, x=x),
        # Integers past 1.8e308 have no float at all (float() raised OverflowError once).
        _with(
            good,
            y=draw(
                st.one_of(
                    BIG,
                    st.integers(2**63 - 2, 2**70),
                    st.integers(-(2**70), -(2**63) + 1),
                    st.integers(10**309, HUGE),
                    st.text(SAFE_TEXT, min_size=100, max_size=400),
                )
            ),
        ),
        _with(
            good,
            id=draw(
                st.one_of(
                    st.text(SAFE_TEXT, min_size=200, max_size=2_000), st.integers(10**30, 10**60)
                )
            ),
        ),
        _with(
            good,
            ts=draw(
                st.one_of(
                    st.sampled_from(["nan", "inf", "-1e999", "soon"]), st.floats(1e300, 1.7e308)
                )
            ),
        ),
        _with(good, task=draw(st.text(SAFE_TEXT, min_size=100, max_size=1_000))),
    ]
    return Item(draw(st.sampled_from(cases)), "edge")


def any_item(kind: str, edges: bool = True) -> st.SearchStrategy[Item]:
    kinds = [good_item(kind), bad_item(kind)] + ([edge_item(kind)] if edges else [])
    return st.one_of(kinds)


# -- the accounting every decode must satisfy --------------------------------------------------


def expected_items(value: bytes, c: Codec) -> tuple[int, bool]:
    """How many items the record holds, and whether it is a batch record. Parsed independently
    of the codec's own decisions: a batch record that cannot be taken apart is one item."""
    if len(value) > c.max_record_bytes:
        return 1, False
    try:
        raw = pydantic_core.from_json(value, allow_inf_nan=True)
    except ValueError:
        return 1, False
    if isinstance(raw, dict) and "samples" in raw:
        samples = raw["samples"]
        if isinstance(samples, list) and len(samples) <= c.max_samples_per_record:
            return len(samples), True
    return 1, False


def expected_of(item: Item) -> Sample:
    """A good item's expected sample (every good item has one)."""
    assert item.expected is not None, item
    return item.expected


def decoded(sample: Sample) -> tuple[Any, ...]:
    """What the codec decodes into a sample (its other fields say where it came from)."""
    return sample.x, sample.y, sample.id, sample.task, sample.ts


def check_accounting(record: Record, out: DecodedRecord, c: Codec) -> None:
    n, batch = expected_items(record.value, c)
    assert out.record is record
    assert len(out.samples) + len(out.dead_letters) == n, "each item: exactly one outcome"
    for dead in out.dead_letters:
        assert dead.reason in REASONS, dead.reason
        assert isinstance(dead.detail, str) and dead.detail
        assert dead.source is record
        if batch:
            json.loads(dead.value)  # the bad sample alone, as JSON
        else:
            assert (dead.value, dead.sample_index) == (record.value, None)
    if batch:
        indices = [d.sample_index for d in out.dead_letters]
        assert all(i is not None and 0 <= i < n for i in indices), indices
        assert len(set(indices)) == len(indices), f"an item dead-lettered twice: {indices}"
    for sample in out.samples:
        assert sample.x and all(isinstance(v, float) for v in sample.x)


def fits_float32(sample: Sample, regression: bool) -> bool:
    values = sample.x + ([sample.y] if regression and isinstance(sample.y, float) else [])
    return all(math.isfinite(v) and abs(v) <= FLOAT32_MAX for v in values)


# -- properties ------------------------------------------------------------------------------


@st.composite
def spliced(draw: st.DrawFn) -> bytes:
    """A valid record with bytes cut, repeated or replaced: near-JSON, the usual corruption."""
    kind = draw(KINDS)
    value = bytearray(
        encode(
            draw(good_item(kind)).value
            if draw(st.booleans())
            else {"samples": [i.value for i in draw(st.lists(any_item(kind), max_size=4))]}
        )
    )
    start = draw(st.integers(0, len(value)))
    end = draw(st.integers(start, min(len(value), start + 8)))
    value[start:end] = draw(st.binary(max_size=8))
    return bytes(value)


@fuzz_settings(300)
@given(
    KINDS,
    st.one_of(
        st.binary(max_size=300),
        spliced(),
        st.sampled_from(
            [
                b"",
                b"{",
                b"null",
                b"[]",
                b'{"samples": {}}',
                b'{"samples": null}',
                b'{"samples": [[]]}',
                b"[" * 5_000 + b"]" * 5_000,
                b'{"x": [1e999]}',
                b'{"x": [' + b"9" * 5_000 + b"]}",
            ]
        ),
    ),
)
def test_arbitrary_bytes_never_raise_and_each_record_has_one_outcome(
    kind: str, value: bytes
) -> None:
    record, out = decode(kind, value)
    check_accounting(record, out, codec(kind))


@fuzz_settings(250)
@given(
    KINDS,
    st.one_of(JSON_VALUE, st.fixed_dictionaries({"samples": st.lists(JSON_VALUE, max_size=6)})),
)
def test_arbitrary_json_values_never_raise_and_each_item_has_one_outcome(
    kind: str, value: Any
) -> None:
    record, out = decode(kind, encode(value))
    check_accounting(record, out, codec(kind))


@fuzz_settings(300)
@given(
    KINDS,
    st.one_of(
        # found by this test: "samples": null beside a good x is a malformed batch record
        st.sampled_from([b'{"x": [0, 0, 1], "samples": null}', b'{"x": "a", "x": [0, 0, 1]}']),
        spliced(),
        JSON_VALUE.map(encode),
        st.lists(any_item("classification"), max_size=6).map(
            lambda items: encode({"samples": [i.value for i in items]})
        ),
        any_item("regression").map(lambda item: encode(item.value)),
        st.lists(st.one_of(edge_item("unsized"), good_item("unsized")), max_size=6).map(
            lambda items: encode({"samples": [i.value for i in items]})
        ),
    ),
)
def test_the_fast_path_and_the_careful_one_agree_on_every_record(kind: str, value: bytes) -> None:
    """core/fastdecode.py decides nothing: whatever it takes comes out as the careful
    decoder would have it, sample for sample (x, label, id, task, time, index)."""
    record = Record("t", 0, 0, value)
    fast, careful = codec(kind).decode(record), codec(kind).decode_careful(record)
    assert [(decoded(s), s.index) for s in fast.samples] == [
        (decoded(s), s.index) for s in careful.samples
    ]
    assert [(d.reason, d.sample_index, d.value) for d in fast.dead_letters] == [
        (d.reason, d.sample_index, d.value) for d in careful.dead_letters
    ]


@fuzz_settings(200)
@given(st.data())
def test_a_single_record_is_its_sample_or_one_dead_letter_with_its_bytes(
    data: st.DataObject,
) -> None:
    kind = data.draw(KINDS)
    item = data.draw(any_item(kind))
    value = encode(item.value)
    record, out = decode(kind, value)
    check_accounting(record, out, codec(kind))
    if item.kind == "good":
        assert out.dead_letters == []
        assert [decoded(s) for s in out.samples] == [decoded(expected_of(item))]
    elif item.kind == "bad":
        [dead] = out.dead_letters
        assert out.samples == []
        assert dead.reason in item.reasons, (dead.reason, dead.detail)
        assert (dead.value, dead.sample_index) == (value, None)


@fuzz_settings(120)
@given(st.data())
def test_good_samples_of_a_batch_survive_next_to_bad_ones(data: st.DataObject) -> None:
    kind = data.draw(KINDS)
    items = data.draw(st.lists(any_item(kind), max_size=8))
    record, out = decode(kind, encode({"samples": [i.value for i in items]}))
    check_accounting(record, out, codec(kind))
    dead = {d.sample_index: d for d in out.dead_letters}
    bad = {i for i, item in enumerate(items) if item.kind == "bad"}
    good = {i for i, item in enumerate(items) if item.kind == "good"}
    assert bad <= set(dead), f"bad samples {sorted(bad - set(dead))} were decoded"
    assert not good & set(dead), [(i, dead[i].reason, dead[i].detail) for i in good & set(dead)]
    for i in bad:
        assert dead[i].reason in items[i].reasons, (i, dead[i].reason, dead[i].detail)
        assert json.loads(dead[i].value) == items[i].value or _has_nan(items[i].value)
    # The samples come out in input order: the k-th one is the k-th item not dead-lettered.
    kept = [i for i in range(len(items)) if i not in dead]
    for i, sample in zip(kept, out.samples, strict=True):
        if i in good:
            assert decoded(sample) == decoded(expected_of(items[i])), i


def _has_nan(value: Any) -> bool:
    return "NaN" in json.dumps(value)  # NaN != NaN: such a value cannot compare equal


@fuzz_settings(150)
@given(st.data())
def test_decoded_values_fit_float32(data: st.DataObject) -> None:
    """The model computes in float32: a finite JSON number beyond its range (1e300) would be
    infinite there. Every decoded feature (and regression target) must fit."""
    kind = data.draw(KINDS)
    items = data.draw(st.lists(st.one_of(edge_item(kind), good_item(kind)), min_size=1, max_size=6))
    for value in [encode(items[0].value), encode({"samples": [i.value for i in items]})]:
        _, out = decode(kind, value)
        for sample in out.samples:
            assert fits_float32(sample, kind == "regression"), (sample.x, sample.y)


# Inputs the properties above found, kept as named cases: (codec, record, allowed reasons).
FOUND = [
    pytest.param(
        "regression",
        b'{"x": [0, 0, 0], "y": 1' + b"0" * 309 + b"}",
        {"non_finite"},
        id="regression-y-int-past-float",
    ),
    pytest.param(
        "regression",
        b'{"samples": [{"x": [0, 0, 0], "y": -1' + b"0" * 400 + b"}]}",
        {"non_finite"},
        id="regression-y-int-past-float-in-a-batch",
    ),
    pytest.param("classification", b'{"x": [1e39, 0, 0]}', {"non_finite"}, id="x-beyond-float32"),
    pytest.param(
        "regression",
        b'{"x": [0, 0, 0], "y": 1e300}',
        {"non_finite"},
        id="regression-y-beyond-float32",
    ),
    pytest.param(
        "classification",
        b'{"x": [0, 0, 0], "y": 1' + b"0" * 400 + b"}",
        {"bad_label"},
        id="class-label-past-int64",
    ),
    pytest.param("classification", b"[" * 5_000 + b"]" * 5_000, {"not_json"}, id="deep-nesting"),
    pytest.param(
        "classification", b'{"x": [0, 0, 0], "y": "\\ud800"}', {"not_json"}, id="lone-surrogate"
    ),
]


@pytest.mark.parametrize(("kind", "value", "reasons"), FOUND)
def test_hostile_records_found_by_fuzzing_are_dead_lettered(
    kind: str, value: bytes, reasons: set[str]
) -> None:
    record, out = decode(kind, value)
    check_accounting(record, out, codec(kind))
    [dead] = out.dead_letters
    assert dead.reason in reasons, (dead.reason, dead.detail)


# -- the learner loop --------------------------------------------------------------------------


class Source(MemorySource):
    def _bind(self, listener: Any) -> Source:
        self._listener = listener
        return self


# Integers only: a model takes integer or string classes, never both.
LABELS = st.sampled_from([0, 1, 2])


@st.composite
def daemon_record(draw: st.DrawFn) -> tuple[bytes, dict[int | None, Item]]:
    """A record for a 3-feature classifier: one sample, or a batch mixing good and bad ones;
    its items by their index in the batch (None for a single record)."""
    good = st.builds(
        lambda x, y: Item(
            {"x": x, "y": y} if y is not None else {"x": x},
            "good",
            Sample([float(v) for v in x], y),
        ),
        st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=3, max_size=3),
        st.one_of(st.none(), LABELS, LABELS, LABELS),
    )
    item = st.one_of(good, bad_item("classification"))
    if draw(st.booleans()):
        single = draw(item)
        return encode(single.value), {None: single}
    items = draw(st.lists(item, max_size=8))
    return encode({"samples": [i.value for i in items]}), dict(enumerate(items))


@fuzz_settings(15)
@given(st.lists(st.lists(daemon_record(), max_size=8), min_size=1, max_size=2))
def test_the_learner_dead_letters_each_bad_item_and_learns_each_good_one(
    partitions: list[list[tuple[bytes, dict[int | None, Item]]]],
) -> None:
    # Every item by where it came from: (partition, offset, index in its batch record).
    items = {
        (p, offset, index): item
        for p, records in enumerate(partitions)
        for offset, (_, by_index) in enumerate(records)
        for index, item in by_index.items()
    }
    bad = {key for key, item in items.items() if item.kind == "bad"}
    labeled = [i for i in items.values() if i.kind == "good" and expected_of(i).y is not None]
    unlabeled = [i for i in items.values() if i.kind == "good" and expected_of(i).y is None]
    source = Source("in", [[value for value, _ in records] for records in partitions])
    sink = MemorySink()
    with tempfile.TemporaryDirectory() as directory:
        config = load_settings(
            None,
            model={"hidden": [4], "n_features": 3},
            checkpoint={"dir": directory, "every_samples": 10**9, "every_seconds": 3600},
        )
        daemon = Daemon(
            config, source_factory=source._bind, sink_factory=lambda m: sink, metrics=Metrics()
        )
        daemon.start()
        deadline = time.monotonic() + 30
        while not (source.exhausted() and len(daemon.buffer) == 0):
            assert time.monotonic() < deadline, "the daemon did not drain its source"
            daemon.step()
        dead = {(d.source.partition, d.source.offset, d.sample_index): d for d in sink.dead}
        assert len(dead) == len(sink.dead), "an item dead-lettered twice"
        assert set(dead) == bad, [(key, d.reason, d.detail) for key, d in dead.items()]
        for key, letter in dead.items():
            assert letter.reason in items[key].reasons, (key, letter.reason, letter.detail)
        assert daemon.engine.samples_learned == len(labeled)
        assert len(sink.predicted) == len(unlabeled)
        counted = sum(
            daemon.metrics.registry.get_sample_value(
                "streamlearn_records_invalid_total", {"reason": reason}
            )
            or 0
            for reason in REASONS
        )
        assert counted == len(bad)
        daemon.shutdown()
