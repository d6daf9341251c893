import json

import pytest

from streamlearn.codecs import Codec
from streamlearn.types import Record


def decode(value: bytes, **kwargs):
    codec = Codec(**{"n_features": 3, "max_record_bytes": 300, **kwargs})
    return codec.decode(Record("in", 0, 7, value))


def test_good_record_decodes_every_field():
    out = decode(b'{"x": [1, 2.5, -3], "y": "cat", "id": 9, "task": "a", "ts": 1.5}')
    assert out.dead_letters == []
    [sample] = out.samples
    assert (sample.x, sample.y, sample.id, sample.task, sample.ts) == (
        [1.0, 2.5, -3.0], "cat", "9", "a", 1.5)


def test_missing_y_is_unlabeled():
    assert decode(b'{"x": [1, 2, 3]}').samples[0].y is None
    assert decode(b'{"x": [1, 2, 3], "y": null}').samples[0].y is None


@pytest.mark.parametrize(("value", "reason"), [
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
])
def test_bad_record_is_one_dead_letter_with_its_bytes(value, reason):
    out = decode(value)
    assert out.samples == []
    [dead] = out.dead_letters
    assert (dead.reason, dead.value, dead.source.offset) == (reason, value, 7)
    assert dead.detail


def test_batch_record_keeps_good_samples_and_dead_letters_bad_ones_alone():
    batch = {"samples": [{"x": [1, 2, 3], "y": 0}, {"x": [1]}, {"x": [4, 5, 6], "y": 1},
                         {"x": "bad"}]}
    out = decode(json.dumps(batch).encode(), max_record_bytes=10_000)
    assert [s.y for s in out.samples] == [0, 1]
    assert [(d.reason, d.sample_index) for d in out.dead_letters] == [
        ("feature_count", 1), ("schema", 3)]
    assert json.loads(out.dead_letters[0].value) == {"x": [1]}


def test_batch_record_over_the_sample_cap_is_refused_whole():
    batch = json.dumps({"samples": [{"x": [1, 2, 3]}] * 5}).encode()
    out = decode(batch, max_record_bytes=10_000, max_samples_per_record=4)
    assert [d.reason for d in out.dead_letters] == ["too_many_samples"]


def test_named_features_are_ordered_and_checked():
    codec = Codec(features=["a", "b"])
    good = codec.decode(Record("in", 0, 0, b'{"x": {"b": 2, "a": 1}, "y": 0}'))
    assert good.samples[0].x == [1.0, 2.0]
    bad = codec.decode(Record("in", 0, 1, b'{"x": {"a": 1, "c": 3}}'))
    assert bad.dead_letters[0].reason == "feature_count"
    assert "missing features ['b']" in bad.dead_letters[0].detail
    assert "unknown features ['c']" in bad.dead_letters[0].detail


def test_named_features_without_names_configured_is_a_schema_error():
    out = decode(b'{"x": {"a": 1}}')
    assert out.dead_letters[0].reason == "schema"


def test_regression_wants_numeric_targets():
    codec = Codec(task="regression", n_features=1)
    assert codec.decode(Record("in", 0, 0, b'{"x": [1], "y": 3}')).samples[0].y == 3.0
    bad = codec.decode(Record("in", 0, 1, b'{"x": [1], "y": "high"}'))
    assert bad.dead_letters[0].reason == "bad_label"


def test_integral_float_labels_are_integers_for_classification():
    assert decode(b'{"x": [1, 2, 3], "y": 2.0}').samples[0].y == 2
