import io
import random
from typing import Any

import pytest
import torch

from streamlearn.core.engine import Engine
from streamlearn.core.experts.expert import NeuralExpert
from streamlearn.core.types import Sample
from streamlearn.settings import DriftSettings, EngineSettings, ModelSettings


def separable(n: int, seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x = [rng.gauss(5, 10) for _ in range(4)]
        out.append(Sample(x, "high" if x[0] + x[1] > 10 else "low"))
    return out


def run(engine: Engine, samples: list[Sample], batch: int = 32) -> None:
    for start in range(0, len(samples), batch):
        engine.process(samples[start : start + batch])


def test_learns_a_separable_stream_prequentially() -> None:
    engine = Engine(
        ModelSettings(hidden=[16], seed=1, learning_rate=0.01), EngineSettings(rolling_window=500)
    )
    run(engine, separable(6_000))
    assert engine.stats.rolling("correct") > 0.95
    assert engine.stats.cumulative("correct") < engine.stats.rolling("correct")
    assert engine.samples_learned == 6_000
    assert engine.version == 6_000 // 32 + 1


def test_each_sample_is_scored_before_it_is_learned() -> None:
    engine = Engine(ModelSettings(hidden=[], n_features=1, standardize=False))
    # One class ever seen: the first prediction cannot be wrong, even before any step.
    first = engine.process([Sample([1.0], "only")])
    assert (first.labeled, first.correct) == (1, 1)
    # A new class is scored before the model has seen it, so it must count as wrong.
    second = engine.process([Sample([1.0], "new")])
    assert (second.labeled, second.correct) == (1, 0)


def test_labels_grow_up_to_max_classes_then_are_rejected() -> None:
    engine = Engine(ModelSettings(hidden=[], n_features=1, max_classes=2, rare_class_samples=0))
    result = engine.process([Sample([0.0], "a"), Sample([1.0], "b"), Sample([2.0], "c")])
    assert engine.labels.labels == ["a", "b"]
    assert [(r.index, r.reason) for r in result.rejections] == [(2, "too_many_classes")]
    assert result.labeled == 2


def test_wrong_feature_count_after_inference_is_rejected() -> None:
    engine = Engine(ModelSettings(hidden=[4]))
    result = engine.process([Sample([1.0, 2.0], 0), Sample([1.0], 1)])
    assert engine.n_features == 2
    assert [(r.index, r.reason) for r in result.rejections] == [(1, "feature_count")]


def test_unlabeled_samples_get_label_and_probabilities_with_the_model_version() -> None:
    engine = Engine(ModelSettings(hidden=[8]))
    run(engine, separable(640))
    result = engine.process([Sample([50.0, 50.0, 0.0, 0.0], id="q1")])
    [pred] = result.predictions
    assert pred.id == "q1" and pred.prediction == "high"
    assert pred.probabilities is not None
    assert set(pred.probabilities) == {"high", "low"}
    assert sum(pred.probabilities.values()) == pytest.approx(1.0)
    assert pred.model_version == engine.version


def test_predicting_before_any_label_says_nothing() -> None:
    engine = Engine(ModelSettings(hidden=[4]))
    [pred] = engine.process([Sample([1.0, 2.0])]).predictions
    assert pred.prediction is None and pred.probabilities is None


def test_regression_learns_an_unscaled_linear_target() -> None:
    rng = random.Random(3)
    engine = Engine(
        ModelSettings(task="regression", hidden=[16], learning_rate=0.01),
        EngineSettings(rolling_window=500),
    )
    samples = []
    for _ in range(8_000):
        x = [rng.gauss(0, 1) for _ in range(3)]
        samples.append(Sample(x, 1_000 + 50 * x[0] - 20 * x[1]))
    run(engine, samples)
    assert engine.stats.rolling("abs_error") < 10  # target spread is about 54
    [pred] = engine.process([Sample([0.0, 0.0, 0.0])]).predictions
    assert pred.prediction == pytest.approx(1_000, abs=15)


def roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded: dict[str, Any] = torch.load(buffer, weights_only=True)
    return loaded


def test_state_round_trip_continues_identically() -> None:
    settings = ModelSettings(hidden=[8], seed=5)
    data = separable(2_000, seed=2)
    a = Engine(settings)
    run(a, data[:1_000])
    b = Engine(settings)
    b.load_state_dict(roundtrip(a.state_dict()))
    run(a, data[1_000:])
    run(b, data[1_000:])
    assert a.stats.summary() == b.stats.summary()
    assert isinstance(a.expert, NeuralExpert) and isinstance(b.expert, NeuralExpert)
    for pa, pb in zip(a.expert.module.parameters(), b.expert.module.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_seeded_runs_are_deterministic() -> None:
    results = []
    for _ in range(2):
        engine = Engine(ModelSettings(hidden=[8], seed=11))
        run(engine, separable(500))
        results.append(engine.stats.summary())
    assert results[0] == results[1]


def test_predict_never_mutates_the_expert() -> None:
    engine = Engine(ModelSettings(hidden=[8]))
    run(engine, separable(100))
    assert engine.expert is not None
    before = roundtrip(engine.expert.state_dict())
    engine.expert.predict(torch.randn(5, 4))
    after = engine.expert.state_dict()
    for key, tensor in before["module"].items():
        assert torch.equal(tensor, after["module"][key])


def flipping(n: int = 6_000, flip_at: int = 3_000) -> list[Sample]:
    """y = x0 > 0, then the opposite: every learned rule turns wrong at ``flip_at``."""
    rng = random.Random(0)
    out = []
    for i in range(n):
        x = [rng.gauss(0, 1), rng.gauss(0, 1)]
        label = int(x[0] > 0)
        out.append(Sample(x, 1 - label if i >= flip_at else label))
    return out


def drifts(engine: Engine, samples: list[Sample], batch: int = 32) -> list[int]:
    found = []
    for start in range(0, len(samples), batch):
        result = engine.process(samples[start : start + batch])
        found += [e.sample for e in result.drift_events if e.kind == "drift"]
    return found


def test_a_concept_flip_is_one_drift_a_few_samples_after_it() -> None:
    engine = Engine(ModelSettings(hidden=[8], learning_rate=0.01))
    assert drifts(engine, flipping()) == [3_005]


def test_drift_events_name_the_detector_expert_and_model_version() -> None:
    engine = Engine(ModelSettings(hidden=[8], learning_rate=0.01))
    run(engine, flipping()[:2_990])
    events = engine.process(flipping()[2_990:3_100]).drift_events
    drift = next(e for e in events if e.kind == "drift")
    assert (drift.detector, drift.expert) == ("cusum", "0")
    assert drift.sample == 3_005
    assert drift.model_version == engine.version - 1  # the model that made those losses


def test_the_drift_detector_state_is_checkpointed_with_the_engine() -> None:
    settings = ModelSettings(hidden=[8], learning_rate=0.01)
    data = flipping()
    a = Engine(settings)
    run(a, data[:2_000])
    b = Engine(settings)
    b.load_state_dict(roundtrip(a.state_dict()))
    assert a.drift is not None and b.drift is not None
    assert b.drift.detector("0").state_dict() == a.drift.detector("0").state_dict()
    assert drifts(a, data[2_000:]) == drifts(b, data[2_000:]) == [3_005]


def test_drift_detection_can_be_turned_off() -> None:
    engine = Engine(
        ModelSettings(hidden=[8], learning_rate=0.01), drift=DriftSettings(enabled=False)
    )
    assert drifts(engine, flipping()) == []
    assert engine.state_dict()["drift"] is None


def test_a_checkpoint_without_label_counts_loads_and_its_classes_are_kept() -> None:
    settings = ModelSettings(hidden=[4], n_features=1, max_classes=2)
    a = Engine(settings)
    a.process([Sample([0.0], "a"), Sample([1.0], "b")])
    state = roundtrip(a.state_dict())
    assert state["labels"]["counts"] == [1, 1]
    state["labels"] = {"capacity": 2, "labels": ["a", "b"]}  # as written before counts
    b = Engine(settings)
    b.load_state_dict(state)
    result = b.process([Sample([0.5], "c"), Sample([0.5], "a")])
    assert [(r.index, r.reason) for r in result.rejections] == [(0, "too_many_classes")]
    assert b.labels.labels == ["a", "b"]


def test_a_regression_target_beyond_float32_is_rejected_by_the_engine() -> None:
    engine = Engine(ModelSettings(task="regression", hidden=[4], n_features=1))
    result = engine.process([Sample([0.0], 1.0), Sample([1.0], 1e39), Sample([2.0], 2.0)])
    assert [(r.index, r.reason) for r in result.rejections] == [(1, "non_finite")]
    assert result.labeled == 2


def test_guard_skips_reach_the_step_result() -> None:
    engine = Engine(ModelSettings(hidden=[4], n_features=1, optimizer="sgd", learning_rate=1e30))
    result = engine.process([Sample([0.0], 0), Sample([1.0], 1)])
    assert result.steps_skipped == {"weights": 1}
    assert engine.process([Sample([0.5], 1)]).steps_skipped == {"weights": 1}


def test_bad_rows_finds_nan_and_infinity_and_not_a_sum_that_overflows() -> None:
    from streamlearn.core.experts.guard import bad_rows

    big = torch.tensor([[3e38, 3e38], [1.0, 2.0]])  # finite, though the sum is not
    assert bad_rows(big) == []
    assert bad_rows(torch.tensor([[1.0, float("nan")], [1.0, 2.0], [float("-inf"), 0.0]])) == [0, 2]
    assert bad_rows(torch.tensor([1.0, 2.0]), torch.tensor([0.0, float("inf")])) == [1]
