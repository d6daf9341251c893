"""check_expert's promises about the Expert accessors (``module``, ``skipped``): a twin of
the built-in expert that breaks one is rejected for it; test and user experts keep them.
(Built-in experts over every network: tests/unit/test_expert_conformance.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor

from streamlearn.core.adapt.base import update_norm_statistics
from streamlearn.core.experts.expert import NeuralExpert, build_expert
from streamlearn.settings import AdaptSettings, ModelSettings
from streamlearn.testing import check_adapt_method, check_expert
from tests.support.plugins import StatsOnly
from tests.support.seqexpert import SequenceCheckExpert

X, Y = torch.randn(16, 8, generator=torch.Generator().manual_seed(0)), torch.arange(16) % 3


def neural(settings: ModelSettings | None = None) -> NeuralExpert:
    expert = build_expert(settings or ModelSettings(hidden=[8]), 8, torch.device("cpu"), seed=3)
    assert isinstance(expert, NeuralExpert)
    return expert


class Doubling(NeuralExpert):
    """Serves twice what its module says: frozen serving would answer differently."""

    def predict(self, x: Tensor) -> Tensor:
        return super().predict(x) * 2


class NumericSkip(NeuralExpert):
    """Says 0 instead of None when its step went through."""

    def learn(self, x: Tensor, y: Tensor) -> Tensor:
        losses = super().learn(x, y)
        self.skipped = self.skipped or 0  # type: ignore[assignment]
        return losses


@pytest.mark.parametrize(
    "twin, promise",
    [
        (Doubling, r"module: its forward pass is not what predict returns"),
        (NumericSkip, r"skipped: 0 after learn, not None or a reason"),
    ],
)
def test_a_twin_that_breaks_an_accessor_promise_is_rejected(
    twin: type[NeuralExpert], promise: str
) -> None:
    def make() -> NeuralExpert:
        inner = neural()
        return twin(inner.module, inner.optimizer, "classification")

    check_expert(neural, X, Y)  # what they are twins of passes
    with pytest.raises(AssertionError, match=promise):
        check_expert(make, X, Y)


def test_a_regressor_module_is_what_predict_runs_squeezed() -> None:
    settings = ModelSettings(hidden=[8], task="regression")
    check_expert(lambda: neural(settings), X, torch.randn(16))


def test_an_expert_without_a_module_keeps_the_promises(tmp_path: Path) -> None:
    log = str(tmp_path / "seq.log")
    x = torch.tensor([[1.0, float(i + 1)] for i in range(16)])
    check_expert(lambda: SequenceCheckExpert(log), x[:1], torch.zeros(1))
    assert SequenceCheckExpert(log).module is None


def test_a_user_adaptation_method_keeps_the_promises() -> None:
    module = neural(ModelSettings(hidden=[8], norm="batch")).module
    update_norm_statistics(module, X, 0.1)
    settings = AdaptSettings()
    check_adapt_method(
        lambda: StatsOnly(settings, torch.Generator().manual_seed(0)), module, X, n_classes=3
    )
