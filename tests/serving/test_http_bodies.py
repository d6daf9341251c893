"""How HTTP bodies are read, with real requests to a running daemon.

JSON is taken whatever form or text type labels it (``curl -d`` sends
``application/x-www-form-urlencoded``); a body that is not JSON is refused with an error that
names the header to send; a schema error names the field the input's shape points at.
"""

from __future__ import annotations

import json
import subprocess

import httpx
import numpy as np
import pytest

from tests.serving.conftest import N_FEATURES, TOKEN, Running, infer_body

INFER = "/v2/models/streamlearn/infer"
LEARN = "/v1/learn"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROW = [0.5, 0.5, -0.2, 0.1]
SEND_JSON = "send a JSON object with the header Content-Type: application/json"
LENIENT = [
    "application/x-www-form-urlencoded",
    "text/plain",
    "text/plain; charset=utf-8",
    None,
    "application/json; charset=utf-8",
]


def _post(
    served: Running, path: str, body: bytes, content_type: str | None, **headers: str
) -> httpx.Response:
    if content_type is not None:
        headers["Content-Type"] = content_type
    return served.http.post(path, content=body, headers=headers)


@pytest.mark.parametrize("content_type", LENIENT)
def test_infer_takes_json_under_a_form_text_or_no_content_type(
    served: Running, content_type: str | None
) -> None:
    response = _post(served, INFER, json.dumps(infer_body([ROW])).encode(), content_type)
    assert response.status_code == 200, response.text
    assert [o["name"] for o in response.json()["outputs"]] == [
        "predictions",
        "probabilities",
        "classes",
    ]


@pytest.mark.parametrize("content_type", LENIENT)
def test_learn_takes_json_under_a_form_text_or_no_content_type(
    served: Running, content_type: str | None
) -> None:
    body = json.dumps({"samples": [{"x": ROW, "y": 1}]}).encode()
    response = _post(served, LEARN, body, content_type, **AUTH)
    assert (response.status_code, response.json()["accepted"]) == (202, 1), response.text


def test_the_readme_curl_without_a_content_type_header_works(served: Running) -> None:
    # README: curl -s localhost:8080/v2/models/streamlearn/infer -d '{...}'
    body = json.dumps(infer_body([ROW]))
    answer = subprocess.run(
        ["curl", "-s", "-w", "\\n%{http_code}", f"{served.base}{INFER}", "-d", body],
        capture_output=True,
        text=True,
        timeout=30,
    )
    text, _, status = answer.stdout.rpartition("\n")
    assert status == "200", text
    assert json.loads(text)["model_name"] == "streamlearn"


@pytest.mark.parametrize("path", [INFER, LEARN])
@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain"])
def test_a_form_or_text_body_that_is_not_json_is_422_naming_the_header(
    served: Running, path: str, content_type: str | None
) -> None:
    response = _post(served, path, b"inputs=1&shape=2", content_type, **AUTH)
    assert response.status_code == 422
    assert response.json() == {
        "error": f"body: sent as {content_type} and not JSON "
        f"(character 0: Expecting value); {SEND_JSON}"
    }


@pytest.mark.parametrize("path", [INFER, LEARN])
def test_a_json_body_under_another_type_is_422_naming_the_header(
    served: Running, path: str
) -> None:
    body = json.dumps(infer_body([ROW])).encode()
    response = _post(served, path, body, "application/xml", **AUTH)
    assert response.status_code == 422
    assert response.json() == {
        "error": f"body: Content-Type application/xml is not JSON; {SEND_JSON}"
    }


def test_octet_stream_without_the_binary_header_says_which_headers(served: Running) -> None:
    response = _post(
        served, INFER, json.dumps(infer_body([ROW])).encode(), "application/octet-stream"
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert SEND_JSON in error and "Inference-Header-Content-Length" in error


def test_malformed_json_sent_as_json_is_still_400(served: Running) -> None:
    response = _post(served, INFER, b'{"inputs": [', "application/json")
    assert response.status_code == 400
    assert response.json()["error"].startswith("malformed JSON at character")


def test_binary_tensor_data_still_works(served: Running) -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, N_FEATURES],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 4 * N_FEATURES},
                }
            ]
        }
    )
    data = np.asarray([ROW], dtype="<f4").tobytes()
    response = _post(
        served,
        INFER,
        header.encode() + data,
        "application/octet-stream",
        **{"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["name"] == "predictions"


def test_learn_is_documented_with_its_json_body(served: Running) -> None:
    spec = served.http.get("/openapi.json").json()
    body = spec["paths"][LEARN]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/LearnRequest"
    }
    assert "samples" in spec["components"]["schemas"]["LearnRequest"]["properties"]


def test_a_bad_value_in_named_features_is_named_not_called_a_bad_list(served: Running) -> None:
    # x is a list or an object: an object with a boolean fails inside the object member.
    body = {"samples": [{"x": {"a": True}, "y": 1}]}
    response = served.http.post(LEARN, json=body, headers=AUTH)
    assert (response.status_code, response.json()) == (
        422,
        {"error": "samples.0.x.a: Input should be a valid number"},
    )
