"""User code for the settings that name it (``drift.detector``, ``adapt.method``,
``model.factory``): ones that work, and ones each missing one member."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from streamlearn.core.adapt.base import update_norm_statistics
from streamlearn.core.drift.cusum import Cusum
from streamlearn.core.drift.registry import DETECTORS
from streamlearn.settings import AdaptSettings, DriftSettings

NOT_CALLABLE = 3


def sensitive_cusum(settings: DriftSettings) -> Cusum:
    """A function, not a class: the built-in CUSUM with a smaller reference ``k``."""
    tuned = settings.cusum.model_copy(update={"k": 0.25})
    built = DETECTORS["cusum"](settings.model_copy(update={"cusum": tuned}))
    assert isinstance(built, Cusum)
    return built


class NoRearm:
    """A detector without ``rearm``: the monitor could not re-arm it for a new expert."""

    def __init__(self, settings: DriftSettings) -> None:
        self.inner = sensitive_cusum(settings)
        self.update = self.inner.update
        self.update_many = self.inner.update_many
        self.reset = self.inner.reset
        self.state_dict = self.inner.state_dict
        self.load_state_dict = self.inner.load_state_dict

    @property
    def statistic(self) -> float:
        return self.inner.statistic


class StatsOnly:
    """Batch norm's statistics follow the unlabeled rows; counts its steps (its state)."""

    def __init__(self, settings: AdaptSettings, generator: torch.Generator) -> None:
        self.momentum = settings.norm_momentum
        self.steps = 0

    def begin(self, module: nn.Module, anchor: Mapping[str, Tensor]) -> None:
        """Nothing to set up."""

    def step(self, module: nn.Module, x: Tensor, keep: Tensor, n_classes: int) -> int:
        update_norm_statistics(module, x, self.momentum)
        self.steps += 1
        return 0

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.steps = int(state["steps"])


class NoStep:
    """An adaptation method without ``step``."""

    def __init__(self, settings: AdaptSettings, generator: torch.Generator) -> None:
        pass

    def begin(self, module: nn.Module, anchor: Mapping[str, Tensor]) -> None:
        """Nothing to set up."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


class Unaccessible:
    """An expert from before ``module`` and ``skipped`` were part of the protocol."""

    def predict(self, x: Tensor) -> Tensor:
        return torch.zeros(x.shape[0])

    def learn(self, x: Tensor, y: Tensor) -> Tensor:
        return torch.zeros(x.shape[0])

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


def unaccessible(n_features: int, n_outputs: int, settings: Any) -> Unaccessible:
    return Unaccessible()
