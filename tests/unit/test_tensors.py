"""v2 tensor decoding: exact messages and reasons for every way an input can be wrong."""

import numpy as np
import pytest

from streamlearn.errors import RequestError
from streamlearn.serve.tensors import TensorIn, label_tensor, to_features


def decode(datatype, shape, data, n_features=2, max_rows=10):
    return to_features(TensorIn("input", datatype, shape, data), "inputs[0]", n_features,
                       max_rows)


@pytest.mark.parametrize("data", [[1, 2, 3, 4], [[1, 2], [3, 4]]])
@pytest.mark.parametrize("datatype", ["FP32", "FP64", "INT8", "INT64", "UINT16"])
def test_flat_and_nested_data_in_every_numeric_datatype(data, datatype):
    out = decode(datatype, [2, 2], data)
    assert out.dtype.is_floating_point and out.tolist() == [[1, 2], [3, 4]]


def test_typed_arrays_from_grpc_pass_through():
    out = decode("FP16", [1, 2], np.array([0.5, 1.5], "<f2"))
    assert out.tolist() == [[0.5, 1.5]]


@pytest.mark.parametrize(("datatype", "shape", "data", "reason", "message"), [
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
])
def test_each_fault_has_its_reason_and_names_the_input(datatype, shape, data, reason, message):
    with pytest.raises(RequestError) as info:
        decode(datatype, shape, data)
    assert info.value.status == 422 and info.value.reason == reason
    assert info.value.message.startswith("inputs[0]: ") and message in info.value.message


def test_integral_floats_are_fine_for_int_datatypes():
    assert decode("INT64", [1, 2], [1.0, 2.0]).tolist() == [[1, 2]]


def test_labels_are_int64_when_all_integers_else_bytes():
    assert label_tensor("p", [0, 1]).datatype == "INT64"
    mixed = label_tensor("p", ["cat", 2])
    assert (mixed.datatype, mixed.data) == ("BYTES", ["cat", "2"])
