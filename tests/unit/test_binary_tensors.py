"""The binary tensor data extension's codec: exact bytes both ways, and every error by name."""

import json
import struct
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from streamlearn.core.errors import RequestError
from streamlearn.serve import binary
from streamlearn.serve.schemas import HeaderInput, RequestOutput
from streamlearn.serve.tensors import TensorOut

FP32_ROWS = struct.pack("<4f", 0.5, -1.0, 2.25, 0.0)


def header_input(
    name: str = "input",
    shape: Sequence[int] = (1, 4),
    datatype: str = "FP32",
    size: int | None = None,
    data: list[Any] | None = None,
    **extra: Any,
) -> HeaderInput:
    parameters: dict[str, Any] | None = (
        {"binary_data_size": size, **extra} if size is not None else extra or None
    )
    return HeaderInput(
        name=name, shape=list(shape), datatype=datatype, parameters=parameters, data=data
    )


def refused(call: Callable[..., object], *args: Any) -> tuple[int, str, str]:
    with pytest.raises(RequestError) as info:
        call(*args)
    return info.value.status, info.value.reason, info.value.message


# -- the request: header length, header JSON ---------------------------------------------


def test_split_cuts_the_header_from_the_binary_data() -> None:
    header, data = binary.split(b'{"a": 1}' + FP32_ROWS, "8")
    assert header == b'{"a": 1}' and bytes(data) == FP32_ROWS


def test_the_whole_body_may_be_the_header() -> None:
    header, data = binary.split(b"{}", "2")
    assert header == b"{}" and len(data) == 0


@pytest.mark.parametrize("value", ["", "abc", "-1", "1_0", "+3", "1.0", "\u00b2"])
def test_a_header_length_that_is_not_a_byte_count_is_400(value: str) -> None:
    assert refused(binary.split, b"{}", value) == (
        400,
        "bad_request",
        f"Inference-Header-Content-Length: {value!r} is not a byte count",
    )


def test_a_header_length_past_the_body_is_400() -> None:
    assert refused(binary.split, b"{}", "3") == (
        400,
        "bad_request",
        "Inference-Header-Content-Length: 3 is past the end of the 2-byte body",
    )


def test_the_header_is_json() -> None:
    assert binary.parse_header(b'{"inputs": []}') == {"inputs": []}


def test_a_header_that_is_not_json_is_400_naming_its_length() -> None:
    status, reason, message = refused(binary.parse_header, b'{"inputs": [')
    assert (status, reason) == (400, "malformed_json")
    assert message.startswith(
        "inference header (the first 12 bytes, from "
        "Inference-Header-Content-Length): malformed JSON at character 12"
    )


def test_a_header_that_is_not_utf8_is_400() -> None:
    assert refused(binary.parse_header, b'{"\xff": 1}') == (
        400,
        "malformed_json",
        "inference header (the first 8 bytes, from "
        "Inference-Header-Content-Length): not UTF-8 text",
    )


# -- the request: inputs ----------------------------------------------------------------


def test_binary_input_decodes_to_the_exact_values() -> None:
    (tensor,) = binary.tensors_in([header_input(size=16)], memoryview(FP32_ROWS))
    assert (tensor.name, tensor.datatype, tensor.shape) == ("input", "FP32", [1, 4])
    assert tensor.data.dtype == np.dtype("<f4") and tensor.data.tolist() == [0.5, -1, 2.25, 0]
    assert tensor.data.flags.writeable  # a copy, not a view of the request's bytes


def test_inputs_take_their_bytes_in_order_and_json_inputs_keep_their_data() -> None:
    data = np.array([1, -2], "<i8").tobytes() + np.array([3.5], "<f8").tobytes()
    inputs = [
        header_input("a", (1, 2), "INT64", size=16),
        header_input("b", (1, 1), "FP32", data=[[7]]),
        header_input("c", (1, 1), "FP64", size=8),
    ]
    a, b, c = binary.tensors_in(inputs, memoryview(data))
    assert a.data.tolist() == [1, -2] and b.data == [[7]] and c.data.tolist() == [3.5]


