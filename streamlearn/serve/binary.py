"""The binary tensor data extension of the Open Inference Protocol v2 over HTTP.

Spec: "Binary Tensor Data Extension", docs/protocol/extension_binary_data.md in
triton-inference-server/server (KServe publishes the same text). ``tritonclient.http`` uses
it by default.

A request with the header ``Inference-Header-Content-Length: N`` is N bytes of JSON (the
usual inference request, except that an input with ``parameters.binary_data_size: K`` has no
``data``) followed by the data of those inputs, K bytes each, in input order: little-endian
and row-major, or for BYTES each element as a 4-byte little-endian length then its bytes.

Outputs asked for as binary (``parameters.binary_data`` on the output, else
``parameters.binary_data_output`` on the request) come back the same way: the JSON response,
whose binary outputs carry ``parameters.binary_data_size`` instead of ``data``, then their
bytes in output order, with ``Inference-Header-Content-Length`` giving the JSON's length.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streamlearn.core.errors import RequestError
from streamlearn.serve.schemas import HeaderInput, Parameters, RequestOutput
from streamlearn.serve.tensors import TensorIn, TensorOut, from_raw, to_raw

HEADER = "Inference-Header-Content-Length"
MEDIA_TYPE = "application/octet-stream"


def split(body: bytes, header_length: str) -> tuple[bytes, memoryview]:
    """The JSON header and the binary data after it; 400 unless the length fits the body."""
    if not (header_length.isascii() and header_length.isdigit()):
        raise RequestError(400, "bad_request", f"{HEADER}: {header_length!r} is not a byte count")
    length = int(header_length)
    if length > len(body):
        raise RequestError(
            400, "bad_request", f"{HEADER}: {length} is past the end of the {len(body)}-byte body"
        )
    return body[:length], memoryview(body)[length:]


def parse_header(header: bytes) -> Any:
    """The JSON of the header; its length is named, as a wrong one is the usual cause."""
    where = f"inference header (the first {len(header)} bytes, from {HEADER})"
    try:
        return json.loads(header)
    except json.JSONDecodeError as exc:
        raise RequestError(
            400, "malformed_json", f"{where}: malformed JSON at character {exc.pos}: {exc.msg}"
        ) from None
    except UnicodeDecodeError:
        raise RequestError(400, "malformed_json", f"{where}: not UTF-8 text") from None


def tensors_in(inputs: Sequence[HeaderInput], data: memoryview) -> list[TensorIn]:
    """The header's inputs, binary ones cut in order from ``data``, which they must use up."""
    tensors: list[TensorIn] = []
    offset = 0
    last: str | None = None  # the last binary input, named when bytes are left over
    for index, tensor in enumerate(inputs):
        where = f"inputs[{index}] ({tensor.name!r})"
        size = _binary_size(tensor, where)
        values: Any = tensor.data
        if size is not None:
            values = from_raw(_take(data, offset, size, where), tensor.datatype, where)
            offset, last = offset + size, where
        tensors.append(TensorIn(tensor.name, tensor.datatype, tensor.shape, values))
    if offset != len(data):
        after = (
            f"{last}, the last binary input"
            if last
            else "the inference header, and no input has parameters.binary_data_size"
        )
        raise RequestError(
            400, "binary_data", f"{len(data) - offset} bytes left over after {after}"
        )
    return tensors


def _take(data: memoryview, offset: int, size: int, where: str) -> memoryview:
    left = len(data) - offset
    if size > left:
        raise RequestError(
            400,
            "binary_data",
            f"{where}: parameters.binary_data_size is "
            f"{size} bytes but only {left} are left in the body",
        )
    return data[offset : offset + size]


def _binary_size(tensor: HeaderInput, where: str) -> int | None:
    parameters = tensor.parameters or {}
    if "shared_memory_region" in parameters:
        raise _unsupported(where, "the shared memory extension (parameters.shared_memory_region)")
    size = parameters.get("binary_data_size")
    if size is None:
        if tensor.data is None:
            raise RequestError(
                422, "schema", f"{where}: neither data nor parameters.binary_data_size"
            )
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise RequestError(
            400,
            "binary_data",
            f"{where}: parameters.binary_data_size must be a byte count, not {size!r}",
        )
    if tensor.data is not None:
        raise RequestError(
            400, "binary_data", f"{where}: both data and parameters.binary_data_size"
        )
    return size


def _unsupported(where: str, what: str) -> RequestError:
    return RequestError(422, "unsupported", f"{where}: {what} is not supported")


@dataclass(frozen=True, slots=True)
class BinaryOutputs:
    """Which outputs go back as binary: by name, else the request's default."""

    default: bool = False
    named: dict[str, bool] = field(default_factory=dict)

    def wanted(self, name: str) -> bool:
        return self.named.get(name, self.default)


def binary_outputs(
    parameters: Parameters | None, outputs: Sequence[RequestOutput] | None
) -> BinaryOutputs:
    """The request's output options, checked before any work is done."""
    default = _flag(parameters, "binary_data_output", "", False)
    named: dict[str, bool] = {}
    for index, output in enumerate(outputs or ()):
        where = f"outputs[{index}] ({output.name!r})"
        _check_output(output.parameters or {}, where)
        named[output.name] = _flag(output.parameters, "binary_data", f"{where}: ", default)
    return BinaryOutputs(default, named)


def _flag(parameters: Parameters | None, key: str, prefix: str, default: bool) -> bool:
    value = (parameters or {}).get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RequestError(
            422, "schema", f"{prefix}parameters.{key} must be true or false, not {value!r}"
        )
    return value


def _check_output(parameters: Parameters, where: str) -> None:
    # tritonclient's InferRequestedOutput(class_count=k) asks for Triton's top-k strings.
    if "classification" in parameters:
        raise _unsupported(
            where,
            "parameters.classification (top-k class strings); the "
            "'probabilities' and 'classes' outputs give every class",
        )
    if "shared_memory_region" in parameters:
        raise _unsupported(where, "the shared memory extension (parameters.shared_memory_region)")


def encode(
    content: dict[str, Any], outputs: Sequence[TensorOut], binary: BinaryOutputs
) -> tuple[bytes, int] | None:
    """The response body in the extension's layout and its JSON header's length, or None
    when no output is binary (the response is then plain JSON).

    ``content["outputs"][i]`` is the JSON form of ``outputs[i]``.
    """
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for entry, tensor in zip(content["outputs"], outputs, strict=True):
        if not binary.wanted(tensor.name):
            entries.append(entry)
            continue
        chunks.append(to_raw(tensor))
        parameters = {**tensor.parameters, "binary_data_size": len(chunks[-1])}
        entries.append(
            {**{k: v for k, v in entry.items() if k != "data"}, "parameters": parameters}
        )
    if not chunks:
        return None
    header = _render({**content, "outputs": entries})
    return header + b"".join(chunks), len(header)


def _render(content: dict[str, Any]) -> bytes:
    # As starlette's JSONResponse renders, so both forms of a response read the same.
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")
