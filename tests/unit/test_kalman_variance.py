"""The Kalman head's predictive variance: computed in the module from the filter's covariance,
the same in the learner, in a serving snapshot and in prediction records; absent elsewhere."""

from __future__ import annotations

import json
from typing import Any

import torch
from structlog.testing import capture_logs

from streamlearn.core.engine import Engine
from streamlearn.core.experts.headed import HeadExpert
from streamlearn.core.models.heads import KalmanHead, with_bias
from streamlearn.core.types import Prediction, Sample
from streamlearn.serve.frozen import InProcessFreezer
from streamlearn.settings import AdaptSettings, ExpertsSettings, ModelSettings
from streamlearn.sinks.messages import prediction_message
from streamlearn.testing.common import roundtrip


def _learned(head: str, task: str = "classification", seed: int = 3, adapt: str = "none") -> Engine:
    engine = _engine(head, task, adapt)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 3, generator=g)
    y = (x[:, 0] > 0).long().tolist() if task == "classification" else x[:, 1].tolist()
    for start in range(0, 256, 32):
        rows = x[start : start + 32].tolist()
        engine.process([Sample(r, t) for r, t in zip(rows, y[start : start + 32], strict=True)])
    if adapt != "none":  # unlabeled rows: the adaptation's state (anchor, student) is saved
        engine.process([Sample(row, None) for row in x[:32].tolist()])
    return engine


def _engine(head: str, task: str = "classification", adapt: str = "none") -> Engine:
    model = ModelSettings(head=head, hidden=[8], task=task)
    return Engine(model, experts=ExpertsSettings(enabled=False), adapt=AdaptSettings(method=adapt))


def _probe() -> torch.Tensor:
    return torch.tensor([[0.5, -1.0, 0.2], [3.0, 3.0, 3.0], [0.0, 0.0, 0.0]])


def test_the_variance_is_the_filters_phi_p_phi_plus_noise() -> None:
    engine = _learned("kalman")
    expert = engine.expert
    assert isinstance(expert, HeadExpert) and isinstance(expert.solver, KalmanHead)
    x = _probe()
    features = expert.module.body(x).detach()
    expected = expert.solver.variance(with_bias(features))
    torch.testing.assert_close(expert.variance(x).double(), expected, rtol=1e-5, atol=1e-6)
    assert bool((expected > expert.solver.noise).all())  # the weights' uncertainty adds to it
    # far from the data (row 1) the prediction is less certain than at its centre (row 2)
    assert float(expected[1]) > float(expected[2])


def test_the_learner_and_its_serving_snapshot_give_the_same_variance() -> None:
    engine = _learned("kalman")
    x = _probe()
    live = engine.predictor().predict(x, variance=True)
    snapshot = InProcessFreezer(engine).freeze()
    assert snapshot is not None
    served = snapshot.predict(x, variance=True)
    assert live.variance is not None and served.variance is not None
    assert served.variance == live.variance
    assert snapshot.predict(x).variance is None  # only when asked for


def test_regression_variance_is_in_the_targets_scale() -> None:
    engine = _learned("kalman", task="regression")
    x = _probe()
    assert engine.target_scaler is not None
    expert = engine.expert
    assert isinstance(expert, HeadExpert)
    scaled = engine.scaler.transform(x) if engine.scaler is not None else x
    std = float(engine.target_scaler.scale()[0])
    answer = engine.predictor().predict(x, variance=True)
    assert answer.variance is not None
    expected = (expert.variance(scaled).double() * std**2).tolist()
    assert answer.variance == expected


def test_heads_without_a_covariance_give_none() -> None:
    for head in ("sgd", "rls"):
        engine = _learned(head)
        assert engine.predictor().predict(_probe(), variance=True).variance is None


def test_prediction_records_carry_the_variance_only_when_there_is_one() -> None:
    with_spread = json.loads(prediction_message(Prediction("a", 1, {"1": 0.9}, 7, "0", 0.25)))
    assert with_spread["variance"] == 0.25
    assert "variance" not in json.loads(prediction_message(Prediction("a", 1, None, 7, "0")))
    engine = _learned("kalman")
    result = engine.process([Sample(row, None) for row in _probe().tolist()])
    spreads = [p.variance for p in result.predictions]
    expected = engine.predictor().predict(_probe(), variance=True).variance
    assert spreads == expected


def test_a_kalman_checkpoint_from_before_the_variance_buffers_loads() -> None:
    original = _learned("kalman").expert
    assert isinstance(original, HeadExpert)
    state = original.state_dict()
    old = {k: v for k, v in state["module"].items() if k not in ("head_covariance", "head_noise")}
    restored = _learned("kalman", seed=4).expert  # learned other data: nothing left over
    assert isinstance(restored, HeadExpert)
    with capture_logs() as logs:
        restored.load_state_dict(roundtrip({**state, "module": old}))
    assert [line["event"] for line in logs] == ["kalman_checkpoint_without_covariance"]
    x = _probe()
    assert torch.equal(restored.predict(x), original.predict(x))
    assert torch.equal(restored.variance(x), original.variance(x))  # P from the solver state


def _without_covariance(state: Any) -> Any:
    """``state`` as written before the variance buffers: every module state without them."""
    if isinstance(state, dict):
        dropped = ("head_covariance", "head_noise")
        return {k: _without_covariance(v) for k, v in state.items() if k not in dropped}
    if isinstance(state, list):
        return [_without_covariance(v) for v in state]
    return state


def _covariances(state: Any) -> int:
    if isinstance(state, dict):
        return ("head_covariance" in state) + sum(_covariances(v) for v in state.values())
    if isinstance(state, list):
        return sum(_covariances(v) for v in state)
    return 0


def test_an_old_kalman_checkpoint_with_adaptation_loads_and_resets_to_its_anchor() -> None:
    original = _learned("kalman", adapt="cotta")
    state = original.state_dict()
    assert _covariances(state) == 3  # the expert's module, its adaptation anchor, the student
    old = _without_covariance(state)
    assert _covariances(old) == 0
    restored = _engine("kalman", adapt="cotta")
    with capture_logs() as logs:
        restored.load_state_dict(roundtrip(old))  # the student loads strictly
    # filled where a module loaded: the expert's and CoTTA's student
    assert [line["event"] for line in logs] == ["kalman_checkpoint_without_covariance"] * 2
    x = _probe()
    expert, source = restored.expert, original.expert
    assert isinstance(expert, HeadExpert) and isinstance(expert.solver, KalmanHead)
    assert isinstance(source, HeadExpert) and isinstance(source.solver, KalmanHead)
    assert torch.equal(expert.predict(x), source.predict(x))
    assert torch.equal(expert.variance(x), source.variance(x))
    assert restored.adapter is not None
    anchored = restored.adapter.experts["0"]
    assert anchored.anchor is not None and "head_covariance" not in anchored.anchor
    # What a guard's reset (a collapse, a new domain) does: back to the anchor, strictly.
    restored.adapter._reset(anchored, expert.module)
    assert expert.solver.P is expert.module.head_covariance  # the filter's, kept
    torch.testing.assert_close(expert.module.head_covariance, source.solver.P)
