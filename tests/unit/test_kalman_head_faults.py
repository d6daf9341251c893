"""The Kalman head where it can go wrong: a module on another device than its solver (CUDA),
and an innovation matrix that fails its Cholesky."""

from __future__ import annotations

import pytest
import torch

from streamlearn.core.engine import Engine
from streamlearn.core.experts import headed
from streamlearn.core.experts.headed import HeadExpert, covariance_shareable
from streamlearn.core.models.heads import KalmanHead, with_bias
from streamlearn.core.types import Sample
from streamlearn.settings import ExpertsSettings, ModelSettings


def _engine(device: str = "cpu") -> Engine:
    model = ModelSettings(head="kalman", hidden=[8], device=device)
    return Engine(model, experts=ExpertsSettings(enabled=False))


def _batches(seed: int = 3, n: int = 128, size: int = 32) -> list[list[Sample]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = (x[:, 0] > 0).long().tolist()
    rows = x.tolist()
    return [
        [Sample(r, t) for r, t in zip(rows[i : i + size], y[i : i + size], strict=True)]
        for i in range(0, n, size)
    ]


def _kalman(engine: Engine) -> HeadExpert:
    """The engine's expert (built on its first batch)."""
    if engine.expert is None:
        engine.process(_batches()[0])
    expert = engine.expert
    assert isinstance(expert, HeadExpert) and isinstance(expert.solver, KalmanHead)
    return expert


def test_the_covariance_is_shared_only_on_the_solvers_device() -> None:
    expert = _kalman(_engine())
    solver = expert.solver
    assert isinstance(solver, KalmanHead)
    assert covariance_shareable(solver, expert.module)
    assert solver.P is expert.module.head_covariance  # the CPU path: one tensor
    expert.module.head_covariance = torch.empty_like(solver.P, device="meta")
    assert not covariance_shareable(solver, expert.module)


def test_an_unshared_covariance_is_copied_on_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(headed, "covariance_shareable", lambda solver, module: False)
    engine = _engine()
    expert = _kalman(engine)
    assert isinstance(expert.solver, KalmanHead)
    before = expert.module.head_covariance.clone()
    for batch in _batches():
        engine.process(batch)
        assert expert.solver.P is not expert.module.head_covariance
        assert torch.equal(expert.module.head_covariance, expert.solver.P)
    assert not torch.equal(expert.module.head_covariance, before)  # it did learn
    x = torch.tensor([[0.5, -1.0, 0.2], [3.0, 3.0, 3.0]])
    expected = expert.solver.variance(with_bias(expert.module.body(x).detach()))
    torch.testing.assert_close(expert.variance(x).double(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_kalman_head_learns_and_serves_a_variance_on_cuda() -> None:
    engine = _engine("cuda")
    expert = _kalman(engine)
    assert isinstance(expert.solver, KalmanHead)
    assert expert.module.head_covariance.device.type == "cuda"
    assert expert.solver.P.device.type == "cpu"
    for batch in _batches():
        engine.process(batch)
        assert expert.skipped is None
    torch.testing.assert_close(expert.module.head_covariance.cpu(), expert.solver.P)
    x = torch.tensor([[0.5, -1.0, 0.2], [3.0, 3.0, 3.0]])
    answer = engine.predictor().predict(x, variance=True)
    assert answer.variance is not None and len(answer.variance) == 2
    assert all(v > expert.solver.noise for v in answer.variance)


def _filter() -> KalmanHead:
    return KalmanHead(
        4, 2, ridge=1.0, noise=0.1, forgetting=0.99, forgetting_range=(0.9, 0.9999), rate=0.1
    )


def test_a_non_positive_definite_innovation_leaves_the_filter_and_says_so() -> None:
    solver = _filter()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.nn.functional.one_hot(torch.arange(6) % 2, 2).double()
    assert solver.update(x, y, 2)  # a healthy step goes through
    solver.P.mul_(-100.0)  # a broken covariance: S = X P X^T + ... is negative definite
    broken, weights, u = solver.P.clone(), solver.W.clone(), solver.u
    assert not solver.update(x, y, 2)
    assert torch.equal(solver.P, broken) and torch.equal(solver.W, weights) and solver.u == u


def test_the_expert_skips_a_broken_covariance_step_and_restarts_it() -> None:
    from structlog.testing import capture_logs

    engine = _engine()
    expert = _kalman(engine)
    solver = expert.solver
    assert isinstance(solver, KalmanHead)
    batches = _batches(n=128)
    solver.P.mul_(-100.0)  # in place: the module's shared buffer breaks with it
    weights = solver.W.clone()
    with capture_logs() as logs:
        result = engine.process(batches[1])
    assert expert.skipped == "covariance"
    assert result.steps_skipped == {"covariance": 1}
    assert [line["event"] for line in logs if line["log_level"] == "warning"] == [
        "kalman_covariance_restarted"
    ]
    assert torch.equal(solver.W, weights)  # the weights kept
    prior = torch.eye(solver.P.shape[0], dtype=torch.float64) * solver.prior
    assert torch.equal(solver.P, prior) and torch.equal(expert.module.head_covariance, prior)
    assert solver.u == solver.u_start
    result = engine.process(batches[2])  # learning again from the prior, not frozen
    assert expert.skipped is None and result.steps_skipped == {}
    assert not torch.equal(solver.W, weights)
