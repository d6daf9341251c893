"""Closed-form heads in the running service: POST /v1/forget unlearns samples exactly from an
rls head through the learner process; a Kalman head serves and exports its forgetting."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
import torch

from streamlearn.core.experts.headed import HeadExpert
from streamlearn.core.models.heads import KalmanHead
from streamlearn.serve.proto import streamlearn_v1_pb2 as v1
from streamlearn.serve.proto import streamlearn_v1_pb2_grpc as v1_grpc
from tests.serving.conftest import TOKEN, Running, infer_body, settled, wait_until

AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Exact unlearning needs the features as they were: a frozen body, no running scaling.
RLS = {"head": "rls", "standardize": False, "closed_form": {"body_samples": 0}}


def _head(running: Running) -> HeadExpert:
    expert = running.daemon.engine.expert
    assert isinstance(expert, HeadExpert)
    return expert


def test_forget_needs_the_token_and_leaves_the_head_as_if_never_learned(
    service_factory: Callable[..., Running],
) -> None:
    running = service_factory(model=RLS)
    settled(running, 2_000)
    before = _head(running).solver.weights().clone()
    g = torch.Generator().manual_seed(4)
    rows = torch.randn(12, 4, generator=g).tolist()
    samples = {"samples": [{"x": row, "y": i % 2} for i, row in enumerate(rows)]}
    learned = running.daemon.engine.samples_learned
    assert running.http.post("/v1/learn", json=samples, headers=AUTH).status_code == 202
    wait_until(lambda: running.daemon.engine.samples_learned >= learned + 12, 5, "learned")
    assert not torch.allclose(_head(running).solver.weights(), before, atol=1e-6)

    assert running.http.post("/v1/forget", json=samples).status_code == 401
    done = running.http.post("/v1/forget", json=samples, headers=AUTH)
    assert done.status_code == 200, done.text
    pool = running.daemon.engine.pool
    assert pool is not None and done.json() == {"forgotten": 12, "expert": pool.active_id}
    torch.testing.assert_close(_head(running).solver.weights(), before, atol=1e-6, rtol=0)


def test_forget_on_an_sgd_head_is_a_409_naming_why(fresh: Running) -> None:
    body = {"samples": [{"x": [0.0, 0.0, 0.0, 0.0], "y": 0}]}
    refused = fresh.http.post("/v1/forget", json=body, headers=AUTH)
    assert refused.status_code == 409 and "rls head" in refused.json()["error"]


def test_a_kalman_head_serves_unchanged_and_exports_its_learned_forgetting(
    service_factory: Callable[..., Running],
) -> None:
    running = service_factory(model={"head": "kalman"})
    settled(running, 2_000)
    answer = running.http.post(
        "/v2/models/streamlearn/infer", json=infer_body([[0.5, 0.5, -0.2, 0.1]])
    )
    assert answer.status_code == 200, answer.text

    def exported() -> bool:
        value = running.metrics().get('streamlearn_head_forgetting{expert="0"}')
        return value is not None and 0.9 <= value < 1.0

    wait_until(exported, 10, "the forgetting gauge")


def test_a_kalman_head_serves_its_predictive_variance_when_asked(
    service_factory: Callable[..., Running],
) -> None:
    running = service_factory(model={"head": "kalman"})
    settled(running, 2_000)
    rows = [[0.5, 0.5, -0.2, 0.1], [6.0, -6.0, 6.0, -6.0]]
    asked = {"outputs": [{"name": "predictions"}, {"name": "variance"}]}
    answer = running.http.post("/v2/models/streamlearn/infer", json=infer_body(rows, **asked))
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert sorted(outputs) == ["predictions", "variance"]
    spread = outputs["variance"]
    assert spread["datatype"] == "FP32" and spread["shape"] == [2]
    solver = _head(running).solver
    assert isinstance(solver, KalmanHead)
    assert all(v > solver.noise for v in spread["data"])
    # The epistemic term depends on the row. Which row is less certain depends on the body's
    # features (a saturated unit maps a far row near the data), so only that they differ;
    # the formula itself is checked in tests/unit/test_kalman_variance.py.
    assert spread["data"][1] != spread["data"][0]
    plain = running.http.post("/v2/models/streamlearn/infer", json=infer_body(rows))
    assert "variance" not in {o["name"] for o in plain.json()["outputs"]}  # on request only
    meta = running.http.get("/v2/models/streamlearn").json()
    assert {"name": "variance", "datatype": "FP32", "shape": [-1]} in meta["outputs"]


def test_variance_from_a_head_without_one_is_a_422_naming_why(fresh: Running) -> None:
    settled(fresh, 500)
    asked = {"outputs": [{"name": "variance"}]}
    refused = fresh.http.post(
        "/v2/models/streamlearn/infer", json=infer_body([[0.0, 0.0, 0.0, 0.0]], **asked)
    )
    assert refused.status_code == 422 and "kalman" in refused.json()["error"]


def test_forget_over_grpc_needs_the_token_and_unlearns_exactly(
    service_factory: Callable[..., Running],
) -> None:
    running = service_factory(model=RLS)
    settled(running, 2_000)
    before = _head(running).solver.weights().clone()
    g = torch.Generator().manual_seed(5)
    rows = torch.randn(8, 4, generator=g).tolist()
    samples = {"samples": [{"x": row, "y": i % 2} for i, row in enumerate(rows)]}
    learned = running.daemon.engine.samples_learned
    assert running.http.post("/v1/learn", json=samples, headers=AUTH).status_code == 202
    wait_until(lambda: running.daemon.engine.samples_learned >= learned + 8, 5, "learned")

    stub = v1_grpc.LearnerStub(running.channel)
    request = v1.ForgetRequest(
        samples=[v1.LabeledSample(x=row, class_index=i % 2) for i, row in enumerate(rows)]
    )
    with pytest.raises(grpc.RpcError) as refused:
        stub.Forget(request)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    done = stub.Forget(request, metadata=[("authorization", f"Bearer {TOKEN}")])
    pool = running.daemon.engine.pool
    assert pool is not None and (done.forgotten, done.expert) == (8, pool.active_id)
    torch.testing.assert_close(_head(running).solver.weights(), before, atol=1e-6, rtol=0)
    # a sample without its label: refused before the learner sees it, as over HTTP (422)
    unlabeled = v1.ForgetRequest(samples=[v1.LabeledSample(x=rows[0])])
    with pytest.raises(grpc.RpcError) as invalid:
        stub.Forget(unlabeled, metadata=[("authorization", f"Bearer {TOKEN}")])
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "samples[0].y" in str(invalid.value.details())


def test_forget_over_grpc_on_an_sgd_head_is_failed_precondition(fresh: Running) -> None:
    stub = v1_grpc.LearnerStub(fresh.channel)
    request = v1.ForgetRequest(samples=[v1.LabeledSample(x=[0.0] * 4, class_index=0)])
    with pytest.raises(grpc.RpcError) as refused:
        stub.Forget(request, metadata=[("authorization", f"Bearer {TOKEN}")])
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "rls head" in str(refused.value.details())