def test_a_size_past_the_end_of_the_body_is_400_naming_the_input() -> None:
    inputs = [header_input("a", size=8), header_input("b", size=16)]
    assert refused(binary.tensors_in, inputs, memoryview(FP32_ROWS)) == (
        400,
        "binary_data",
        "inputs[1] ('b'): parameters.binary_data_size is 16 bytes but only 8 are left in the body",
    )


def test_bytes_left_over_after_the_inputs_are_400_naming_the_last_binary_one() -> None:
    inputs = [header_input("a", size=12), header_input("b", data=[0, 0, 0, 0])]
    assert refused(binary.tensors_in, inputs, memoryview(FP32_ROWS)) == (
        400,
        "binary_data",
        "4 bytes left over after inputs[0] ('a'), the last binary input",
    )


def test_binary_data_with_no_binary_input_is_400() -> None:
    inputs = [header_input(data=[0, 0, 0, 0])]
    assert refused(binary.tensors_in, inputs, memoryview(FP32_ROWS)) == (
        400,
        "binary_data",
        "16 bytes left over after the inference header, and no input has "
        "parameters.binary_data_size",
    )


@pytest.mark.parametrize("size", [-1, True, "16", 1.5])
def test_a_size_that_is_not_a_byte_count_is_400(size: object) -> None:
    inputs = [
        HeaderInput(
            name="input", shape=[1, 4], datatype="FP32", parameters={"binary_data_size": size}
        )
    ]
    assert refused(binary.tensors_in, inputs, memoryview(FP32_ROWS)) == (
        400,
        "binary_data",
        f"inputs[0] ('input'): parameters.binary_data_size must be a byte count, not {size!r}",
    )


def test_data_and_a_binary_size_together_are_400() -> None:
    inputs = [header_input(size=16, data=[0, 0, 0, 0])]
    assert refused(binary.tensors_in, inputs, memoryview(FP32_ROWS)) == (
        400,
        "binary_data",
        "inputs[0] ('input'): both data and parameters.binary_data_size",
    )


def test_neither_data_nor_a_binary_size_is_422() -> None:
    assert refused(binary.tensors_in, [header_input()], memoryview(b"")) == (
        422,
        "schema",
        "inputs[0] ('input'): neither data nor parameters.binary_data_size",
    )


def test_shared_memory_inputs_are_refused() -> None:
    inputs = [header_input(shared_memory_region="r", shared_memory_byte_size=16)]
    assert refused(binary.tensors_in, inputs, memoryview(b"")) == (
        422,
        "unsupported",
        "inputs[0] ('input'): the shared memory extension "
        "(parameters.shared_memory_region) is not supported",
    )


def test_bytes_that_are_not_whole_values_are_422_naming_the_input() -> None:
    assert refused(binary.tensors_in, [header_input(size=15)], memoryview(FP32_ROWS[:15])) == (
        422,
        "shape",
        "inputs[0] ('input'): 15 bytes is not a whole number of FP32 values",
    )


def test_a_datatype_without_a_numeric_layout_is_left_for_the_feature_checks() -> None:
    raw = struct.pack("<I", 1) + b"a"
    (tensor,) = binary.tensors_in([header_input(datatype="BYTES", size=5)], memoryview(raw))
    assert tensor.datatype == "BYTES" and tensor.data.size == 0


# -- output options ---------------------------------------------------------------------


def outputs(*specs: tuple[str, dict[str, Any] | None]) -> list[RequestOutput]:
    return [RequestOutput(name=name, parameters=parameters) for name, parameters in specs]


def test_outputs_are_json_unless_asked_for() -> None:
    choice = binary.binary_outputs(None, None)
    assert not choice.wanted("predictions")


def test_binary_data_output_sets_the_default_and_each_output_can_override_it() -> None:
    choice = binary.binary_outputs(
        {"binary_data_output": True},
        outputs(("predictions", {"binary_data": False}), ("classes", None)),
    )
    assert not choice.wanted("predictions")
    assert choice.wanted("classes") and choice.wanted("probabilities")
    one = binary.binary_outputs(None, outputs(("classes", {"binary_data": True})))
    assert one.wanted("classes") and not one.wanted("predictions")


