"""The v2 GRPCInferenceService with real gRPC calls to a running daemon."""

from __future__ import annotations

import json
from collections.abc import Callable

import grpc
import numpy as np
import pytest

from streamlearn.serve.proto import grpc_predict_v2_pb2 as pb
from tests.serving.conftest import N_FEATURES, TOKEN, Running, grpc_request
from tests.support.slowmodel import BROKEN_MARK

ROWS = [[0.9, 0.9, 0, 0], [-0.9, -0.9, 0, 0]]


def code_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str | None]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_health_and_metadata(served: Running) -> None:
    stub = served.stub
    assert stub.ServerLive(pb.ServerLiveRequest()).live is True
    assert stub.ServerReady(pb.ServerReadyRequest()).ready is True
    assert stub.ModelReady(pb.ModelReadyRequest(name="streamlearn")).ready is True
    server = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert server.name == "streamlearn"
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="streamlearn"))
    assert meta.platform == "streamlearn_pytorch" and int(meta.versions[0]) > 0
    (tensor,) = meta.inputs
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("input", "FP32", [-1, N_FEATURES])
    assert [o.name for o in meta.outputs] == ["predictions", "probabilities", "classes", "experts"]


def test_feature_names_travel_in_tensor_metadata(service_factory: Callable[..., Running]) -> None:
    import random

    running = service_factory(wait_ready=False, records=0, model={"features": ["a", "b", "c", "d"]})
    rng = random.Random(0)
    running.source.add(
        [
            json.dumps({"x": dict(zip("abcd", x, strict=True)), "y": int(x[0] > 0)}).encode()
            for x in ([rng.uniform(-1, 1) for _ in range(4)] for _ in range(200))
        ]
    )
    from tests.serving.conftest import ready, wait_until

    wait_until(lambda: ready(running), 60, "ready")  # as the fixture waits: CI shares two cores
    meta = running.stub.ModelMetadata(pb.ModelMetadataRequest(name="streamlearn"))
    names = meta.inputs[0].parameters["feature_names"].string_param
    assert json.loads(names) == ["a", "b", "c", "d"]
    http_meta = running.http.get("/v2/models/streamlearn").json()
    assert http_meta["inputs"][0]["parameters"] == {"feature_names": ["a", "b", "c", "d"]}


def test_infer_typed_contents_matches_http(served: Running) -> None:
    response = served.stub.ModelInfer(grpc_request(ROWS, id="g1"))
    assert response.model_name == "streamlearn" and response.id == "g1"
    assert int(response.model_version) > 0
    assert response.parameters["expert"].string_param == "0"
    outputs = {o.name: o for o in response.outputs}
    assert list(outputs["predictions"].contents.int64_contents) == [1, 0]
    assert list(outputs["probabilities"].shape) == [2, 2]
    assert len(outputs["probabilities"].contents.fp32_contents) == 4


def test_infer_raw_contents_gets_raw_outputs(served: Running) -> None:
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="input", datatype="FP64", shape=[2, N_FEATURES]
    )
    request = pb.ModelInferRequest(
        model_name="streamlearn",
        inputs=[tensor],
        raw_input_contents=[np.array(ROWS, "<f8").tobytes()],
    )
    response = served.stub.ModelInfer(request)
    by_name = {o.name: i for i, o in enumerate(response.outputs)}
    predictions = np.frombuffer(response.raw_output_contents[by_name["predictions"]], "<i8")
    probabilities = np.frombuffer(response.raw_output_contents[by_name["probabilities"]], "<f4")
    assert predictions.tolist() == [1, 0]
    assert probabilities.reshape(2, 2).sum(axis=1) == pytest.approx([1, 1], rel=1e-5)


