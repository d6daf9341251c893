"""Closed-form heads in the running service: POST /v1/forget unlearns samples exactly from an
rls head through the learner process; a Kalman head serves and exports its forgetting."""

from __future__ import annotations

from collections.abc import Callable

import torch

from streamlearn.core.experts.headed import HeadExpert
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
