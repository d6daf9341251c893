"""Test-time adaptation: each method helps on a shifted stream, guards undo collapse,
state survives a checkpoint, and labeled learning moves the anchor."""

from typing import Any

import numpy as np
import pytest
import torch

from streamlearn.core.adapt import METHODS
from streamlearn.core.engine import Engine
from streamlearn.core.experts.expert import NeuralExpert
from streamlearn.core.types import Sample
from streamlearn.settings import (
    AdaptSettings,
    DriftSettings,
    EngineSettings,
    ExpertsSettings,
    ModelSettings,
)
from streamlearn.testing import roundtrip
from tests.support.shifted import answer, blobs, learn, miscalibrated

MODEL = ModelSettings(hidden=[32, 32], norm="batch", seed=0, max_classes=4, learning_rate=0.01)


def engine(method: str, model: ModelSettings = MODEL, **adapt: Any) -> Engine:
    return Engine(
        model,
        EngineSettings(),
        # The methods and guards alone: what a detected input shift does is in
        # test_adapt_shift.py (these streams shift at once, and would restart them).
        DriftSettings(enabled=False, input_shift={"enabled": False}),
        ExpertsSettings(enabled=False),
        AdaptSettings(method=method, **adapt),
    )


def trained(method: str, **adapt: Any) -> Engine:
    learner = engine(method, **adapt)
    learn(learner, *blobs(0, 2000))
    return learner


def weights(learner: Engine) -> dict[str, torch.Tensor]:
    expert = learner.expert
    assert isinstance(expert, NeuralExpert)
    return {k: v.clone() for k, v in expert.module.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_source_model_errs_on_the_shift_and_none_leaves_it_alone() -> None:
    learner = trained("none")
    before = weights(learner)
    x, y = blobs(1, 1000)
    assert (answer(learner, x) != y).mean() < 0.02
    assert (answer(learner, miscalibrated(x)) != y).mean() > 0.15
    assert same(before, weights(learner))
    assert learner.adapter is None


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.slow  # every method trained on a shifted stream
def test_each_method_lowers_error_on_a_shifted_stream(method: str) -> None:
    x, y = blobs(1, 1000)
    shifted = miscalibrated(x)
    source = (answer(trained("none"), shifted) != y).mean()
    adapted = (answer(trained(method), shifted) != y).mean()
    assert adapted < 0.5 * source, (method, source, adapted)


def test_auto_is_tent_for_a_classifier_norm_for_a_regressor_and_none_without_batch_norm() -> None:
    assert engine("auto").adapt_method == "none"  # until the network is built
    assert trained("auto").adapt_method == "tent"
    regressor = ModelSettings(task="regression", hidden=[8], norm="batch", n_features=3)
    assert engine("auto", regressor).adapt_method == "norm"
    for model in (ModelSettings(hidden=[8]), ModelSettings(hidden=[8], norm="layer")):
        plain = engine("auto", model.model_copy(update={"n_features": 3}))
        assert plain.adapt_method == "none" and plain.adapter is None
    assert engine("tent", ModelSettings(hidden=[8], norm="layer", n_features=3)).adapter


def test_tent_changes_only_normalization_parameters() -> None:
    learner = trained("tent")
    before = weights(learner)
    answer(learner, miscalibrated(blobs(1, 256)[0]))
    after = weights(learner)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "tent did not adapt"
    # Linear layers are 0, 3, 6 in the Sequential; batch norms are 1 and 4.
    assert all(k.startswith(("1.", "4.")) for k in changed), changed


def test_adaptation_bumps_the_model_version_and_reports_counts() -> None:
    learner = trained("cotta")
    version = learner.version
    result = learner.process([Sample(r, None) for r in miscalibrated(blobs(1, 32)[0]).tolist()])
    assert learner.version == version + 1
    report = result.adapt
    assert report.steps == 1 and report.adapted + report.skipped == 32
    assert report.entropy is not None and 0.0 <= report.entropy <= 1.0
    assert learner.pool is not None and learner.pool.active.adaptations == 1


def test_rows_wait_until_a_batch_is_gathered() -> None:
    learner = trained("norm", batch_size=32)
    rows = miscalibrated(blobs(1, 31)[0]).tolist()
    assert learner.process([Sample(r, None) for r in rows]).adapt.steps == 0
    assert learner.process([Sample(rows[0], None)]).adapt.steps == 1


def test_a_labeled_step_moves_the_anchor_to_the_labeled_state() -> None:
    learner = trained("tent")
    answer(learner, miscalibrated(blobs(1, 128)[0]))
    learn(learner, *blobs(2, 32))
    labeled_state = weights(learner)
    answer(learner, miscalibrated(blobs(3, 32)[0]))  # the step that takes the new anchor
    assert learner.adapter is not None
    anchor = learner.adapter.experts["0"].anchor
    assert anchor is not None and same(anchor, labeled_state)


@pytest.mark.parametrize("method", METHODS)
def test_state_round_trip_continues_identically(method: str) -> None:
    a = trained(method)
    answer(a, miscalibrated(blobs(1, 200)[0]))  # leaves 8 rows waiting
    b = engine(method)
    b.load_state_dict(roundtrip(a.state_dict()))
    rest = miscalibrated(blobs(2, 300)[0])
    assert (answer(a, rest) == answer(b, rest)).all()
    assert same(weights(a), weights(b))


def test_state_of_another_method_is_not_applied() -> None:
    a = trained("tent")
    answer(a, miscalibrated(blobs(1, 64)[0]))
    b = engine("cotta")
    b.load_state_dict(roundtrip(a.state_dict()))
    assert b.adapter is not None and b.adapter.experts == {}
    assert same(weights(a), weights(b))  # the weights themselves are the expert's


def test_regression_adapts_statistics() -> None:
    regressor = ModelSettings(
        task="regression", hidden=[16], norm="batch", seed=0, learning_rate=0.01
    )
    learner = engine("auto", regressor)
    x, y = blobs(0, 500)
    learn(learner, x, y.astype(np.float32))
    before = weights(learner)
    result = learner.process([Sample(r, None) for r in miscalibrated(x[:32]).tolist()])
    assert result.adapt.steps == 1 and result.adapt.entropy is None
    assert not same(before, weights(learner))


def test_served_rows_adapt_without_answers() -> None:
    learner = trained("norm")
    before = weights(learner)
    rows = miscalibrated(blobs(1, 32)[0]).tolist()
    report = learner.adapt([*rows, [1.0, 2.0]])  # a row of the wrong width is left out
    assert report.steps == 1 and report.adapted == 32
    assert learner.samples_predicted == 0  # nothing answered or published
    assert not same(before, weights(learner))
