"""Label records (``{"id": ..., "y": ...}``) -> (id, label), bad ones -> a reason.

The id and the label are held to the same bounds as a sample's (``Codec.check_id``,
``Codec.check_label``), so a joined label is one the engine would have taken inline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import pydantic_core
from pydantic import BaseModel, ConfigDict, Strict, TypeAdapter, ValidationError

from streamlearn.core.codecs import Codec
from streamlearn.core.errors import CodecError
from streamlearn.core.types import Label

_MAX_LABEL_RECORD_BYTES = 64 * 1024  # an id and a label: anything bigger is hostile


class LabelIn(BaseModel):
    """A late label as the labels topic carries it."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    id: Annotated[int, Strict()] | str
    y: Annotated[int, Strict()] | Annotated[float, Strict()] | str


_LABEL = TypeAdapter(LabelIn)


@dataclass(frozen=True, slots=True)
class LateLabel:
    """A late label as decoded: the sample's id and its label."""

    id: str
    y: Label


def decode_label(codec: Codec, value: bytes) -> LateLabel:
    """The record's id and label; ``CodecError`` (reason, detail naming the field) if not."""
    if len(value) > _MAX_LABEL_RECORD_BYTES:
        raise CodecError("oversize", f"{len(value)} bytes > {_MAX_LABEL_RECORD_BYTES}")
    try:
        raw = pydantic_core.from_json(value)
    except ValueError as exc:
        raise CodecError("not_json", str(exc)) from None
    if not isinstance(raw, dict):
        raise CodecError("schema", 'label record: must be a JSON object {"id": ..., "y": ...}')
    for name in ("id", "y"):
        if raw.get(name) is None:
            raise CodecError("schema", f"{name}: a label record needs it (null or missing)")
    try:
        parsed = _LABEL.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "record"
        raise CodecError("schema", f"{field}: {first['msg']}") from None
    id_ = codec.check_id(parsed.id)
    y = codec.check_label(parsed.y)
    assert id_ is not None and y is not None  # both checked present above
    return LateLabel(id_, y)
