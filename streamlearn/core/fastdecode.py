"""The codec's fast path: well-formed records decoded in C, everything else left to the codec.

Most records a production stream carries are well formed: a JSON object with a list of
numbers as ``x``, or a batch record of them. For those, msgspec parses the bytes straight
into typed structs (no intermediate dicts, no per-field validation in Python), about 4x the
codec's rate on one core (docs/benchmarks.md, "Throughput").

The fast path never decides that a record is bad. It gives up (returns None) at the first
thing it does not accept as it stands: bytes msgspec will not parse into the expected shape
(NaN tokens, bools or strings among the features, named features, a top-level array), a
feature count, range, label or id the codec would refuse. The codec then decodes the
record the careful way and writes the dead letters with their reasons, so a record's
outcome is the same whichever path took it (tests/fuzz/test_codec_properties.py checks it).
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from streamlearn.core.errors import CodecError
from streamlearn.core.types import Label, Sample

#: The largest float32: a bigger value is infinite once the network sees it.
FLOAT32_MAX = 3.4028234663852886e38


class _SampleIn(msgspec.Struct):
    x: list[float]
    y: int | float | str | None = None
    id: str | int | None = None
    task: str | int | None = None
    ts: float | None = None  # a string timestamp takes the codec's path


class _RecordIn(msgspec.Struct):
    """A single sample's fields, or ``samples``: one struct parses either kind of record."""

    x: list[float] | None = None
    y: int | float | str | None = None
    id: str | int | None = None
    task: str | int | None = None
    ts: float | None = None
    # Unset, not None: a record with "samples": null is a malformed batch record (the codec
    # names it), not a single sample.
    samples: list[_SampleIn] | msgspec.UnsetType = msgspec.UNSET


_DECODER = msgspec.json.Decoder(_RecordIn)


class Codec(Protocol):
    """What the fast path needs of ``core.codecs.Codec``: its shape, limits and checks."""

    n_features: int | None
    max_features: int
    max_samples_per_record: int

    def check_label(self, y: Label | None) -> Label | None: ...
    def check_id(self, value: str | int | None) -> str | None: ...


def decode_fast(codec: Codec, value: bytes) -> list[Sample] | None:
    """The record's samples, or None when the codec must decode it (and judge it) itself.

    ``value`` is within ``max_record_bytes`` already; named features never take this path.
    """
    try:
        record = _DECODER.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if not isinstance(record.samples, msgspec.UnsetType):
        if len(record.samples) > codec.max_samples_per_record:
            return None
        items: list[_SampleIn | _RecordIn] = list(record.samples)
        batch = True
    elif record.x is not None:
        items, batch = [record], False
    else:
        return None
    try:
        return [_sample(codec, item, i if batch else None) for i, item in enumerate(items)]
    except CodecError:
        return None


def _sample(codec: Codec, item: _SampleIn | _RecordIn, index: int | None) -> Sample:
    x = item.x
    if not x:
        raise CodecError("feature_count", "x: empty")
    width = codec.n_features
    if (width is not None and len(x) != width) or (width is None and len(x) > codec.max_features):
        raise CodecError("feature_count", "x: width")
    if max(x) > FLOAT32_MAX or min(x) < -FLOAT32_MAX:
        raise CodecError("non_finite", "x: beyond float32")
    return Sample(
        x=x,
        y=codec.check_label(item.y),
        id=codec.check_id(item.id),
        task=None if item.task is None else str(item.task),
        ts=item.ts,
        index=index,
    )
