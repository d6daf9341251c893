"""Near-valid requests to the running service: deeper than the document can generate.

Schemathesis (test_http_schemathesis.py) builds bodies from the OpenAPI schemas, which know
nothing of tensor datatypes, shapes, the binary extension's byte counts or the model's 4
features, so most of its infer and learn requests stop at the first check. These are built to
get past the early checks and break one thing deep inside: values at float32's edges,
datatypes against data, shapes against data sizes, binary byte counts, output options,
batches of samples with one bad one. Properties: never a 5xx; an error is the v2 error body;
a 200 is a well-formed answer with one finite row per input row; a learn batch is taken whole
or refused whole.
"""

from __future__ import annotations

import json
import math
import os
import struct
from typing import Any, Literal

import httpx
import numpy as np
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from streamlearn.serve import binary
from tests.fuzz.conftest import AUTH
from tests.serving.conftest import N_FEATURES, Running

INFER = "/v2/models/streamlearn/infer"
JSON = {"Content-Type": "application/json"}
PHASES = (Phase.explicit, Phase.generate) + (
    (Phase.shrink,) if os.environ.get("STREAMLEARN_FUZZ_SHRINK") else ()
)
DATATYPES = [
    "FP16",
    "FP32",
    "FP64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
]
NUMPY = {
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
# Bits of a float of that many bytes, as st.floats(width=...) takes them.
FLOAT_WIDTH: dict[int, Literal[16, 32, 64]] = {2: 16, 4: 32, 8: 64}
OUTPUTS = ["predictions", "probabilities", "classes", "experts"]


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=PHASES,
        suppress_health_check=list(HealthCheck),
    )


VALUE = st.one_of(
    st.floats(-1e3, 1e3),
    st.integers(-(2**8), 2**8),
    st.floats(allow_nan=False),  # float32's edges and far past them
    st.sampled_from(
        [
            3.4028234e38,
            -3.4028234e38,
            3.5e38,
            1e-45,
            -0.0,
            2**63,
            2**64 - 1,
            -(2**63),
            2**64,
            10**30,
        ]
    ),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.lists(st.integers(0, 3), max_size=2),
)


def good_values(datatype: str, count: int) -> st.SearchStrategy[list[Any]]:
    if datatype.startswith("FP"):
        return st.lists(st.floats(-10, 10), min_size=count, max_size=count)
    low = 0 if datatype.startswith("U") else -100
    return st.lists(st.integers(low, 100), min_size=count, max_size=count)


@st.composite
def json_infer(draw: st.DrawFn) -> bytes:
    """A valid infer request with zero, one or two things broken or pushed to an edge."""
    rows = draw(st.integers(1, 4))
    datatype = draw(st.sampled_from(["FP32", "FP32", "FP64", *DATATYPES]))
    values = draw(good_values(datatype, rows * N_FEATURES))
    shape: Any = [rows, N_FEATURES]
    tensor: dict[str, Any] = {"name": "input", "datatype": datatype}
    body: dict[str, Any] = {}
    for change in draw(
        st.lists(
            st.sampled_from(
                [
                    "value",
                    "value",
                    "value",
                    "datatype",
                    "shape",
                    "count",
                    "empty",
                    "name",
                    "inputs",
                    "parameters",
                ]
            ),
            max_size=2,
        )
    ):
        if change == "value" and values:
            values[draw(st.integers(0, len(values) - 1))] = draw(VALUE)
        elif change == "datatype":
            tensor["datatype"] = draw(st.sampled_from(["BYTES", "BOOL", "fp32", "", "FP8"]))
        elif change == "shape":
            shape = draw(
                st.one_of(
                    st.lists(st.integers(-2, 2**64), max_size=3),
                    st.just([rows, N_FEATURES + 1]),
                    st.just([N_FEATURES]),
                )
            )
        elif change == "count":
            values = values[1:] if draw(st.booleans()) else [*values, 1.0]
        elif change == "empty":
            values, shape = [], [0, N_FEATURES]
        elif change == "name":
            tensor["name"] = draw(st.sampled_from(["x", "", "INPUT"]))
        elif change == "inputs":
            body["inputs"] = (
                [] if draw(st.booleans()) else [{**tensor, "shape": shape, "data": values}] * 2
            )
        elif change == "parameters":
            tensor["parameters"] = draw(
                st.sampled_from([{"binary_data_size": 4}, {"shared_memory_region": "r"}])
            )
    nested = (
        draw(st.booleans()) and len(values) == rows * N_FEATURES and shape == [rows, N_FEATURES]
    )
    tensor["shape"] = shape
    tensor["data"] = (
        [values[r * N_FEATURES : (r + 1) * N_FEATURES] for r in range(rows)] if nested else values
    )
    body.setdefault("inputs", [tensor])
    if draw(st.booleans()):
        body["outputs"] = [
            {"name": name, **({"parameters": {"binary_data": flag}} if flag is not None else {})}
            for name, flag in draw(
                st.lists(
                    st.tuples(
                        st.sampled_from([*OUTPUTS, *OUTPUTS, "nope"]),
                        st.sampled_from([None, None, True, False, 1]),
                    ),
                    max_size=3,
                )
            )
        ]
    if draw(st.booleans()):
        body["parameters"] = {"binary_data_output": draw(st.sampled_from([True, False, "yes"]))}
    if draw(st.booleans()):
        body["id"] = draw(st.one_of(st.text(max_size=8), st.text(max_size=8), st.integers()))
    return json.dumps(body).encode()  # NaN and Infinity spelled as JavaScript does


