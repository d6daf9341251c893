import json
from typing import Any

import pytest

from streamlearn.core.codecs import Codec
from streamlearn.core.types import DecodedRecord, Record


def decode(value: bytes, **kwargs: Any) -> DecodedRecord:
    codec = Codec(**{"n_features": 3, "max_record_bytes": 300, **kwargs})
    return codec.decode(Record("in", 0, 7, value))


def test_good_record_decodes_every_field() -> None:
    out = decode(b'{"x": [1, 2.5, -3], "y": "cat", "id": 9, "task": "a", "ts": 1.5}')
    assert out.dead_letters == []
    [sample] = out.samples
    assert (sample.x, sample.y, sample.id, sample.task, sample.ts) == (
        [1.0, 2.5, -3.0],
        "cat",
        "9",
        "a",
        1.5,
    )


def test_missing_y_is_unlabeled() -> None:
    assert decode(b'{"x": [1, 2, 3]}').samples[0].y is None
    assert decode(b'{"x": [1, 2, 3], "y": null}').samples[0].y is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", "not_json"),
        (b"\xff\xfe\x00", "not_json"),
        (b"[1, 2, 3]", "schema"),
        (b'{"y": 1}', "schema"),
        (b'{"x": "1,2,3"}', "schema"),
        (b'{"x": [1, "2", 3]}', "schema"),
        (b'{"x": [1, true, 3]}', "schema"),
        (b'{"x": [1, 2]}', "feature_count"),
        (b'{"x": [1, NaN, 3]}', "non_finite"),
        (b'{"x": [1, 2, Infinity]}', "non_finite"),
        (b'{"x": [1e999, 2, 3]}', "non_finite"),
        (b'{"x": [1, 2, 3], "y": NaN}', "non_finite"),
        (b'{"x": [1, 2, 3], "y": 1.5}', "bad_label"),
        (b'{"x": [1, 2, 3], "y": [1]}', "schema"),
        (b'{"x": [' + b"1," * 200 + b"1]}", "oversize"),
    ],
)
def test_bad_record_is_one_dead_letter_with_its_bytes(value: bytes, reason: str) -> None:
    out = decode(value)
    assert out.samples == []
    [dead] = out.dead_letters
    assert (dead.reason, dead.value, dead.source.offset) == (reason, value, 7)
    assert dead.detail


def test_batch_record_keeps_good_samples_and_dead_letters_bad_ones_alone() -> None:
    batch = {
        "samples": [{"x": [1, 2, 3], "y": 0}, {"x": [1]}, {"x": [4, 5, 6], "y": 1}, {"x": "bad"}]
    }
    out = decode(json.dumps(batch).encode(), max_record_bytes=10_000)
    assert [s.y for s in out.samples] == [0, 1]
    assert [(d.reason, d.sample_index) for d in out.dead_letters] == [
        ("feature_count", 1),
        ("schema", 3),
    ]
    assert json.loads(out.dead_letters[0].value) == {"x": [1]}


def test_batch_record_over_the_sample_cap_is_refused_whole() -> None:
    batch = json.dumps({"samples": [{"x": [1, 2, 3]}] * 5}).encode()
    out = decode(batch, max_record_bytes=10_000, max_samples_per_record=4)
    assert [d.reason for d in out.dead_letters] == ["too_many_samples"]


def test_named_features_are_ordered_and_checked() -> None:
    codec = Codec(features=["a", "b"])
    good = codec.decode(Record("in", 0, 0, b'{"x": {"b": 2, "a": 1}, "y": 0}'))
    assert good.samples[0].x == [1.0, 2.0]
    bad = codec.decode(Record("in", 0, 1, b'{"x": {"a": 1, "c": 3}}'))
    assert bad.dead_letters[0].reason == "feature_count"
    assert "missing features ['b']" in bad.dead_letters[0].detail
    assert "unknown features ['c']" in bad.dead_letters[0].detail


def test_named_features_without_names_configured_is_a_schema_error() -> None:
    out = decode(b'{"x": {"a": 1}}')
    assert out.dead_letters[0].reason == "schema"


def test_regression_wants_numeric_targets() -> None:
    codec = Codec(task="regression", n_features=1)
    assert codec.decode(Record("in", 0, 0, b'{"x": [1], "y": 3}')).samples[0].y == 3.0
    bad = codec.decode(Record("in", 0, 1, b'{"x": [1], "y": "high"}'))
    assert bad.dead_letters[0].reason == "bad_label"


