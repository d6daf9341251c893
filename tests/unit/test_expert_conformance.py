"""Every expert kind streamlearn builds passes the conformance checks the pool relies on."""

from collections.abc import Mapping
from typing import Any

import pytest
import torch

from streamlearn.core.experts.expert import NeuralExpert, build_expert
from streamlearn.settings import ModelSettings
from streamlearn.testing import check_expert

KINDS = {
    "mlp-classifier": ModelSettings(),
    "mlp-regressor": ModelSettings(task="regression"),
    "linear": ModelSettings(hidden=[]),
    "sgd-momentum": ModelSettings(optimizer="sgd", momentum=0.9, learning_rate=0.01),
    "tanh-weight-decay": ModelSettings(activation="tanh", weight_decay=1e-4),
    "gelu-deep": ModelSettings(hidden=[32, 32, 32], activation="gelu"),
    "factory-module": ModelSettings(factory="tests.support.factories:small_cnn"),
    "rls-head": ModelSettings(head="rls"),
    "rls-head-linear": ModelSettings(head="rls", hidden=[]),
    "rls-head-frozen-body": ModelSettings(head="rls", closed_form={"body_samples": 32}),
    "rls-head-regressor": ModelSettings(head="rls", task="regression"),
    "kalman-head": ModelSettings(head="kalman"),
    "kalman-head-regressor": ModelSettings(head="kalman", task="regression"),
    "prototype-head": ModelSettings(head="prototype", norm="batch"),
    "rls-head-cnn": ModelSettings(
        head="rls", architecture="cnn", hidden=[4, 8], image_shape=[2, 4]
    ),
}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_expert_kind_conforms(name: str) -> None:
    settings = KINDS[name]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, 8, generator=generator)
    y = (
        torch.randint(0, 3, (16,), generator=generator)
        if settings.task == "classification"
        else torch.randn(16, generator=generator)
    )
    check_expert(lambda: build_expert(settings, 8, torch.device("cpu"), seed=3), x, y)


def test_a_broken_expert_is_named_by_the_checks() -> None:
    class Forgetful:  # loses its optimizer state on load
        def __init__(self) -> None:
            inner = build_expert(ModelSettings(), 8, torch.device("cpu"), seed=3)
            assert isinstance(inner, NeuralExpert)
            self.inner = inner
            self.module = inner.module
            self.skipped: str | None = None

        def predict(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner.predict(x)

        def learn(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.inner.learn(x, y)

        def state_dict(self) -> dict[str, Any]:
            return {"module": self.inner.state_dict()["module"]}

        def load_state_dict(self, state: Mapping[str, Any]) -> None:
            self.inner.module.load_state_dict(state["module"])

    x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
    with pytest.raises(AssertionError, match="state: a restored expert"):
        check_expert(Forgetful, x, y)
