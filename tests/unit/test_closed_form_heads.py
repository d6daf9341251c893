"""Closed-form heads: RLS is exact ridge regression, downdates exactly, grows classes; the
Kalman head's forgetting falls on drift and stays near 1 without; the experts checkpoint."""

from __future__ import annotations

import pytest
import torch

from streamlearn.core.engine import Engine
from streamlearn.core.errors import ModelError
from streamlearn.core.experts.expert import build_expert
from streamlearn.core.experts.headed import HeadExpert
from streamlearn.core.experts.settings import ExpertsSettings
from streamlearn.core.models.heads import KalmanHead, PrototypeHead, RlsHead
from streamlearn.core.types import Sample
from streamlearn.settings import ModelSettings
from streamlearn.testing.common import roundtrip

F64 = torch.float64


def _rows(n: int, width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, width, generator=g, dtype=F64)
    y = x @ torch.randn(width, 3, generator=g, dtype=F64) + torch.randn(
        n, 3, generator=g, dtype=F64
    )
    return x, y


def _ridge(x: torch.Tensor, y: torch.Tensor, ridge: float) -> torch.Tensor:
    eye = torch.eye(x.shape[1], dtype=F64)
    solved: torch.Tensor = torch.linalg.solve(x.T @ x + ridge * eye, x.T @ y)
    return solved


@pytest.mark.parametrize("batch", [1, 7, 32])
def test_rls_equals_the_joint_ridge_solve_in_any_batching(batch: int) -> None:
    x, y = _rows(300, 6, seed=1)
    head = RlsHead(6, 3, ridge=0.5)
    for start in range(0, 300, batch):
        head.update(x[start : start + batch], y[start : start + batch])
    torch.testing.assert_close(head.weights(), _ridge(x, y, 0.5), atol=1e-9, rtol=0)
    assert head.rows == 300


def test_a_new_class_is_a_zero_column_until_it_appears_even_in_a_mixed_batch() -> None:
    x, _ = _rows(60, 4, seed=2)
    labels = torch.tensor([0, 1] * 20 + [0, 1, 2] * 6 + [2, 2])
    y = torch.nn.functional.one_hot(labels, 5).to(F64)
    head = RlsHead(4, 5, ridge=1.0)
    head.update(x[:40], y[:40])
    assert bool((head.weights()[:, 2:] == 0).all())
    head.update(x[40:], y[40:])  # old and new classes in one batch
    assert bool((head.weights()[:, 2] != 0).any())
    assert bool((head.weights()[:, 3:] == 0).all())
    torch.testing.assert_close(head.weights(), _ridge(x, y, 1.0), atol=1e-9, rtol=0)


def test_a_downdate_removes_rows_exactly() -> None:
    x, y = _rows(400, 8, seed=3)
    head = RlsHead(8, 3, ridge=1.0)
    for start in range(0, 400, 16):
        head.update(x[start : start + 16], y[start : start + 16])
    gone = torch.tensor([3, 50, 51, 52, 199, 311, 398])
    kept = torch.ones(400, dtype=torch.bool)
    kept[gone] = False
    head.downdate(x[gone], y[gone])
    torch.testing.assert_close(head.weights(), _ridge(x[kept], y[kept], 1.0), atol=1e-6, rtol=0)
    assert head.rows == 400 - len(gone)


def test_a_downdate_of_rows_never_learned_is_refused_and_changes_nothing() -> None:
    x, y = _rows(3, 4, seed=4)
    head = RlsHead(4, 3, ridge=1.0)
    head.update(x[:1], y[:1])
    before = head.state_dict()
    with pytest.raises(ModelError, match="not all learned"):
        head.downdate(x * 100, y)
    assert torch.equal(head.state_dict()["W"], before["W"])
    assert torch.equal(head.state_dict()["R"], before["R"])