def test_integral_float_labels_are_integers_for_classification() -> None:
    assert decode(b'{"x": [1, 2, 3], "y": 2.0}').samples[0].y == 2


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'{"x": [1e300, 1, 2]}', "non_finite"),
        (b'{"x": [1, -3.5e38, 2]}', "non_finite"),
        (b'{"x": [1, 2, 3], "y": 100000000000000000000}', "bad_label"),
        (b'{"x": [1, 2, 3], "y": 9223372036854775808}', "bad_label"),
        (b'{"x": [1, 2, 3], "y": -9223372036854775809}', "bad_label"),
        (b'{"x": [1, 2, 3], "y": 1e19}', "bad_label"),
        (b'{"x": [1, 2, 3], "y": "' + b"z" * 129 + b'"}', "bad_label"),
        (b'{"x": [1, 2, 3], "y": true}', "schema"),
        (b'{"x": [1, 2, 3], "id": "' + b"i" * 257 + b'"}', "bad_id"),
        (b'{"x": [1, 2, 3], "id": ' + b"9" * 257 + b"}", "bad_id"),
    ],
)
def test_values_labels_and_ids_out_of_bounds_are_refused(value: bytes, reason: str) -> None:
    out = decode(value, max_record_bytes=10_000)
    assert out.samples == []
    [dead] = out.dead_letters
    assert dead.reason == reason
    assert len(dead.detail) < 200


def test_values_labels_and_ids_at_their_bounds_are_taken() -> None:
    top = 3.4028234663852886e38
    for value in (
        {"x": [top, -top, 0]},
        {"x": [1, 2, 3], "y": 2**63 - 1},
        {"x": [1, 2, 3], "y": -(2**63)},
        {"x": [1, 2, 3], "y": "z" * 128},
        {"x": [1, 2, 3], "id": "i" * 256},
    ):
        out = decode(json.dumps(value).encode(), max_record_bytes=10_000)
        assert out.dead_letters == [], value


def test_a_regression_target_beyond_float32_is_non_finite() -> None:
    codec = Codec(task="regression", n_features=1)
    assert codec.decode(Record("in", 0, 0, b'{"x": [1], "y": 3e38}')).samples[0].y == 3e38
    bad = codec.decode(Record("in", 0, 1, b'{"x": [1], "y": -1e39}'))
    assert bad.dead_letters[0].reason == "non_finite"


def test_before_the_width_is_known_records_wider_than_max_features_are_refused() -> None:
    codec = Codec(max_features=4)
    assert codec.decode(Record("in", 0, 0, b'{"x": [1, 2, 3, 4]}')).samples
    [dead] = codec.decode(Record("in", 0, 1, b'{"x": [1, 2, 3, 4, 5]}')).dead_letters
    assert (dead.reason, dead.detail) == ("feature_count", "x: 5 features > model.max_features=4")
    codec.n_features = 6  # fixed (the daemon syncs it from the engine): the width rules
    assert codec.decode(Record("in", 0, 2, b'{"x": [1, 2, 3, 4, 5, 6]}')).samples


def test_the_codec_takes_its_bounds_from_the_settings() -> None:
    from streamlearn.settings import load_settings

    settings = load_settings(
        None,
        model={"max_label_chars": 5, "max_features": 7},
        engine={"max_id_chars": 3, "max_samples_per_record": 2},
    )
    codec = Codec.from_settings(settings.model, settings.engine)
    assert (
        codec.max_label_chars,
        codec.max_features,
        codec.max_id_chars,
        codec.max_samples_per_record,
    ) == (5, 7, 3, 2)
    assert (
        codec.decode(Record("in", 0, 0, b'{"x": [1], "id": "abcd"}')).dead_letters[0].reason
        == "bad_id"
    )


@pytest.mark.parametrize(
    ("x", "detail"),
    [
        ({"a": True, "b": 1}, "x.a: Input should be a valid number"),
        ({"a": 1, "b": "2"}, "x.b: Input should be a valid number"),
        ([1, True], "x[1]: Input should be a valid number"),
    ],
)
def test_a_bad_feature_value_is_named_by_its_key_or_index_not_as_not_a_list(
    x: dict[str, Any] | list[Any], detail: str
) -> None:
    # x is a union (list or mapping): the error named is the member the input's shape has.
    codec = Codec(features=["a", "b"]) if isinstance(x, dict) else Codec(n_features=2)
    [dead] = codec.decode(Record("in", 0, 0, json.dumps({"x": x, "y": 1}).encode())).dead_letters
    assert (dead.reason, dead.detail) == ("schema", detail)
