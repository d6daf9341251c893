"""v2 tensor decoding: exact messages and reasons for every way an input can be wrong."""

from typing import Any

import numpy as np
import pytest
import torch

from streamlearn.core.errors import RequestError
from streamlearn.serve.tensors import (
    TensorIn,
    TensorOut,
    from_raw,
    label_tensor,
    to_features,
    to_raw,
)


def decode(
    datatype: str, shape: list[int], data: Any, n_features: int = 2, max_rows: int = 10
) -> torch.Tensor:
    return to_features(TensorIn("input", datatype, shape, data), "inputs[0]", n_features, max_rows)


@pytest.mark.parametrize("data", [[1, 2, 3, 4], [[1, 2], [3, 4]]])
@pytest.mark.parametrize("datatype", ["FP32", "FP64", "INT8", "INT64", "UINT16"])
def test_flat_and_nested_data_in_every_numeric_datatype(data: list[Any], datatype: str) -> None:
    out = decode(datatype, [2, 2], data)
    assert out.dtype.is_floating_point and out.tolist() == [[1, 2], [3, 4]]


def test_typed_arrays_from_grpc_pass_through() -> None:
    out = decode("FP16", [1, 2], np.array([0.5, 1.5], "<f2"))
    assert out.tolist() == [[0.5, 1.5]]


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "reason", "message"),
    [
        ("BYTES", [1, 2], ["a", "b"], "datatype", "datatype 'BYTES' is not supported"),
        ("FP32", [2], [1, 2], "shape", "shape [2] must be [rows, 2]"),
        ("FP32", [1, -2], [1, 2], "shape", "shape [1, -2] must be [rows, 2]"),
        ("FP32", [1, 3], [1, 2, 3], "feature_count", "3 features, the model takes 2"),
        ("FP32", [11, 2], [0] * 22, "batch_too_large", "11 rows > serve.max_batch_rows=10"),
        ("FP32", [2, 2], [1, 2, 3], "shape", "data has 3 values, shape [2, 2] needs 4"),
        ("FP32", [1, 2], [[1], [2, 3]], "datatype", "list of numbers"),
        ("FP32", [1, 2], ["1", 2], "datatype", "list of numbers"),
        ("FP32", [1, 2], [True, False], "datatype", "list of numbers"),
        ("INT32", [1, 2], [1.5, 2], "datatype", "list of integers"),
        ("FP32", [1, 2], [float("inf"), 2], "non_finite", "NaN or Infinity"),
        ("FP64", [1, 2], [float("nan"), 2], "non_finite", "NaN or Infinity"),
    ],
)
def test_each_fault_has_its_reason_and_names_the_input(
    datatype: str, shape: list[int], data: list[Any], reason: str, message: str
) -> None:
    with pytest.raises(RequestError) as info:
        decode(datatype, shape, data)
    assert info.value.status == 422 and info.value.reason == reason
    assert info.value.message.startswith("inputs[0]: ") and message in info.value.message


def test_integral_floats_are_fine_for_int_datatypes() -> None:
    assert decode("INT64", [1, 2], [1.0, 2.0]).tolist() == [[1, 2]]


def test_labels_are_int64_when_all_integers_else_bytes() -> None:
    assert label_tensor("p", [0, 1]).datatype == "INT64"
    mixed = label_tensor("p", ["cat", 2])
    assert (mixed.datatype, mixed.data) == ("BYTES", ["cat", "2"])


@pytest.mark.parametrize(
    ("datatype", "values"),
    [
        ("FP16", [0.5, -2.0]),
        ("FP32", [1.5, -0.25]),
        ("FP64", [1e-300, 2.0]),
        ("INT8", [-128, 127]),
        ("UINT16", [0, 65535]),
        ("INT64", [-(2**63), 2**63 - 1]),
    ],
)
def test_raw_bytes_round_trip_exactly(datatype: str, values: list[float]) -> None:
    raw = to_raw(TensorOut("t", datatype, [2], values))
    array = from_raw(raw, datatype, "t")
    # The array itself goes back in, not a list (TensorOut.data says list): on purpose.
    assert array.tolist() == values and to_raw(TensorOut("t", datatype, [2], array)) == raw  # type: ignore[arg-type]
    assert array.flags.writeable  # torch.from_numpy warns about read-only views


def test_raw_layout_is_little_endian_and_bytes_are_length_prefixed() -> None:
    assert to_raw(TensorOut("t", "INT64", [1], [1])) == b"\x01" + b"\x00" * 7
    assert to_raw(TensorOut("t", "BYTES", [2], ["ab", ""])) == (
        b"\x02\x00\x00\x00ab\x00\x00\x00\x00"
    )


def test_raw_bytes_that_are_not_whole_values_name_where() -> None:
    with pytest.raises(RequestError) as info:
        from_raw(b"\x00" * 6, "FP32", "raw_input_contents[0]")
    assert (info.value.status, info.value.reason, info.value.message) == (
        422,
        "shape",
        "raw_input_contents[0]: 6 bytes is not a whole number of FP32 values",
    )


def test_raw_data_of_a_non_numeric_datatype_is_refused_by_the_feature_checks() -> None:
    array = from_raw(b"\x01\x00\x00\x00a", "BYTES", "inputs[0]")
    with pytest.raises(RequestError, match="datatype 'BYTES' is not supported"):
        decode("BYTES", [1, 1], array, n_features=1)