def _kalman_forgetting(drift: bool, seed: int = 0) -> list[float]:
    """gamma after each batch of a seeded linear stream whose weights change every 1000 rows."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(5, 1, generator=g, dtype=F64)
    head = KalmanHead(6, 1, ridge=1.0, noise=0.1, forgetting=0.999,
                      forgetting_range=(0.9, 0.99999), rate=2.0)  # fmt: skip
    out = []
    for i in range(0, 4000, 8):
        if drift and i % 1000 == 0 and i > 0:
            w = torch.randn(5, 1, generator=g, dtype=F64)
        x = torch.randn(8, 5, generator=g, dtype=F64)
        y = x @ w + 0.3 * torch.randn(8, 1, generator=g, dtype=F64)
        head.update(torch.cat([x, torch.ones(8, 1, dtype=F64)], dim=1), y, columns=1)
        out.append(head.forgetting)
    return out


def test_kalman_forgetting_falls_after_each_drift_and_stays_near_one_without() -> None:
    stable, drifting = _kalman_forgetting(False), _kalman_forgetting(True)
    assert min(stable[125:]) > 0.9999  # after 1000 rows: memory above 10,000 samples
    for change in (1000, 2000, 3000):
        before = drifting[change // 8 - 1]
        after = min(drifting[change // 8 : change // 8 + 10])
        # the memory 1/(1-gamma) shrinks at least 3x within 80 samples of the change
        assert (1 - after) > 3 * (1 - before), (change, before, after)


def _textbook_kalman_step(
    w: torch.Tensor,
    p: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    decay: float,
    prior: float,
    noise: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of the filter as written in the textbook: predict, then correct."""
    eye = torch.eye(p.shape[0], dtype=F64)
    p_prior = decay**2 * p + (1 - decay**2) * prior * eye
    s = x @ p_prior @ x.T + noise * torch.eye(x.shape[0], dtype=F64)
    gain = p_prior @ x.T @ torch.linalg.inv(s)
    return decay * w + gain @ (y - x @ (decay * w)), p_prior - gain @ s @ gain.T


@pytest.mark.parametrize("forgetting", [0.99, 0.9999])
def test_the_kalman_update_is_the_textbook_filter_step(forgetting: float) -> None:
    x, y = _rows(120, 6, seed=7)
    head = KalmanHead(6, 3, ridge=2.0, noise=0.5, forgetting=forgetting,
                      forgetting_range=(0.9, 0.99999), rate=0.0)  # fmt: skip
    w, p = torch.zeros(6, 3, dtype=F64), torch.eye(6, dtype=F64) / 2.0
    for start in range(0, 120, 8):
        rows, targets = x[start : start + 8], y[start : start + 8]
        w, p = _textbook_kalman_step(w, p, rows, targets, forgetting**8, 0.5, 0.5)
        head.update(rows, targets, columns=3)
    assert head.forgetting == pytest.approx(forgetting)  # rate 0: gamma is held
    torch.testing.assert_close(head.W, w, rtol=0, atol=1e-9)
    torch.testing.assert_close(head.P, p, rtol=0, atol=1e-9)
    torch.testing.assert_close(head.P, head.P.T, rtol=0, atol=1e-12)


def test_after_a_warm_start_the_kalman_head_keeps_its_weights_and_restarts_its_covariance() -> None:
    settings = ModelSettings(head="kalman", hidden=[8])
    g = torch.Generator().manual_seed(9)
    x, y = torch.randn(400, 2, generator=g), torch.randint(0, 2, (400,), generator=g)
    parent = build_expert(settings, 2, torch.device("cpu"))
    child = build_expert(settings, 2, torch.device("cpu"))
    for start in range(0, 400, 8):
        parent.learn(x[start : start + 8], y[start : start + 8])
    child.load_state_dict(roundtrip(parent.state_dict()))
    assert isinstance(child, HeadExpert) and isinstance(child.solver, KalmanHead)
    assert isinstance(parent, HeadExpert)
    child.after_warm_start()
    width = child.solver.P.shape[0]
    prior = torch.eye(width, dtype=F64) / settings.closed_form.ridge
    torch.testing.assert_close(child.solver.P, prior, rtol=0, atol=0)
    torch.testing.assert_close(child.module.head_covariance, prior, rtol=0, atol=0)
    assert child.forgetting == pytest.approx(settings.closed_form.forgetting)
    assert torch.equal(child.predict(x), parent.predict(x))  # the weights are kept
    assert float(parent.module.head_covariance.trace()) < 0.5 * width  # the parent stays sure