@pytest.mark.parametrize(
    ("mutate", "code", "message"),
    [
        (
            lambda r: setattr(r, "model_name", "other"),
            grpc.StatusCode.NOT_FOUND,
            "model 'other' not found",
        ),
        (
            lambda r: r.inputs[0].shape.__setitem__(1, 3),
            grpc.StatusCode.INVALID_ARGUMENT,
            "3 features, the model takes 4",
        ),
        (
            lambda r: setattr(r.inputs[0], "datatype", "BOOL"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "datatype 'BOOL' is not supported",
        ),
        (
            lambda r: r.inputs[0].contents.fp32_contents.__setitem__(1, float("nan")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "data contains NaN or Infinity",
        ),
        (
            lambda r: r.inputs[0].contents.fp32_contents.pop(),
            grpc.StatusCode.INVALID_ARGUMENT,
            "data has 7 values",
        ),
        (
            lambda r: setattr(r, "model_version", "999999999"),
            grpc.StatusCode.NOT_FOUND,
            "model version '999999999' is not served",
        ),
    ],
)
def test_infer_errors_map_to_status_codes(
    served: Running,
    mutate: Callable[[pb.ModelInferRequest], object],
    code: grpc.StatusCode,
    message: str,
) -> None:
    request = grpc_request(ROWS)
    mutate(request)
    got_code, details = code_of(lambda: served.stub.ModelInfer(request))
    assert got_code == code and details is not None and message in details


def test_raw_bytes_of_the_wrong_length_are_invalid(served: Running) -> None:
    tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[1, 4])
    request = pb.ModelInferRequest(
        model_name="streamlearn", inputs=[tensor], raw_input_contents=[b"\x00" * 15]
    )
    code, details = code_of(lambda: served.stub.ModelInfer(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "raw_input_contents[0]: 15 bytes is not a whole number of FP32 values"


def test_message_over_the_cap_is_resource_exhausted(
    service_factory: Callable[..., Running],
) -> None:
    running = service_factory(serve={"grpc_max_message_bytes": 4096})
    big = grpc_request([[0.5] * N_FEATURES] * 400)  # about 6.5 kB of floats
    code, _ = code_of(lambda: running.stub.ModelInfer(big))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert running.stub.ModelInfer(grpc_request(ROWS)).outputs  # small ones still pass


def test_token_required_on_infer_when_configured(service_factory: Callable[..., Running]) -> None:
    running = service_factory(serve={"auth_infer": True})
    code, details = code_of(lambda: running.stub.ModelInfer(grpc_request(ROWS)))
    assert (
        code == grpc.StatusCode.UNAUTHENTICATED
        and details is not None
        and "missing bearer token" in details
    )
    response = running.stub.ModelInfer(
        grpc_request(ROWS), metadata=[("authorization", f"Bearer {TOKEN}")]
    )
    assert response.outputs
    assert running.stub.ServerLive(pb.ServerLiveRequest()).live  # probes stay open


def test_grpc_metrics(fresh: Running) -> None:
    fresh.stub.ModelInfer(grpc_request(ROWS))
    bad = grpc_request(ROWS)
    bad.model_name = "x"
    code_of(lambda: fresh.stub.ModelInfer(bad))
    metrics = fresh.metrics()
    assert (
        metrics['streamlearn_requests_total{code="OK",endpoint="ModelInfer",transport="grpc"}'] >= 1
    )
    assert (
        metrics[
            'streamlearn_requests_total{code="NOT_FOUND",endpoint="ModelInfer",transport="grpc"}'
        ]
        == 1
    )
    assert (
        metrics['streamlearn_requests_rejected_total{reason="unknown_model",transport="grpc"}'] == 1
    )


def test_a_failing_model_is_an_internal_error_on_both_transports(
    service_factory: Callable[..., Running],
) -> None:
    served = service_factory(
        records=200, model={"factory": "tests.support.slowmodel:build", "standardize": False}
    )
    broken = [[BROKEN_MARK, 0.0, 0.0, 0.0]]
    code, details = code_of(lambda: served.stub.ModelInfer(grpc_request(broken)))
    assert (code, details) == (grpc.StatusCode.INTERNAL, "internal error: RuntimeError")
    response = served.http.post(
        "/v2/models/streamlearn/infer",
        json={"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": broken}]},
    )
    assert (response.status_code, response.json()) == (
        500,
        {"error": "internal error: RuntimeError"},
    )
    metrics = served.metrics()
    assert (
        metrics[
            'streamlearn_requests_total{code="INTERNAL",endpoint="ModelInfer",transport="grpc"}'
        ]
        == 1
    )
    assert (
        metrics[
            'streamlearn_requests_total{code="500",endpoint="/v2/models/{name}/infer",'
            'transport="http"}'
        ]
        == 1
    )
