"""Bytes from Kafka -> samples, and bad bytes -> dead letters with a reason.

A record is one JSON object (``{"x": ..., "y": ..., "id": ..., "task": ..., "ts": ...}``) or
a batch record (``{"samples": [ ... ]}``). In a batch record each sample stands alone: the
good ones are learned and each bad one is dead-lettered by itself with its index, so one bad
sample never costs its neighbours. Reasons are fixed strings, used as metric labels.

Everything a record can make the model hold is bounded here: values must fit float32 (the
model's dtype: 1e300 is finite JSON but infinite to the network), labels are int64 integers
or short strings, ids are short (they key every prediction), and before the feature count is
known no record may be wider than ``model.max_features``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pydantic_core
from pydantic import BaseModel, ConfigDict, Strict, TypeAdapter, ValidationError

from streamlearn.core.errors import CodecError
from streamlearn.core.fastdecode import FLOAT32_MAX, decode_fast
from streamlearn.core.types import DeadLetter, DecodedRecord, Label, Record, Sample

if TYPE_CHECKING:
    from streamlearn.core.models.settings import ModelSettings
    from streamlearn.core.settings import EngineSettings

Task = Literal["classification", "regression"]
Number = Annotated[float, Strict()]  # ints are accepted as floats, strings and bools are not

REASONS = (
    "oversize",
    "not_json",
    "non_finite",
    "schema",
    "feature_count",
    "bad_label",
    "bad_id",
    "too_many_samples",
    "too_many_classes",
)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class SampleIn(BaseModel):
    """One sample as a record carries it, before the codec checks it against the model's shape.

    Also the ``/v1/learn`` body's sample, so HTTP and Kafka accept the same thing.
    """

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    x: list[Number] | dict[str, Number]
    y: Annotated[int, Strict()] | Number | str | None = None
    id: str | int | None = None
    task: str | int | None = None
    ts: float | str | None = None


_SAMPLE = TypeAdapter(SampleIn)


class Codec:
    """Decodes records for one model shape (feature count or names, task)."""

    def __init__(
        self,
        task: Task = "classification",
        n_features: int | None = None,
        features: Sequence[str] | None = None,
        max_record_bytes: int = 1_048_576,
        max_samples_per_record: int = 10_000,
        *,
        max_features: int = 10_000,
        max_label_chars: int = 128,
        max_id_chars: int = 256,
    ) -> None:
        self.task = task
        self.features = list(features) if features is not None else None
        self.n_features = len(self.features) if self.features is not None else n_features
        self.max_record_bytes = max_record_bytes
        self.max_samples_per_record = max_samples_per_record
        self.max_features = max_features
        self.max_label_chars = max_label_chars
        self.max_id_chars = max_id_chars

    @classmethod
    def from_settings(cls, m: ModelSettings, e: EngineSettings) -> Codec:
        """The codec for this model: the learner's and serving's must agree exactly."""
        return cls(
            m.task,
            m.n_features,
            m.features,
            e.max_record_bytes,
            e.max_samples_per_record,
            max_features=m.max_features,
            max_label_chars=m.max_label_chars,
            max_id_chars=e.max_id_chars,
        )

    def decode(self, record: Record) -> DecodedRecord:
        """The record's samples and dead letters: well-formed records by the fast path
        (``core/fastdecode.py``), anything it gives up on by :meth:`decode_careful`."""
        if self.features is None and len(record.value) <= self.max_record_bytes:
            fast = decode_fast(self, record.value)
            if fast is not None:
                return DecodedRecord(record, fast)
        return self.decode_careful(record)

    def decode_careful(self, record: Record) -> DecodedRecord:
        """Every check in Python, each bad sample dead-lettered with its reason."""
        out = DecodedRecord(record)
        try:
            items, is_batch = self._items(record.value)
        except CodecError as exc:
            out.dead_letters.append(DeadLetter(record.value, exc.reason, exc.detail, record))
            return out
        for index, item in enumerate(items):
            try:
                out.samples.append(self.decode_sample(item, index if is_batch else None))
            except CodecError as exc:
                value = json.dumps(item).encode() if is_batch else record.value
                out.dead_letters.append(
                    DeadLetter(value, exc.reason, exc.detail, record, index if is_batch else None)
                )
        return out

    def _items(self, value: bytes) -> tuple[list[Any], bool]:
        """The record's sample objects, and whether it was a batch record."""
        if len(value) > self.max_record_bytes:
            raise CodecError("oversize", f"{len(value)} bytes > {self.max_record_bytes}")
        try:
            # NaN and Infinity parse here so that validation can name them as non-finite.
            raw = pydantic_core.from_json(value, allow_inf_nan=True)
        except ValueError as exc:
            raise CodecError("not_json", str(exc)) from None
        if isinstance(raw, dict) and "samples" in raw:
            samples = raw["samples"]
            if not isinstance(samples, list):
                raise CodecError("schema", "samples: must be a list of sample objects")
            if len(samples) > self.max_samples_per_record:
                raise CodecError(
                    "too_many_samples", f"{len(samples)} samples > {self.max_samples_per_record}"
                )
            return samples, True
        return [raw], False

    def decode_sample(self, item: Any, index: int | None = None) -> Sample:
        try:
            parsed = _SAMPLE.validate_python(item)
        except ValidationError as exc:
            raise _codec_error(exc) from None
        x = self._features(parsed.x)
        return Sample(
            x=x,
            y=self.check_label(parsed.y),
            id=self.check_id(parsed.id),
            task=_opt_str(parsed.task),
            ts=_timestamp(parsed.ts),
            index=index,
        )

    def check_id(self, value: str | int | None) -> str | None:
        id_ = _opt_str(value)
        if id_ is not None and len(id_) > self.max_id_chars:
            raise CodecError(
                "bad_id", f"id: {len(id_)} characters > engine.max_id_chars={self.max_id_chars}"
            )
        return id_

    def _features(self, x: list[float] | dict[str, float]) -> list[float]:
        if isinstance(x, dict):
            if self.features is None:
                raise CodecError("schema", "x: named features given but model.features is unset")
            missing = [name for name in self.features if name not in x]
            extra = [name for name in x if name not in set(self.features)]
            if missing or extra:
                raise CodecError(
                    "feature_count", f"x: missing features {missing}, unknown features {extra}"
                )
            return _in_range([float(x[name]) for name in self.features])
        if self.n_features is not None and len(x) != self.n_features:
            raise CodecError("feature_count", f"x: {len(x)} features, expected {self.n_features}")
        if not x:
            raise CodecError("feature_count", "x: empty")
        if self.n_features is None and len(x) > self.max_features:
            raise CodecError(
                "feature_count", f"x: {len(x)} features > model.max_features={self.max_features}"
            )
        return _in_range([float(v) for v in x])

    def check_label(self, y: Label | None) -> Label | None:
        if y is None:
            return None
        if self.task == "regression":
            if isinstance(y, str):
                raise CodecError("bad_label", f"y: regression needs a number, got {_short(y)}")
            if isinstance(y, int) and abs(y) > FLOAT32_MAX:  # float(y) itself may overflow
                raise CodecError(
                    "non_finite",
                    f"y: an integer of {y.bit_length()} bits is beyond float32's range",
                )
            target = float(y)
            if abs(target) > FLOAT32_MAX:
                raise CodecError("non_finite", f"y: {target:g} is beyond float32's range")
            return target
        if isinstance(y, float):
            if not y.is_integer():
                raise CodecError("bad_label", f"y: class labels are integers or strings, got {y}")
            y = int(y)
        if isinstance(y, str):
            if len(y) > self.max_label_chars:
                raise CodecError(
                    "bad_label",
                    f"y: a {len(y)}-character label > model.max_label_chars={self.max_label_chars}",
                )
        elif not INT64_MIN <= y <= INT64_MAX:
            # Not str(y): past 4300 digits Python refuses to convert it.
            raise CodecError(
                "bad_label",
                f"y: an integer of {y.bit_length()} bits is outside "
                "the int64 range of class labels",
            )
        return y