def test_the_pool_restarts_a_warm_started_kalman_expert() -> None:
    # Regime A (y = x0 > 0) then its opposite: the drift spawns expert 1 from expert 0.
    g = torch.Generator().manual_seed(9)
    x = torch.randn(6_000, 2, generator=g)
    y = (x[:, 0] > 0).long()
    y[3_000:] = 1 - y[3_000:]
    # gamma held near 1: P only shrinks with rows learned, never grows back by forgetting
    held = {"forgetting": 0.99999, "forgetting_min": 0.99999, "forgetting_rate": 0.0}
    model = ModelSettings(head="kalman", hidden=[8], learning_rate=0.01, closed_form=held)
    engine = Engine(model, experts=ExpertsSettings(spawn="warm_start"))
    for start in range(0, 6_000, 32):
        batch = zip(x[start : start + 32].tolist(), y[start : start + 32].tolist(), strict=True)
        events = engine.process([Sample(r, int(c)) for r, c in batch]).pool_events
        if any(e.kind == "spawn" for e in events):
            break
    assert engine.pool is not None and sorted(engine.pool.members) == ["0", "1"]
    parent, child = (engine.pool.members[i].expert for i in ("0", "1"))
    assert isinstance(parent, HeadExpert) and isinstance(child, HeadExpert)
    # Copied and not restarted, the child would be at least as sure as its parent (it
    # learned more rows); restarted, it learned only the rows since the spawn.
    trace = {"parent": float(parent.module.head_covariance.trace()),
             "child": float(child.module.head_covariance.trace())}  # fmt: skip
    assert trace["child"] > 1.2 * trace["parent"], trace


def test_kalman_predictive_variance_shrinks_where_it_has_seen_data() -> None:
    x, y = _rows(200, 4, seed=5)
    head = KalmanHead(4, 3, 1.0, 1.0, 0.99999, (0.9, 0.99999), 0.0)
    seen, unseen = x[:1], torch.zeros(1, 4, dtype=F64)
    unseen[0, 0] = 50.0  # far outside the data
    head.update(x, y, columns=3)
    assert float(head.variance(seen)) < float(head.variance(unseen))


def test_prototypes_predict_the_nearest_class_mean() -> None:
    means = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]], dtype=F64)
    labels = torch.arange(3).repeat(20)
    x = means[labels] + 0.1 * torch.randn(
        60, 2, generator=torch.Generator().manual_seed(6), dtype=F64
    )
    head = PrototypeHead(3, 4)
    rows = torch.cat([x, torch.ones(60, 1, dtype=F64)], dim=1)
    head.update(rows, torch.nn.functional.one_hot(labels, 4).to(F64))
    scores = rows @ head.weights()
    assert torch.equal(scores.argmax(dim=1), labels)  # the unseen class 3 never wins


@pytest.mark.parametrize("head", ["rls", "kalman", "prototype"])
def test_an_expert_checkpoint_restores_the_head_exactly(head: str) -> None:
    settings = ModelSettings(head=head, hidden=[16])
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(64, 5, generator=g), torch.randint(0, 4, (64,), generator=g)
    original = build_expert(settings, 5, torch.device("cpu"))
    for start in range(0, 64, 8):
        original.learn(x[start : start + 8], y[start : start + 8])
    restored = build_expert(settings, 5, torch.device("cpu"))
    restored.load_state_dict(roundtrip(original.state_dict()))
    assert torch.equal(restored.predict(x), original.predict(x))
    assert torch.equal(restored.learn(x[:8], y[:8]), original.learn(x[:8], y[:8]))
    assert torch.equal(restored.predict(x), original.predict(x))