@st.composite
def binary_infer(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """A valid binary-extension request with zero or one thing broken or at an edge."""
    rows = draw(st.integers(0, 3))
    datatype = draw(st.sampled_from(["FP32", "FP32", *DATATYPES]))
    dtype = np.dtype(NUMPY[datatype])
    count = rows * N_FEATURES
    change = draw(
        st.sampled_from(
            [
                None,
                None,
                None,
                "values",
                "values",
                "size",
                "length",
                "leftover",
                "bytes_type",
                "width",
            ]
        )
    )
    if dtype.kind == "f":
        floats = (
            st.floats(width=FLOAT_WIDTH[dtype.itemsize])
            if change == "values"
            else st.floats(-10, 10)
        )
        raw = np.array([draw(floats) for _ in range(count)], dtype=dtype).tobytes()
    else:
        info = np.iinfo(dtype)
        ints = (
            st.integers(int(info.min), int(info.max)) if change == "values" else st.integers(0, 100)
        )
        raw = np.array([draw(ints) for _ in range(count)], dtype=dtype).tobytes()
    shape = [rows, N_FEATURES + 1 if change == "width" else N_FEATURES]
    size: Any = len(raw)
    if change == "size":
        size = draw(st.sampled_from([len(raw) - 1, len(raw) + 1, -1, "4", None]))
    if change == "leftover":
        raw += draw(st.binary(min_size=1, max_size=3))
    if change == "bytes_type":
        datatype, raw = "BYTES", b"".join(struct.pack("<I", 1) + b"a" for _ in range(count))
        size = len(raw)
    tensor = {
        "name": "input",
        "datatype": datatype,
        "shape": shape,
        "parameters": {"binary_data_size": size},
    }
    header: dict[str, Any] = {"inputs": [tensor]}
    if draw(st.booleans()):
        header["parameters"] = {"binary_data_output": True}
    head = json.dumps(header).encode()
    length = str(len(head))
    if change == "length":
        length = draw(
            st.sampled_from(
                [str(len(head) - 1), str(len(head) + 1), "-1", "x", "", str(10**6), "1e3"]
            )
        )
    return head + raw, {binary.HEADER: length, "Content-Type": binary.MEDIA_TYPE}


def answered(response: httpx.Response) -> None:
    """Never a 5xx; an error is ``{"error": "..."}``."""
    event(f"HTTP {response.status_code}")  # --hypothesis-show-statistics: how deep it got
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and isinstance(body["error"], str), body


def check_infer_answer(response: httpx.Response) -> None:
    answered(response)
    if response.status_code != 200:
        return
    length = response.headers.get(binary.HEADER)
    content = response.content if length is None else response.content[: int(length)]
    body = json.loads(content)  # strict JSON: a NaN would not parse in other clients
    assert body["model_name"] == "streamlearn" and body["outputs"]
    for output in body["outputs"]:
        values = output.get("data")
        if output["datatype"] in ("FP32", "FP64") and values is not None:
            assert all(math.isfinite(v) for v in values), output


@fuzz_settings(250)
@given(json_infer())
def test_json_infer_requests_near_the_edges_never_get_a_5xx(fuzzed: Running, body: bytes) -> None:
    check_infer_answer(fuzzed.http.post(INFER, content=body, headers=JSON))


@fuzz_settings(120)
@given(binary_infer())
def test_binary_infer_requests_near_the_edges_never_get_a_5xx(
    fuzzed: Running, sent: tuple[bytes, dict[str, str]]
) -> None:
    body, headers = sent
    check_infer_answer(fuzzed.http.post(INFER, content=body, headers=headers))


GOOD_SAMPLE = st.fixed_dictionaries(
    {
        "x": st.lists(st.floats(-10, 10), min_size=N_FEATURES, max_size=N_FEATURES),
        "y": st.sampled_from([0, 1]),
    }
)
LEARN_ITEM = st.one_of(
    GOOD_SAMPLE,
    GOOD_SAMPLE,
    GOOD_SAMPLE,
    st.fixed_dictionaries(
        {"x": st.lists(VALUE, min_size=N_FEATURES - 1, max_size=N_FEATURES + 1)},
        optional={
            "y": st.one_of(st.sampled_from([0, 1, 1.0, 0.5, "1"]), VALUE),
            "id": st.one_of(st.text(max_size=4), st.integers(), VALUE),
        },
    ),
)


@fuzz_settings(120)
@given(st.lists(LEARN_ITEM, max_size=6), st.sampled_from([True, True, True, False]))
def test_learn_batches_near_the_edges_are_taken_or_refused_whole(
    fuzzed: Running, samples: list[Any], token: bool
) -> None:
    response = fuzzed.http.post(
        "/v1/learn",
        content=json.dumps({"samples": samples}),
        headers={**JSON, **(AUTH if token else {})},
    )
    answered(response)
    if not token:
        assert response.status_code == 401
    elif response.status_code == 202:
        assert response.json()["accepted"] == len(samples) > 0