def _codec_error(exc: ValidationError) -> CodecError:
    errors = exc.errors()
    if errors[0]["type"] == "model_type":
        return CodecError("schema", "record: must be a JSON object with an 'x' field")
    # Every field is a union, which reports one error per member. A non-finite number is
    # the one to name; else the deepest error, from the member whose shape the input has:
    # x as an object with a bad value fails inside the mapping, not as "not a list".
    non_finite = [e for e in errors if e["type"] == "finite_number"]
    first = non_finite[0] if non_finite else max(errors, key=lambda e: len(e["loc"]))
    return CodecError(
        "non_finite" if non_finite else "schema", f"{_error_path(first['loc'])}: {first['msg']}"
    )


def _error_path(loc: tuple[int | str, ...]) -> str:
    """The field, then the index or key at fault (``x[2]``, ``x.age``); ``loc[1]`` is the
    union member's tag (``dict[str,float]``), not the user's."""
    if not loc:
        return "record"
    return str(loc[0]) + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[2:])


def _in_range(values: list[float]) -> list[float]:
    """``values`` if every one fits float32 (max and min run in C: the common case is cheap)."""
    if values and (max(values) > FLOAT32_MAX or min(values) < -FLOAT32_MAX):
        index = next(i for i, v in enumerate(values) if abs(v) > FLOAT32_MAX)
        raise CodecError(
            "non_finite",
            f"x[{index}]: {values[index]:g} is beyond float32's range (the model's dtype)",
        )
    return values


def _short(value: str) -> str:
    """A string for a detail message: hostile ones are long."""
    return repr(value) if len(value) <= 40 else repr(value[:40]) + f"... ({len(value)} chars)"


def _opt_str(value: str | int | None) -> str | None:
    return None if value is None else str(value)


def _timestamp(value: float | str | None) -> float | None:
    """Seconds since the epoch, or None when there is no usable one ("nan" included)."""
    if value is None or isinstance(value, float):
        return value
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) else None
