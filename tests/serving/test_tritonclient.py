"""tritonclient, the most common v2 client, against a running daemon.

The same rows through HTTP with JSON tensors, HTTP with the binary tensor data extension
(tritonclient's default) and gRPC get the same answer from the same model version. Only
the daemon's ports and plain client calls are used.

tritonclient.grpc runs in a child process: its stubs define the protobuf package
``inference`` that streamlearn's own stubs (loaded here by conftest) define too, and one
process's default descriptor pool cannot hold both ("duplicate symbol").
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient  # type: ignore[import-untyped]  # no type information
from tritonclient.utils import InferenceServerException  # type: ignore[import-untyped]

from tests.serving.conftest import N_FEATURES, TOKEN, Running, wait_until

MODEL = "streamlearn"
OUTPUTS = ("predictions", "probabilities", "classes")
INFER = f"/v2/models/{MODEL}/infer"
# Clear-cut rows of the served concept (x0 + x1 > 0), then more than serve.inline_max_rows
# random ones: both the inline and the thread-pool paths are taken.
CLEAR = [[0.9, 0.9, 0, 0], [-0.9, -0.9, 0, 0]]
ROWS = np.concatenate([CLEAR, np.random.default_rng(5).uniform(-1, 1, (98, N_FEATURES))]).astype(
    np.float32
)


@pytest.fixture
def connect() -> Iterator[Callable[[Any], httpclient.InferenceServerClient]]:
    made: list[httpclient.InferenceServerClient] = []

    def make(running: Any) -> httpclient.InferenceServerClient:
        made.append(httpclient.InferenceServerClient(f"127.0.0.1:{running.http_port}"))
        return made[-1]

    yield make
    for client in made:
        client.close()


@dataclass
class Answer:
    version: str
    outputs: dict[str, np.ndarray]
    raw: dict[str, Any]  # the JSON of an HTTP answer (its header, when binary)


def http_infer(
    client: httpclient.InferenceServerClient,
    rows: np.ndarray,
    binary: bool,
    names: tuple[str, ...] = OUTPUTS,
) -> Answer:
    tensor = httpclient.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in names]
    result = client.infer(MODEL, [tensor], outputs=outputs)
    response = result.get_response()
    return Answer(response["model_version"], {n: result.as_numpy(n) for n in names}, response)


GRPC_CLIENT = """
import json, sys
import numpy as np
import tritonclient.grpc as grpcclient

ask = json.load(sys.stdin)
client = grpcclient.InferenceServerClient(ask["url"])
model = ask["model"]
out = {"live": client.is_server_live(), "ready": client.is_server_ready(),
       "model_ready": client.is_model_ready(model),
       "metadata": client.get_model_metadata(model, as_json=True)}
rows = np.array(ask["rows"], dtype=np.float32)
tensor = grpcclient.InferInput("input", list(rows.shape), "FP32")
tensor.set_data_from_numpy(rows)
result = client.infer(model, [tensor],
                      outputs=[grpcclient.InferRequestedOutput(n) for n in ask["outputs"]])
out["version"] = result.get_response().model_version
out["outputs"] = {}
for name in ask["outputs"]:
    array = result.as_numpy(name)
    flat = array.ravel().tolist()
    out["outputs"][name] = {
        "dtype": str(array.dtype), "shape": list(array.shape),
        "bytes": all(isinstance(v, bytes) for v in flat) if array.dtype == object else False,
        "values": [v.decode() if isinstance(v, bytes) else v for v in flat]}
