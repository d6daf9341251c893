"""Every HTTP endpoint and error case, with real requests to a running daemon."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from streamlearn.checkpoint.inspect import describe
from tests.serving.conftest import (
    N_FEATURES,
    TOKEN,
    Running,
    infer_body,
    labeled,
    settled,
    wait_until,
)

AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROW = [0.5, 0.5, -0.2, 0.1]
INFER = "/v2/models/streamlearn/infer"


def test_v2_health_and_server_metadata(served: Running) -> None:
    assert served.http.get("/v2/health/live").json() == {"live": True}
    ready = served.http.get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    meta = served.http.get("/v2").json()
    assert meta["name"] == "streamlearn" and meta["extensions"] == ["binary_tensor_data"]


def test_not_ready_until_a_snapshot_exists(service_factory: Callable[..., Running]) -> None:
    running = service_factory(wait_ready=False, records=0)
    assert running.http.get("/v2/health/live").status_code == 200
    response = running.http.get("/v2/health/ready")
    assert (response.status_code, response.json()) == (503, {"ready": False})
    refused = running.http.post(INFER, json=infer_body([ROW]))
    assert refused.status_code == 503 and "not ready" in refused.json()["error"]
    running.source.add(__import__("tests.serving.conftest", fromlist=["labeled"]).labeled(64))
    wait_until(lambda: running.http.get("/v2/health/ready").status_code == 200, 10, "ready")


def test_model_metadata_lets_a_generic_client_build_a_request(served: Running) -> None:
    meta = served.http.get("/v2/models/streamlearn").json()
    assert meta["name"] == "streamlearn" and meta["platform"] == "streamlearn_pytorch"
    assert [int(v) for v in meta["versions"]] and int(meta["versions"][0]) > 0
    (tensor,) = meta["inputs"]
    assert tensor == {"name": "input", "datatype": "FP32", "shape": [-1, N_FEATURES]}
    assert [o["name"] for o in meta["outputs"]] == [
        "predictions",
        "probabilities",
        "classes",
        "experts",
    ]
    # Built only from the metadata, as a generic v2 client does.
    rows = [[0.0] * tensor["shape"][1]]
    body = {
        "inputs": [
            {
                "name": tensor["name"],
                "datatype": tensor["datatype"],
                "shape": [1, tensor["shape"][1]],
                "data": rows,
            }
        ]
    }
    assert served.http.post(INFER, json=body).status_code == 200
    ready = served.http.get("/v2/models/streamlearn/ready")
    assert (ready.status_code, ready.json()) == (200, {"name": "streamlearn", "ready": True})


def test_infer_answers_with_predictions_probabilities_and_the_snapshot_version(
    served: Running,
) -> None:
    rows = [[0.9, 0.9, 0, 0], [-0.9, -0.9, 0, 0]]
    response = served.http.post(INFER, json=infer_body(rows, id="req-1"))
    assert response.status_code == 200
    body = response.json()
    assert body["model_name"] == "streamlearn" and body["id"] == "req-1"
    assert int(body["model_version"]) > 0 and body["parameters"] == {"expert": "0"}
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["predictions"]["datatype"] == "INT64"
    assert outputs["predictions"]["shape"] == [2]
    assert outputs["classes"]["data"] == [1, 0] or outputs["classes"]["data"] == [0, 1]
    probs = outputs["probabilities"]
    assert probs["shape"] == [2, 2] and math.isclose(sum(probs["data"][:2]), 1, rel_tol=1e-5)
    # The learned concept is x0 + x1 > 0: after 2,000 samples both rows are clear-cut.
    classes = outputs["classes"]["data"]
    winners = [classes[max(range(2), key=lambda j: probs["data"][2 * i + j])] for i in range(2)]
    assert outputs["predictions"]["data"] == winners == [1, 0]


def test_infer_accepts_flat_data_int_datatypes_and_selected_outputs(served: Running) -> None:
    flat = {
        "inputs": [
            {
                "name": "input",
                "shape": [2, 4],
                "datatype": "FP64",
                "data": [1, 1, 0, 0, -1, -1, 0, 0],
            }
        ],
        "outputs": [{"name": "classes"}],
    }
    body = served.http.post(INFER, json=flat).json()
    assert [o["name"] for o in body["outputs"]] == ["classes"]
    ints = {
        "inputs": [{"name": "input", "shape": [1, 4], "datatype": "INT32", "data": [[1, 1, 0, 0]]}]
    }
    assert served.http.post(INFER, json=ints).status_code == 200


def test_regression_model_serves_values(service_factory: Callable[..., Running]) -> None:
    import json
    import random

    running = service_factory(wait_ready=False, records=0, model={"task": "regression"})
    rng = random.Random(3)
    running.source.add(
        [
            json.dumps({"x": x, "y": 3 * x[0]}).encode()
            for x in ([rng.uniform(-1, 1) for _ in range(4)] for _ in range(500))
        ]
    )
    wait_until(lambda: running.http.get("/v2/health/ready").status_code == 200, 10, "ready")
    body = running.http.post(INFER, json=infer_body([ROW])).json()
    (out,) = body["outputs"]
    assert (out["name"], out["datatype"], out["shape"]) == ("predictions", "FP32", [1])
    assert isinstance(out["data"][0], float)


BAD_INPUTS = [
    (
        {"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
        "3 features, the model takes 4",
    ),
    (
        {"name": "input", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        "must be [rows, 4]",
    ),
    (
        {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3]},
        "data has 3 values, shape [1, 4] needs 4",
    ),
    (
        {"name": "input", "shape": [1, 4], "datatype": "BYTES", "data": ["a", "b", "c", "d"]},
        "datatype 'BYTES' is not supported",
    ),
    (
        {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": ["1", 2, 3, 4]},
        "data must be a flat or nested list of numbers",
    ),
    (
        {"name": "input", "shape": [1, 4], "datatype": "INT64", "data": [1.5, 2, 3, 4]},
        "list of integers",
    ),
    (
        {"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        "unknown input; this model takes one input named 'input'",
    ),
    (
        {"name": "input", "shape": [5000, 4], "datatype": "FP32", "data": [0] * 20000},
        "5000 rows > serve.max_batch_rows=4096",
    ),
]


@pytest.mark.parametrize(("tensor", "message"), BAD_INPUTS)
def test_bad_inputs_get_422_naming_the_input(
    served: Running, tensor: dict[str, Any], message: str
) -> None:
    response = served.http.post(INFER, json={"inputs": [tensor]})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error.startswith(f"inputs[0] ('{tensor['name']}')") and message in error


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_values_get_422(served: Running, token: str) -> None:
    body = (
        '{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", '
        f'"data": [1, {token}, 3, 4]}}]}}'
    )
    response = served.http.post(INFER, content=body)
    assert response.status_code == 422
    assert response.json() == {"error": "inputs[0] ('input'): data contains NaN or Infinity"}


def test_malformed_json_is_400_and_schema_errors_422(served: Running) -> None:
    response = served.http.post(
        INFER, content=b'{"inputs": [', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("malformed JSON at character")
    missing = served.http.post(INFER, json={"inputs": [{"name": "input"}]})
    assert missing.status_code == 422 and missing.json()["error"].startswith("inputs.0.shape")
    unknown = served.http.post(INFER, json={**infer_body([ROW]), "outputs": [{"name": "x"}]})
    assert unknown.status_code == 422 and "unknown output 'x'" in unknown.json()["error"]


def test_unknown_model_and_route_are_404_in_the_v2_error_format(served: Running) -> None:
    response = served.http.post("/v2/models/other/infer", json=infer_body([ROW]))
    assert response.status_code == 404
    assert response.json() == {"error": "model 'other' not found; this server serves 'streamlearn'"}
    assert served.http.get("/v2/models/other").status_code == 404
    assert served.http.get("/nowhere").json() == {"error": "Not Found"}


def test_oversize_body_is_413_before_parsing_declared_or_chunked(
    service_factory: Callable[..., Running],
) -> None:
    running = service_factory(serve={"max_body_bytes": 2048})
    junk = b"{" * 5000  # not JSON either: 413 proves the body was never parsed
    declared = running.http.post(INFER, content=junk)
    assert declared.status_code == 413
    assert declared.json() == {"error": "body of 5000 bytes > serve.max_body_bytes=2048"}

    def chunks() -> Iterator[bytes]:
        for _ in range(5):
            yield b"{" * 1000

    chunked = running.http.post(INFER, content=chunks())
    assert chunked.status_code == 413 and "chunked" in chunked.json()["error"]
    small_chunked = running.http.post(INFER, content=iter([b'{"inputs": [', b"]}"]))
    assert small_chunked.status_code == 200 or small_chunked.status_code == 422
    metrics = running.metrics()
    assert (
        metrics['streamlearn_requests_rejected_total{reason="body_too_large",transport="http"}']
        == 2
    )


def test_learn_over_http_needs_the_token_and_reaches_the_learner(fresh: Running) -> None:
    sample = {"samples": [{"x": ROW, "y": 1}, {"x": [0, 0, 0, 0], "y": 0}]}
    missing = fresh.http.post("/v1/learn", json=sample)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = fresh.http.post("/v1/learn", json=sample, headers={"Authorization": "Bearer no"})
    assert (wrong.status_code, wrong.json()) == (401, {"error": "invalid bearer token"})
    before = fresh.daemon.engine.samples_learned
    accepted = fresh.http.post("/v1/learn", json=sample, headers=AUTH)
    assert accepted.status_code == 202 and accepted.json()["accepted"] == 2
    wait_until(lambda: fresh.daemon.engine.samples_learned >= before + 2, 5, "learned")


def test_learn_rejects_bad_samples_whole_and_429s_when_the_queue_is_full(
    service_factory: Callable[..., Running],
) -> None:
    running = service_factory(serve={"learn_queue_samples": 3})
    bad = running.http.post(
        "/v1/learn", headers=AUTH, json={"samples": [{"x": ROW, "y": 1}, {"x": [1, 2], "y": 0}]}
    )
    assert bad.status_code == 422
    assert bad.json()["error"] == "samples[1].x: 2 features, expected 4"
    unlabeled = running.http.post("/v1/learn", headers=AUTH, json={"samples": [{"x": ROW}]})
    assert unlabeled.json()["error"] == "samples[0].y: required for learning"
    nan = running.http.post(
        "/v1/learn", headers=AUTH, content=('{"samples": [{"x": [1, NaN, 3, 4], "y": 1}]}')
    )
    assert nan.status_code == 422 and nan.json()["error"].startswith("samples.0.x.1")
    full = running.http.post("/v1/learn", headers=AUTH, json={"samples": [{"x": ROW, "y": 1}] * 4})
    assert full.status_code == 429 and "learn queue full" in full.json()["error"]


def test_write_endpoints_are_off_without_a_token_and_infer_can_require_one(
    service_factory: Callable[..., Running], tmp_path: Path
) -> None:
    no_token = service_factory(serve={"auth_token": None})
    refused = no_token.http.post("/v1/checkpoint")
    assert refused.status_code == 403 and "serve.auth_token" in refused.json()["error"]
    assert no_token.http.post(INFER, json=infer_body([ROW])).status_code == 200

    token_file = tmp_path / "token"
    token_file.write_text("from-file-4c8e1a97b2d5\n")
    guarded = service_factory(
        serve={"auth_token": None, "auth_token_file": str(token_file), "auth_infer": True}
    )
    assert guarded.http.post(INFER, json=infer_body([ROW])).status_code == 401
    assert guarded.http.get("/v2/models/streamlearn").status_code == 401
    assert guarded.http.get("/v1/status").status_code == 401
    ok = guarded.http.post(
        INFER, json=infer_body([ROW]), headers={"Authorization": "Bearer from-file-4c8e1a97b2d5"}
    )
    assert ok.status_code == 200
    for open_path in ("/v2/health/live", "/v2/health/ready", "/metrics"):
        assert guarded.http.get(open_path).status_code == 200, open_path


def test_checkpoint_endpoint_saves_through_the_learner(fresh: Running) -> None:
    response = fresh.http.post("/v1/checkpoint", headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert body["saved"] is True and body["path"].endswith(".slck")
    assert body["samples_learned"] == fresh.daemon.engine.samples_learned
    assert body["offsets"] == {"in/0": 2_000}


def test_status_experts_and_drift_events(fresh: Running) -> None:
    status = fresh.http.get("/v1/status").json()
    assert status["ready"] is True and status["draining"] is False
    assert status["served_version"] > 0 and status["learn_queue"]["capacity"] == 10_000
    assert status["learner"]["records_consumed"] == 2_000
    experts = fresh.http.get("/v1/experts").json()
    assert experts["active"] == "0"
    (expert,) = experts["experts"]
    assert expert["id"] == "0" and expert["samples_learned"] == 2_000
    assert fresh.http.get("/v1/drift-events").json() == {"events": []}
    # Late labels off: the champion alone, with no live scores.
    assert fresh.http.get("/v1/models").json() == {
        "models": [
            {
                "name": "streamlearn",
                "role": "champion",
                "version": status["served_version"],
                "live": None,
            }
        ]
    }


def test_metrics_count_requests_latency_versions_and_rejections(fresh: Running) -> None:
    fresh.http.post(INFER, json=infer_body([ROW]))
    fresh.http.post(INFER, json=infer_body([[1, 2]]))
    metrics = fresh.metrics()
    ok = (
        'streamlearn_requests_total{code="200",endpoint="/v2/models/{name}/infer",transport="http"}'
    )
    assert metrics[ok] >= 1
    assert (
        metrics[
            "streamlearn_request_latency_seconds_count{endpoint="
            '"/v2/models/{name}/infer",transport="http"}'
        ]
        >= 2
    )
    assert (
        metrics['streamlearn_requests_rejected_total{reason="feature_count",transport="http"}'] == 1
    )
    assert metrics["streamlearn_served_model_version"] > 0
    assert 0 <= metrics["streamlearn_snapshot_age_seconds"] < 5
    assert metrics["streamlearn_serving_ready"] == 1


def test_openapi_document_lists_every_endpoint(served: Running) -> None:
    spec = served.http.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/infer",
        "/v1/status",
        "/v1/experts",
        "/v1/models",
        "/v1/drift-events",
        "/v1/learn",
        "/v1/checkpoint",
        "/metrics",
    } <= paths
    assert "InferRequest" in spec["components"]["schemas"]
    assert served.http.get("/docs").status_code == 200


def test_unreachable_after_stop(fresh: Running) -> None:
    fresh.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{fresh.base}/v2/health/live", timeout=2)


def test_drift_events_after_the_concept_flips(fresh: Running) -> None:
    flipped = [
        json.dumps({**json.loads(r), "y": 1 - json.loads(r)["y"]}).encode()
        for r in labeled(1_000, seed=9)
    ]
    fresh.source.add(flipped)

    def drifts() -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = fresh.http.get(
            "/v1/drift-events", params={"kind": "drift"}
        ).json()["events"]
        return events

    # Serving reads what the learner publishes (its status, four times a second).
    wait_until(lambda: bool(drifts()), 30, "a drift, as the learner published it")
    (drift,) = drifts()
    assert drift["detector"] == "cusum" and drift["expert"] == "0"
    assert 2_000 <= drift["sample"] < 2_100  # soon after the flip
    assert fresh.http.get("/v1/drift-events", params={"expert": "7"}).json() == {"events": []}
    assert fresh.http.get("/v1/drift-events", params={"limit": 0}).json() == {"events": []}
    bad = fresh.http.get("/v1/drift-events", params={"kind": "storm"})
    assert bad.status_code == 422 and "kind" in bad.json()["error"]
    metrics = fresh.metrics()
    assert metrics['streamlearn_drift_events_total{detector="cusum",expert="0"}'] == 1


def test_a_new_regime_spawns_an_expert_seen_in_experts_metrics_and_answers(fresh: Running) -> None:
    flipped = [
        json.dumps({**json.loads(r), "y": 1 - json.loads(r)["y"]}).encode()
        for r in labeled(1_000, seed=9)
    ]
    fresh.source.add(flipped)
    wait_until(lambda: bool(fresh.daemon.expert_history.recent(kind="spawn")), 30, "a spawn")

    def published() -> bool:
        body = fresh.http.get("/v1/experts").json()
        return body["active"] == "1" and bool(body["events"])

    wait_until(published, 10, "the snapshot and the status to name the new expert")
    body = fresh.http.get("/v1/experts").json()
    assert [e["id"] for e in body["experts"]] == ["0", "1"]
    old, new = body["experts"]
    assert old["active"] is False and new["active"] is True
    assert old["loss_band"][0] <= old["loss_band"][1] and old["wins"] == 1
    (spawn,) = body["events"]
    assert spawn["kind"] == "spawn" and (spawn["expert"], spawn["previous"]) == ("1", "0")
    assert set(spawn["scores"]) == {"0"} and 2_000 < spawn["sample"] < 2_300
    assert fresh.http.get("/v1/experts", params={"events": 0}).json()["events"] == []
    answer = fresh.http.post(
        INFER, json={**infer_body([ROW, [-1, 2, 0.3, 0.0]]), "outputs": [{"name": "experts"}]}
    ).json()
    (experts,) = answer["outputs"]
    assert (experts["name"], experts["datatype"], experts["shape"]) == ("experts", "BYTES", [2])
    assert set(experts["data"]) <= {"0", "1"}
    assert answer["parameters"] == {"expert": ",".join(dict.fromkeys(experts["data"]))}
    metrics = fresh.metrics()
    assert metrics['streamlearn_expert_events_total{kind="spawn"}'] == 1
    wait_until(lambda: fresh.metrics().get("streamlearn_experts_alive") == 2, 5, "gauges")
    metrics = fresh.metrics()
    assert metrics['streamlearn_expert_active{expert="1"}'] == 1
    assert metrics['streamlearn_expert_active{expert="0"}'] == 0
    assert metrics['streamlearn_expert_memory_bytes{part="experts"}'] > 0


def test_served_rows_adapt_the_model_only_when_on_requests_is_set(
    service_factory: Callable[..., Running],
) -> None:
    rows = [[v + 2.0 for v in ROW]] * 32  # shifted inputs: one batch of adaptation
    plain = service_factory(model={"norm": "batch"}, adapt={"method": "norm"})
    settled(plain, 2_000)
    version = plain.daemon.engine.version
    assert plain.http.post(INFER, json=infer_body(rows)).status_code == 200
    time.sleep(0.3)  # a few learner loops: time enough to adapt, were it on
    assert plain.daemon.engine.version == version
    assert plain.metrics().get("streamlearn_tta_adapted_samples_total") == 0

    # One plain step: 32 copies of one shifted row are far off the statistics' scale, which
    # on_shift restart would react to with a restart first (test_adapt_shift_exact.py).
    adapting = service_factory(
        model={"norm": "batch"},
        adapt={"method": "norm", "on_requests": True, "on_shift": "none"},
    )
    settled(adapting, 2_000)
    assert adapting.http.post("/v1/checkpoint", headers=AUTH).json()["saved"]
    version = adapting.daemon.engine.version
    answered = adapting.http.post(INFER, json=infer_body(rows)).json()
    assert answered["model_version"] == str(version)  # answered before adapting on them
    wait_until(lambda: adapting.daemon.engine.version == version + 1, 5, "an adaptation step")
    assert adapting.metrics()["streamlearn_tta_adapted_samples_total"] == 32
    assert adapting.daemon.engine.samples_predicted == 0  # nothing published for them
    # No sample was learned since the last checkpoint, but the weights moved: saved too.
    checkpoint = adapting.http.post("/v1/checkpoint", headers=AUTH).json()
    saved = describe(Path(checkpoint["path"]))
    assert saved["model_version"] == version + 1
    assert saved["adapt"]["experts"]["0"]["adapted_since_anchor"] == 32
