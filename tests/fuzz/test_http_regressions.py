"""What fuzzing the HTTP API found, kept as named tests (test K of RELIABILITY.md).

- A 405 had no ``Allow`` header (RFC 9110 requires one): the error handler dropped the
  headers Starlette put on the exception.
- The OpenAPI document said every read endpoint needs the token, which is true only with
  ``serve.auth_infer``; by default they answer without one. ``/v2`` did not list its error
  responses (401 with ``auth_infer``), and the 503 of ``/v2/models/{name}/ready`` is a
  ReadyBody (``{"name", "ready": false}``), not an error body.
- FP64 data past float32's range (1e300) became infinite in the model and was answered.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import grpc
import numpy as np
import pytest

from streamlearn.core.errors import RequestError
from streamlearn.metrics import ServingMetrics
from streamlearn.serve import binary
from streamlearn.serve.core import ServingCore
from streamlearn.serve.http import create_app
from streamlearn.serve.proto import grpc_predict_v2_pb2 as pb
from streamlearn.settings import load_settings
from tests.fuzz.conftest import FUZZ_TOKEN
from tests.serving.conftest import Running

INFER = "/v2/models/streamlearn/infer"

READS = [
    ("get", "/v2"),
    ("get", "/v2/models/{name}"),
    ("get", "/v2/models/{name}/ready"),
    ("post", "/v2/models/{name}/infer"),
    ("get", "/v1/status"),
    ("get", "/v1/experts"),
    ("get", "/v1/drift-events"),
]
WRITES = [("post", "/v1/learn"), ("post", "/v1/checkpoint")]
OPEN = [("get", "/v2/health/live"), ("get", "/v2/health/ready"), ("get", "/metrics")]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("TRACE", "/v2", "GET"),
        ("POST", "/v2/health/live", "GET"),
        ("GET", "/v1/learn", "POST"),
        ("PUT", "/v2/models/streamlearn/infer", "POST"),
        ("DELETE", "/metrics", "GET"),
    ],
)
def test_a_405_names_the_allowed_methods(
    fuzzed: Running, method: str, path: str, allowed: str
) -> None:
    response = fuzzed.http.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    assert response.json() == {"error": "Method Not Allowed"}


def document(**serve: Any) -> dict[str, Any]:
    """The OpenAPI document of an app built for these settings (nothing served)."""
    settings = load_settings(None, serve=serve)
    core = ServingCore(
        settings,
        # Deliberately without a board or a learner: only the OpenAPI document is read.
        board=None,  # type: ignore[arg-type]
        learner=None,  # type: ignore[arg-type]
        metrics=ServingMetrics(),
    )
    return create_app(core).openapi()


@pytest.mark.parametrize("protect_reads", [False, True])
def test_the_document_says_which_endpoints_need_the_token(protect_reads: bool) -> None:
    doc = document(auth_token=FUZZ_TOKEN, auth_infer=protect_reads)
    bearer: dict[str, list[str]] = {"HTTPBearer": []}
    for method, path in READS:
        expected = [bearer] if protect_reads else [{}, bearer]
        assert doc["paths"][path][method]["security"] == expected, (method, path)
    for method, path in WRITES:
        assert doc["paths"][path][method]["security"] == [bearer], (method, path)
    for method, path in OPEN:
        assert "security" not in doc["paths"][path][method], (method, path)


def test_the_document_lists_the_answers_the_endpoints_give() -> None:
    paths = document(auth_token=FUZZ_TOKEN)["paths"]
    assert {"401", "403"} <= set(paths["/v2"]["get"]["responses"])
    ready = paths["/v2/models/{name}/ready"]["get"]["responses"]
    for status in ("200", "503"):
        schema = ready[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ReadyBody"}, status
    # The v2 infer endpoint is in it, with its JSON body and the binary extension's.
    infer = paths["/v2/models/{name}/infer"]["post"]
    assert set(infer["requestBody"]["content"]) == {"application/json", "application/octet-stream"}


@pytest.mark.parametrize("value", [3.5e38, -1e300, 1.7976931348623157e308])
def test_a_value_beyond_float32_is_refused_like_infinity(fuzzed: Running, value: float) -> None:
    """FP64 data past float32's range was cast to inf and answered from; the codec refuses
    such values in learned samples, and serving now refuses them too (HTTP, binary, gRPC)."""
    row = [value, 0.0, 0.0, 0.0]
    tensor = {"name": "input", "shape": [1, 4], "datatype": "FP64"}
    response = fuzzed.http.post(INFER, json={"inputs": [{**tensor, "data": row}]})
    assert response.status_code == 422
    assert "beyond float32's range" in response.json()["error"]

    raw = np.array(row, dtype="<f8").tobytes()
    head = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}]})
    response = fuzzed.http.post(
        INFER,
        content=head.encode() + raw,
        headers={binary.HEADER: str(len(head)), "Content-Type": binary.MEDIA_TYPE},
    )
    assert response.status_code == 422, response.text

    request = pb.ModelInferRequest(
        model_name="streamlearn",
        inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name="input",
                datatype="FP64",
                shape=[1, 4],
                contents=pb.InferTensorContents(fp64_contents=row),
            )
        ],
    )
    with pytest.raises(grpc.RpcError) as refused:
        fuzzed.stub.ModelInfer(request, timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_float32s_largest_value_is_still_answered(fuzzed: Running) -> None:
    response = fuzzed.http.post(
        INFER,
        json={
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "data": [3.4028234e38, -3.4028234e38, 0.0, 0.0],
                }
            ]
        },
    )
    assert response.status_code == 200, response.text


def test_learn_refuses_a_regression_target_past_float_with_a_422() -> None:
    settings = load_settings(
        None, model={"task": "regression", "n_features": 3}, serve={"auth_token": FUZZ_TOKEN}
    )
    core = ServingCore(
        settings,
        # Deliberately a stand-in board with no model and no learner: learn() refuses first.
        board=SimpleNamespace(current=None),  # type: ignore[arg-type]
        learner=None,  # type: ignore[arg-type]
        metrics=ServingMetrics(),
    )
    with pytest.raises(RequestError) as refused:
        core.learn([{"x": [0.0, 0.0, 0.0], "y": 10**309}])
    assert refused.value.status == 422