client.close()
json.dump(out, sys.stdout)
"""


def grpc_client(running: Any, rows: np.ndarray, names: tuple[str, ...] = OUTPUTS) -> dict[str, Any]:
    """What tritonclient.grpc says about the server, and its answer for ``rows``."""
    ask = {
        "url": f"127.0.0.1:{running.grpc_port}",
        "model": MODEL,
        "rows": rows.tolist(),
        "outputs": list(names),
    }
    done = subprocess.run(
        [sys.executable, "-c", GRPC_CLIENT],
        input=json.dumps(ask),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def grpc_infer(running: Any, rows: np.ndarray, names: tuple[str, ...] = OUTPUTS) -> Answer:
    said = grpc_client(running, rows, names)
    outputs = {}
    for name, out in said["outputs"].items():
        values = [v.encode() for v in out["values"]] if out["bytes"] else out["values"]
        outputs[name] = np.array(values, dtype=out["dtype"]).reshape(out["shape"])
    return Answer(said["version"], outputs, said)


def agreeing(*calls: Callable[[], Answer]) -> list[Answer]:
    """One answer per call, all from one model version (the learner may still publish)."""
    answers: list[Answer] = []

    def same_version() -> bool:
        answers[:] = [call() for call in calls]
        return len({a.version for a in answers}) == 1

    wait_until(same_version, 30, "answers from one model version")
    return answers


def test_health_and_metadata_through_tritonclient(
    served: Running, connect: Callable[[Any], httpclient.InferenceServerClient]
) -> None:
    client = connect(served)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert client.get_server_metadata()["name"] == "streamlearn"
    meta = client.get_model_metadata(MODEL)
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, N_FEATURES]}]
    assert [o["name"] for o in meta["outputs"]] == [*OUTPUTS, "experts"]
    said = grpc_client(served, np.array(CLEAR, dtype=np.float32))
    assert said["live"] and said["ready"] and said["model_ready"]
    assert said["metadata"]["inputs"] == [
        {"name": "input", "datatype": "FP32", "shape": ["-1", str(N_FEATURES)]}
    ]  # int64: text
    assert said["metadata"]["versions"] == meta["versions"]


def test_http_json_http_binary_and_grpc_give_the_same_answer(
    served: Running, connect: Callable[[Any], httpclient.InferenceServerClient]
) -> None:
    client = connect(served)
    as_json, as_binary, over_grpc = agreeing(
        lambda: http_infer(client, ROWS, binary=False),
        lambda: http_infer(client, ROWS, binary=True),
        lambda: grpc_infer(served, ROWS),
    )
    rows = len(ROWS)
    for answer in (as_json, as_binary, over_grpc):
        predictions = answer.outputs["predictions"]
        assert predictions.dtype == np.int64 and predictions.shape == (rows,)
        assert predictions[:2].tolist() == [1, 0]
        assert answer.outputs["probabilities"].dtype == np.float32
        assert answer.outputs["probabilities"].shape == (rows, 2)
        np.testing.assert_array_equal(predictions, as_json.outputs["predictions"])
        np.testing.assert_array_equal(answer.outputs["classes"], as_json.outputs["classes"])
        np.testing.assert_allclose(
            answer.outputs["probabilities"], as_json.outputs["probabilities"], rtol=1e-6
        )
    # It really was the extension: sizes in the header, no data.
    sizes = {o["name"]: o["parameters"]["binary_data_size"] for o in as_binary.raw["outputs"]}
    assert sizes == {"predictions": 8 * rows, "probabilities": 4 * 2 * rows, "classes": 16}
    assert not any("data" in o for o in as_binary.raw["outputs"])
    assert all("data" in o for o in as_json.raw["outputs"])


def test_without_named_outputs_tritonclient_gets_every_output_as_binary(
    served: Running, connect: Callable[[Any], httpclient.InferenceServerClient]
) -> None:
    client = connect(served)
    tensor = httpclient.InferInput("input", [2, N_FEATURES], "FP32")
    tensor.set_data_from_numpy(np.array(CLEAR, dtype=np.float32))
    result = client.infer(MODEL, [tensor], request_id="r-1")
    response = result.get_response()
    assert response["id"] == "r-1" and response["parameters"] == {"expert": "0"}
    assert [o["name"] for o in response["outputs"]] == list(OUTPUTS)
    assert all("binary_data_size" in o["parameters"] for o in response["outputs"])
    assert result.as_numpy("predictions").tolist() == [1, 0]


def test_errors_reach_tritonclient_with_their_status_and_message(
    served: Running, connect: Callable[[Any], httpclient.InferenceServerClient]
) -> None:
    client = connect(served)
    short = httpclient.InferInput("input", [1, 3], "FP32")
    short.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(InferenceServerException) as info:
        client.infer(MODEL, [short])
    assert info.value.status() == "422"
    assert info.value.message() == (
        "inputs[0] ('input'): shape [1, 3]: 3 features, the model takes 4"
    )
    tensor = httpclient.InferInput("input", [1, N_FEATURES], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, N_FEATURES), dtype=np.float32))
    top = httpclient.InferRequestedOutput("probabilities", class_count=1)
    with pytest.raises(InferenceServerException) as info:
        client.infer(MODEL, [tensor], outputs=[top])
    assert info.value.status() == "422" and "parameters.classification" in info.value.message()


def rejected(base: str, reason: str) -> float:
    text = httpx.get(f"{base}/metrics").text
    key = f'streamlearn_requests_rejected_total{{reason="{reason}",transport="http"}} '
    return next(
        (float(line[len(key) :]) for line in text.splitlines() if line.startswith(key)), 0.0
    )


def post_binary(
    base: str, header: dict[str, Any], data: bytes, header_length: int | str | None = None
) -> httpx.Response:
    encoded = json.dumps(header).encode()
    length = len(encoded) if header_length is None else header_length
    return httpx.post(
        f"{base}{INFER}",
        content=encoded + data,
        timeout=10,
        headers={
            "Inference-Header-Content-Length": str(length),
            "Content-Type": "application/octet-stream",
        },
    )


def binary_header(rows: int, size: int) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input",
                "shape": [rows, N_FEATURES],
                "datatype": "FP32",
                "parameters": {"binary_data_size": size},
            }
        ]
    }


def test_binary_faults_over_the_wire_are_400_and_counted(served: Running) -> None:
    data = np.zeros((1, N_FEATURES), dtype="<f4").tobytes()
    before = rejected(served.base, "binary_data"), rejected(served.base, "bad_request")
    past = post_binary(served.base, binary_header(1, 32), data)
    assert (past.status_code, past.json()) == (
        400,
        {
            "error": "inputs[0] ('input'): parameters.binary_data_size is 32 bytes but only 16 "
            "are left in the body"
        },
    )
    bad_length = post_binary(served.base, binary_header(1, 16), data, header_length="x")
    assert bad_length.status_code == 400
    assert bad_length.json() == {
        "error": "Inference-Header-Content-Length: 'x' is not a byte count"
    }
    assert (rejected(served.base, "binary_data"), rejected(served.base, "bad_request")) == (
        before[0] + 1,
        before[1] + 1,
    )
    ok = post_binary(
        served.base,
        {
            **binary_header(1, 16),
            "outputs": [{"name": "classes", "parameters": {"binary_data": True}}],
        },
        data,
    )
    assert ok.status_code == 200
    assert ok.headers["content-type"] == "application/octet-stream"
    length = int(ok.headers["inference-header-content-length"])
    assert json.loads(ok.content[:length])["outputs"][0]["parameters"] == {"binary_data_size": 16}
    assert np.frombuffer(ok.content[length:], "<i8").tolist() in ([0, 1], [1, 0])


def learn_string_labels(base: str, samples: int) -> None:
    rng = random.Random(7)
    for _ in range(samples // 100):
        batch = []
        for _ in range(100):
            x = [rng.uniform(-1, 1) for _ in range(N_FEATURES)]
            batch.append({"x": x, "y": "pos" if x[0] + x[1] > 0 else "neg"})
        response = httpx.post(
            f"{base}/v1/learn",
            json={"samples": batch},
            timeout=10,
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert response.status_code == 202, response.text


def test_string_labels_come_back_as_bytes_outputs(
    service_factory: Callable[..., Running],
    connect: Callable[[Any], httpclient.InferenceServerClient],
) -> None:
    running = service_factory(wait_ready=False, records=0, serve={"max_body_bytes": 16_384})
    learn_string_labels(running.base, 2_000)
    client = connect(running)
    wait_until(lambda: client.is_model_ready(MODEL), 30, "the model to be ready")
    rows = np.array(CLEAR, dtype=np.float32)
    as_json, as_binary, over_grpc = agreeing(
        lambda: http_infer(client, rows, binary=False),
        lambda: http_infer(client, rows, binary=True),
        lambda: grpc_infer(running, rows),
    )
    assert {o["name"]: o["datatype"] for o in as_binary.raw["outputs"]} == {
        "predictions": "BYTES",
        "probabilities": "FP32",
        "classes": "BYTES",
    }
    # tritonclient hands back BYTES as str from JSON but as bytes from binary data (and gRPC).
    predicted = as_json.outputs["predictions"].tolist()
    assert set(predicted) <= {"pos", "neg"}
    assert [p.decode() for p in as_binary.outputs["predictions"]] == predicted
    assert [p.decode() for p in over_grpc.outputs["predictions"]] == predicted
    assert over_grpc.raw["outputs"]["predictions"]["bytes"]
    labels = as_json.outputs["classes"].tolist()
    assert sorted(labels) == ["neg", "pos"]
    assert [c.decode() for c in as_binary.outputs["classes"]] == labels
    # The body cap holds for binary bodies too: 1,100 rows of FP32 is 17,600 bytes.
    big = np.zeros((1_100, N_FEATURES), dtype="<f4").tobytes()
    refused = post_binary(running.base, binary_header(1_100, len(big)), big)
    assert refused.status_code == 413 and "serve.max_body_bytes=16384" in refused.json()["error"]
