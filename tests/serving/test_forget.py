"""POST /v1/forget: samples unlearned exactly from an rls head, through the learner process."""

from __future__ import annotations

from collections.abc import Callable

import torch

from streamlearn.core.experts.headed import HeadExpert
from tests.serving.conftest import TOKEN, Running, settled, wait_until

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
