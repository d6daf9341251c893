"""Open Inference Protocol v2 tensors <-> torch, shared by the HTTP and gRPC front ends.

Inputs arrive as nested or flat row-major JSON lists (HTTP JSON) or as typed arrays (gRPC
contents, or raw little-endian bytes from gRPC ``raw_input_contents`` and the HTTP binary
tensor data extension). Every check names the input at fault, and each failure has its own
``reason`` label for the rejected-requests metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from streamlearn.core.errors import RequestError
from streamlearn.core.types import Label

#: Datatypes accepted for the feature tensor, with their little-endian numpy types (raw bytes).
NUMPY_TYPES: dict[str, str] = {
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
    "INT8": "i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
}
_UNPROCESSABLE = 422


@dataclass(slots=True)
class TensorIn:
    """An input tensor as a front end received it, before it is checked and converted."""

    name: str
    datatype: str
    shape: list[int]
    data: Any  # nested or flat lists (HTTP JSON), or a numpy array (gRPC, HTTP binary)


@dataclass(slots=True)
class TensorOut:
    """An output tensor, ready for either front end to encode."""

    name: str
    datatype: str
    shape: list[int]
    data: list[Any]
    parameters: dict[str, Any] = field(default_factory=dict)


def _invalid(reason: str, where: str, message: str) -> RequestError:
    return RequestError(_UNPROCESSABLE, reason, f"{where}: {message}")


def to_features(tensor: TensorIn, where: str, n_features: int, max_rows: int) -> Tensor:
    """The input as a float32 batch ``[rows, n_features]``, or a 422 naming what is wrong."""
    if tensor.datatype not in NUMPY_TYPES:
        raise _invalid(
            "datatype",
            where,
            f"datatype {tensor.datatype!r} is not supported; use one of {', '.join(NUMPY_TYPES)}",
        )
    shape = tensor.shape
    if len(shape) != 2 or any(d < 0 for d in shape):
        raise _invalid("shape", where, f"shape {shape} must be [rows, {n_features}]")
    if shape[1] != n_features:
        raise _invalid(
            "feature_count",
            where,
            f"shape {shape}: {shape[1]} features, the model takes {n_features}",
        )
    if shape[0] > max_rows:
        raise _invalid(
            "batch_too_large", where, f"{shape[0]} rows > serve.max_batch_rows={max_rows}"
        )
    array = _as_array(tensor, where)
    if array.size != shape[0] * shape[1]:
        raise _invalid(
            "shape",
            where,
            f"data has {array.size} values, shape {shape} needs {shape[0] * shape[1]}",
        )
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise _invalid("non_finite", where, "data contains NaN or Infinity")
    with np.errstate(over="ignore"):
        features = array.astype(np.float32, copy=False)
    # A finite FP64 value past float32's range (1e300) is infinite to the model, as the
    # codec says of learned samples: refused alike.
    if array.dtype.kind == "f" and not np.isfinite(features).all():
        raise _invalid(
            "non_finite", where, "data contains values beyond float32's range (the model's dtype)"
        )
    return torch.from_numpy(features.reshape(shape))


def _as_array(tensor: TensorIn, where: str) -> np.ndarray[Any, Any]:
    if isinstance(tensor.data, np.ndarray):
        return tensor.data
    try:
        # No dtype given: numpy would otherwise turn "1.5" into 1.5 and 2.7 into INT 2.
        array = np.asarray(tensor.data)
    except (ValueError, TypeError, OverflowError):
        array = np.asarray([None])  # ragged nesting: reported below as not numbers
    integer = not tensor.datatype.startswith("FP")
    allowed = array.dtype.kind in ("iu" if integer else "iuf")
    if not allowed and not (integer and array.dtype.kind == "f" and _integral(array)):
        kind = "integers" if integer else "numbers"
        raise _invalid(
            "datatype",
            where,
            f"data must be a flat or nested list of {kind} for datatype {tensor.datatype}",
        )
    return array


def _integral(array: np.ndarray[Any, Any]) -> bool:
    return bool(np.isfinite(array).all() and (array == np.floor(array)).all())


def from_raw(raw: bytes | memoryview, datatype: str, where: str) -> np.ndarray[Any, Any]:
    """Raw little-endian row-major bytes as a flat array of ``datatype``.

    A datatype with no numeric layout (BYTES, BOOL, ...) gives an empty array:
    :func:`to_features` then refuses it by name.
    """
    if datatype not in NUMPY_TYPES:
        return np.empty(0)
    try:
        array = np.frombuffer(raw, dtype=NUMPY_TYPES[datatype])
    except ValueError:
        raise _invalid(
            "shape", where, f"{len(raw)} bytes is not a whole number of {datatype} values"
        ) from None
    # A copy: a view of the request's bytes is read-only, which torch.from_numpy warns about.
    return array.copy()


def to_raw(tensor: TensorOut) -> bytes:
    """An output in the v2 raw layout: little-endian row-major values, or for BYTES each
    element as its 4-byte little-endian length followed by its UTF-8 bytes."""
    if tensor.datatype == "BYTES":
        encoded = [str(v).encode() for v in tensor.data]
        return b"".join(len(e).to_bytes(4, "little") + e for e in encoded)
    return np.asarray(tensor.data, dtype=NUMPY_TYPES[tensor.datatype]).tobytes()


def label_tensor(
    name: str, values: Sequence[Label], labels: Sequence[Label] | None = None
) -> TensorOut:
    """``values`` typed by the model's label set ``labels`` (``values`` itself when omitted):
    INT64 when every label is an integer, else BYTES (strings). The set, never the rows,
    decides: a typed v2 client reads the datatype from the metadata and must get it back
    whichever labels a request happens to predict."""
    datatype = label_datatype(values if labels is None else labels)
    if datatype == "INT64":
        return TensorOut(name, datatype, [len(values)], list(values))
    return TensorOut(name, datatype, [len(values)], [str(v) for v in values])


def label_datatype(labels: Sequence[Label]) -> str:
    """The v2 datatype of a label set (INT64 before any label is known)."""
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in labels)
    return "INT64" if ints else "BYTES"