def test_a_flag_that_is_not_a_bool_is_422() -> None:
    assert refused(binary.binary_outputs, {"binary_data_output": "yes"}, None) == (
        422,
        "schema",
        "parameters.binary_data_output must be true or false, not 'yes'",
    )
    assert refused(binary.binary_outputs, None, outputs(("classes", {"binary_data": 1}))) == (
        422,
        "schema",
        "outputs[0] ('classes'): parameters.binary_data must be true or false, not 1",
    )


def test_classification_and_shared_memory_outputs_are_refused() -> None:
    status, reason, message = refused(
        binary.binary_outputs,
        None,
        outputs(("probabilities", {"classification": 2, "binary_data": True})),
    )
    assert (status, reason) == (422, "unsupported")
    assert message.startswith("outputs[0] ('probabilities'): parameters.classification")
    assert refused(
        binary.binary_outputs,
        None,
        outputs(("classes", {"shared_memory_region": "r", "binary_data": False})),
    ) == (
        422,
        "unsupported",
        "outputs[0] ('classes'): the shared memory extension "
        "(parameters.shared_memory_region) is not supported",
    )


# -- the response -----------------------------------------------------------------------


def answer() -> tuple[dict[str, Any], list[TensorOut]]:
    tensors = [
        TensorOut("predictions", "BYTES", [2], ["cat", "é"]),
        TensorOut("probabilities", "FP32", [2, 2], [0.25, 0.75, 1.0, 0.0]),
        TensorOut("classes", "INT64", [2], [0, 1]),
    ]
    content: dict[str, Any] = {
        "model_name": "m",
        "model_version": "3",
        "id": None,
        "parameters": {},
        "outputs": [
            {"name": t.name, "datatype": t.datatype, "shape": t.shape, "data": t.data}
            for t in tensors
        ],
    }
    return content, tensors


def test_nothing_binary_means_plain_json() -> None:
    content, tensors = answer()
    assert binary.encode(content, tensors, binary.BinaryOutputs()) is None


def test_binary_outputs_follow_the_json_header_in_output_order() -> None:
    content, tensors = answer()
    choice = binary.BinaryOutputs(default=True, named={"probabilities": False})
    encoded = binary.encode(content, tensors, choice)
    assert encoded is not None
    body, length = encoded
    header = json.loads(body[:length])
    labels = b"\x03\x00\x00\x00cat\x02\x00\x00\x00\xc3\xa9"
    classes = b"\x00" * 8 + b"\x01" + b"\x00" * 7
    assert body[length:] == labels + classes
    predictions, probabilities, classes_out = header["outputs"]
    assert predictions == {
        "name": "predictions",
        "datatype": "BYTES",
        "shape": [2],
        "parameters": {"binary_data_size": len(labels)},
    }
    assert classes_out["parameters"] == {"binary_data_size": 16} and "data" not in classes_out
    assert probabilities["data"] == [0.25, 0.75, 1.0, 0.0]
    assert {k: header[k] for k in ("model_name", "model_version")} == {
        "model_name": "m",
        "model_version": "3",
    }
    assert content["outputs"][0]["data"] == ["cat", "é"]  # the caller's content is untouched


def test_fp32_outputs_are_little_endian_float32() -> None:
    content, tensors = answer()
    encoded = binary.encode(content, tensors, binary.BinaryOutputs(named={"probabilities": True}))
    assert encoded is not None
    body, length = encoded
    assert body[length:] == struct.pack("<4f", 0.25, 0.75, 1.0, 0.0)


def test_tritonclient_reads_what_encode_writes() -> None:
    utils = pytest.importorskip("tritonclient.utils")
    http = pytest.importorskip("tritonclient.http")
    content, tensors = answer()
    encoded = binary.encode(content, tensors, binary.BinaryOutputs(default=True))
    assert encoded is not None
    body, length = encoded
    result = http.InferResult.from_response_body(body, header_length=length)
    assert result.as_numpy("predictions").tolist() == [b"cat", "é".encode()]
    assert result.as_numpy("probabilities").tolist() == [[0.25, 0.75], [1.0, 0.0]]
    assert result.as_numpy("classes").dtype == np.int64
    assert utils.deserialize_bytes_tensor(body[length : length + 13]).tolist() == [
        b"cat",
        "é".encode(),
    ]