def test_the_expert_forgets_samples_as_if_never_learned_with_a_frozen_body() -> None:
    settings = ModelSettings(head="rls", hidden=[16], closed_form={"body_samples": 0})
    g = torch.Generator().manual_seed(8)
    x, y = torch.randn(96, 5, generator=g), torch.randint(0, 3, (96,), generator=g)
    forgetting = build_expert(settings, 5, torch.device("cpu"))
    never = build_expert(settings, 5, torch.device("cpu"))
    assert isinstance(forgetting, HeadExpert) and isinstance(never, HeadExpert)
    kept = torch.ones(96, dtype=torch.bool)
    kept[10:30] = False
    for start in range(0, 96, 8):
        forgetting.learn(x[start : start + 8], y[start : start + 8])
    never.learn(x[kept], y[kept])
    assert forgetting.forget(x[~kept], y[~kept]) == 20
    torch.testing.assert_close(
        forgetting.solver.weights(), never.solver.weights(), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(forgetting.predict(x), never.predict(x), atol=1e-5, rtol=0)


def test_only_the_rls_head_forgets() -> None:
    expert = build_expert(ModelSettings(head="kalman"), 5, torch.device("cpu"))
    assert isinstance(expert, HeadExpert)
    with pytest.raises(ModelError, match="only the rls head"):
        expert.forget(torch.randn(2, 5), torch.tensor([0, 1]))


def test_a_head_wider_than_allowed_is_refused_when_built() -> None:
    settings = ModelSettings(head="rls", hidden=[64], closed_form={"max_width": 32})
    with pytest.raises(ModelError, match="max_width"):
        build_expert(settings, 5, torch.device("cpu"))


def _engine(**model: object) -> Engine:
    settings = ModelSettings(**{"head": "rls", "hidden": [8], "standardize": False, **model})
    return Engine(settings, experts=ExpertsSettings(enabled=False))


def test_the_engine_forgets_from_the_named_expert_and_refuses_what_it_cannot() -> None:
    engine = _engine(closed_form={"body_samples": 0})
    g = torch.Generator().manual_seed(9)
    rows = torch.randn(40, 3, generator=g).tolist()
    samples = [Sample(row, "ab"[i % 2]) for i, row in enumerate(rows)]
    engine.process(samples[:32])
    assert engine.pool is not None
    expert = engine.pool.active_expert
    assert isinstance(expert, HeadExpert)
    before = expert.solver.weights().clone()
    engine.process(samples[32:])
    version = engine.version
    done = engine.forget(samples[32:], expert=engine.pool.active_id)
    assert done == {"forgotten": 8, "expert": engine.pool.active_id}
    torch.testing.assert_close(expert.solver.weights(), before, atol=1e-6, rtol=0)
    assert engine.version == version + 1  # a new model version: served with the next snapshot
    with pytest.raises(ModelError, match="never learned"):
        engine.forget([Sample(rows[0], "c")])
    with pytest.raises(ModelError, match="no rls head"):
        engine.forget(samples[:1], expert="nobody")
    with pytest.raises(ModelError, match="no rls head"):
        sgd = _engine(head="sgd")
        sgd.process(samples[:8])
        sgd.forget(samples[:1])


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_the_body_learns_on_squared_error_plus_weighted_cross_entropy(weight: float) -> None:
    settings = ModelSettings(head="kalman", hidden=[8], closed_form={"body_cross_entropy": weight})
    expert = build_expert(settings, 3, torch.device("cpu"))
    assert isinstance(expert, HeadExpert)
    expert.n_seen = 2  # the third output is a class not seen yet: left out of both terms
    scores = torch.tensor([[0.9, 0.2, 5.0], [0.1, 0.4, -5.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    y = torch.tensor([0, 1])
    squared = ((0.1**2 + 0.2**2) + (0.1**2 + 0.6**2)) / 2
    logits = torch.tensor([[0.9, 0.2], [0.1, 0.4]])
    cross_entropy = -(logits.log_softmax(dim=1)[[0, 1], [0, 1]]).mean()
    expected = squared + weight * float(cross_entropy)
    assert float(expert._body_loss(scores, targets, y)) == pytest.approx(expected, rel=1e-6)


def test_a_regression_body_learns_on_squared_error_alone() -> None:
    settings = ModelSettings(
        task="regression", head="kalman", hidden=[8], closed_form={"body_cross_entropy": 2.0}
    )
    expert = build_expert(settings, 3, torch.device("cpu"))
    assert isinstance(expert, HeadExpert)
    scores, y = torch.tensor([[1.5], [-0.5]]), torch.tensor([1.0, 0.0])
    loss = expert._body_loss(scores, y.reshape(-1, 1), y)
    assert float(loss) == pytest.approx((0.5**2 + 0.5**2) / 2)


@pytest.mark.parametrize(("task", "moves"), [("classification", True), ("regression", False)])
def test_the_cross_entropy_weight_reaches_the_body_step_for_classes_only(
    task: str, moves: bool
) -> None:
    g = torch.Generator().manual_seed(9)
    x = torch.randn(8, 5, generator=g)
    y = torch.randint(0, 3, (8,), generator=g) if task == "classification" else torch.randn(8)
    bodies = []
    for weight in (0.0, 2.0):
        settings = ModelSettings(
            task=task, head="kalman", hidden=[8], closed_form={"body_cross_entropy": weight}
        )
        expert = build_expert(settings, 5, torch.device("cpu"))
        assert isinstance(expert, HeadExpert)
        expert.learn(x, y)
        expert.learn(x, y)  # the first step's head is all zeros: no cross-entropy gradient
        bodies.append(torch.cat([p.flatten() for p in expert.module.body.parameters()]))
    assert (not torch.equal(bodies[0], bodies[1])) is moves
