"""The join store of late labels: joins both ways, event-time TTL, bounds, checkpoints."""

from __future__ import annotations

import io

import pytest
import torch

from streamlearn.core.codecs import Codec
from streamlearn.core.errors import CodecError
from streamlearn.core.labels import JoinStore, LateLabel, Pending, ServedAccuracy, decode_label


def entry(ts: float, x: float = 1.0, prediction: int | None = 0) -> Pending:
    return Pending([x, x + 0.5], prediction, 7, "0", ts)


def store(**kw: float) -> JoinStore:
    return JoinStore(
        ttl_s=kw.get("ttl_s", 10.0),
        max_pending=int(kw.get("max_pending", 100)),
        max_waiting=int(kw.get("max_waiting", 100)),
    )


def test_a_label_after_its_sample_joins_with_the_answer_given_then() -> None:
    s = store()
    assert s.predicted("a", entry(100.0, prediction=1)) is None
    join = s.labeled("a", 0, 104.5)
    assert join is not None
    assert (join.id, join.x, join.y, join.prediction, join.version, join.expert) == (
        "a",
        [1.0, 1.5],
        0,
        1,
        7,
        "0",
    )
    assert join.delay_s == 4.5
    assert not s.pending and not s.waiting
    assert s.labeled("a", 0, 105.0) is None  # a second label for a joined id waits
    assert list(s.waiting) == ["a"]


def test_a_label_before_its_sample_waits_and_joins_when_the_sample_comes() -> None:
    s = store()
    assert s.labeled("b", 3, 50.0) is None
    join = s.predicted("b", entry(51.0))
    assert join is not None and join.y == 3 and join.delay_s == 0.0
    assert not s.pending and not s.waiting


def test_a_pending_sample_expires_when_the_labels_clock_passes_its_ttl() -> None:
    s = store(ttl_s=10.0)
    s.predicted("a", entry(100.0))
    s.predicted("b", entry(105.0))
    s.labeled("z", 1, 110.0)  # exactly ttl after a: still kept
    assert list(s.pending) == ["a", "b"]
    s.labeled("y", 1, 110.5)
    assert list(s.pending) == ["b"]
    out = s.take_outcomes()
    assert out.expired == 1 and out.unknown == 0
    assert s.take_outcomes().total() == 0


def test_samples_alone_never_expire_a_pending_sample() -> None:
    """The TTL runs on the other topic's clock: a backlog of samples read before the labels
    topic has caught up expires nothing."""
    s = store(ttl_s=1.0)
    for i in range(50):
        s.predicted(str(i), entry(float(i)))
    assert len(s.pending) == 50
    assert s.take_outcomes().expired == 0


def test_an_early_label_is_unknown_once_the_samples_clock_passes_its_ttl() -> None:
    s = store(ttl_s=5.0)
    s.labeled("ghost", 1, 10.0)
    s.predicted("a", entry(15.0))
    assert list(s.waiting) == ["ghost"]
    s.predicted("b", entry(15.1))
    assert not s.waiting
    assert s.take_outcomes().unknown == 1


def test_bounds_evict_the_oldest_and_count_it() -> None:
    s = store(max_pending=3, max_waiting=2)
    for i in range(5):
        s.predicted(f"s{i}", entry(float(i)))
    for i in range(4):
        s.labeled(f"l{i}", 1, float(i))
    assert list(s.pending) == ["s2", "s3", "s4"]
    assert list(s.waiting) == ["l2", "l3"]
    out = s.take_outcomes()
    assert (out.evicted_pending, out.evicted_waiting) == (2, 2)


def test_an_id_that_comes_again_replaces_the_older_entry() -> None:
    s = store()
    s.predicted("a", entry(1.0, x=1.0))
    s.predicted("a", entry(2.0, x=9.0))
    join = s.labeled("a", 1, 3.0)
    assert join is not None and join.x == [9.0, 9.5]
    assert s.take_outcomes().replaced == 1


def test_state_round_trips_through_weights_only_torch_load() -> None:
    s = store()
    s.predicted("a", Pending([0.1, 1e-7], "cat", 3, "2", 10.0, "t1"))
    s.predicted("b", Pending([2.0, 3.0], None, 4, "0", 11.0))
    s.labeled("c", "dog", 12.0)
    buffer = io.BytesIO()
    torch.save(s.state_dict(), buffer)
    buffer.seek(0)
    restored = store()
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.pending == s.pending  # features exact: float64 in the tensor
    assert restored.waiting == s.waiting
    assert (restored.sample_clock, restored.label_clock) == (11.0, 12.0)
    join = restored.labeled("a", "cat", 20.0)
    assert join is not None and join.x == [0.1, 1e-7] and join.task == "t1"


def test_an_empty_store_round_trips() -> None:
    s = store()
    restored = store()
    restored.load_state_dict(s.state_dict())
    assert not restored.pending and not restored.waiting


def test_nbytes_grows_with_entries_and_features() -> None:
    s = store()
    assert s.nbytes() == 0
    s.predicted("a", entry(1.0))
    one = s.nbytes()
    s.predicted("b", entry(1.0))
    assert s.nbytes() == 2 * one > 0


def test_served_accuracy_rolls_each_window() -> None:
    acc = ServedAccuracy([2, 4])
    assert acc.accuracy(2) is None
    for right in (True, True, False, True, False):
        acc.add(right)
    assert acc.accuracy(2) == 0.5  # last two: True, False
    assert acc.accuracy(4) == 0.5  # True, False, True, False
    restored = ServedAccuracy([2, 4])
    restored.load_state_dict(acc.state_dict())
    assert (restored.accuracy(2), restored.accuracy(4), restored.joins) == (0.5, 0.5, 5)


CODEC = Codec(n_features=None, task="classification")


def test_label_records_decode_and_bad_ones_name_the_field() -> None:
    assert decode_label(CODEC, b'{"id": 12, "y": 3}') == LateLabel("12", 3)
    good = decode_label(CODEC, b'{"id": "k-1", "y": "cat"}')
    assert (good.id, good.y) == ("k-1", "cat")
    assert decode_label(CODEC, b'{"id": 12, "y": 3.0}').y == 3
    cases = {
        b"not json": ("not_json", ""),
        b"[1, 2]": ("schema", "label record"),
        b'{"y": 1}': ("schema", "id:"),
        b'{"id": "a", "y": null}': ("schema", "y:"),
        b'{"id": "a", "y": [1]}': ("schema", "y:"),
        b'{"id": "a", "y": 1.5}': ("bad_label", "y:"),
        b'{"id": true, "y": 1}': ("schema", "id:"),
    }
    for value, (reason, detail) in cases.items():
        with pytest.raises(CodecError) as caught:
            decode_label(CODEC, value)
        assert caught.value.reason == reason, value
        assert detail in caught.value.detail, (value, caught.value.detail)
