"""TAME's loss-deviation test: a new task shows as a significant rise of the recent loss.

Each value is first clipped to the reference mean +- ``clip`` reference standard deviations
(heavy-tailed losses would otherwise make window means skewed and alarms frequent). The
mean of the last ``window`` values is compared with the expert's own loss distribution
(an exponentially weighted mean and variance with a memory of about ``memory`` values, fed
by the values as they leave the window, so the test window never judges itself)::

    z = (mean(window) - reference mean) / (reference std / sqrt(window))

DRIFT when z passes a level solved from the false-alarm target with Rice's formula for a
sliding mean (:func:`~streamlearn.core.drift.calibration.window_z_threshold`); WARNING at
``warning_fraction`` of it. Only rises count: a falling loss is the expert learning. The
warm-up baseline seeds the reference.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from streamlearn.core.drift.base import MIN_SPREAD, BaseDetector
from streamlearn.core.drift.calibration import window_z_threshold
from streamlearn.core.protocols import StateDict
from streamlearn.core.types import DriftSignal

if TYPE_CHECKING:
    from streamlearn.core.protocols import DriftDetector


class LossDeviation(BaseDetector):
    """TAME's test: the recent window's mean loss significantly above the reference."""

    name = "loss_deviation"

    def __init__(
        self,
        window: int = 50,
        memory: int = 5_000,
        arl0: float = 1e6,
        clip: float = 2.5,
        warmup: int = 500,
        refractory: int = 500,
        warning_fraction: float = 0.5,
    ) -> None:
        super().__init__(warmup, refractory, warning_fraction)
        self.window = window
        self.alpha = 1.0 / memory
        self.clip = clip
        self.threshold = window_z_threshold(window, arl0)
        self.recent: deque[float] = deque()
        self.recent_sum = 0.0
        self.ref_mean = 0.0
        self.ref_var = 0.0
        self.z = 0.0

    def _set_scale(self) -> None:
        super()._set_scale()
        self.ref_mean, self.ref_var = self.baseline.mean, self.baseline.std**2

    def _test(self, value: float) -> DriftSignal:
        spread = self.clip * max(math.sqrt(self.ref_var), MIN_SPREAD)
        value = min(max(value, self.ref_mean - spread), self.ref_mean + spread)
        self.recent.append(value)
        self.recent_sum += value
        if len(self.recent) > self.window:
            self._into_reference(self.recent.popleft())
        if len(self.recent) < self.window:
            return DriftSignal.NONE
        spread = max(math.sqrt(self.ref_var), MIN_SPREAD) / math.sqrt(self.window)
        self.z = (self.recent_sum / self.window - self.ref_mean) / spread
        if self.z > self.threshold:
            return DriftSignal.DRIFT
        if self.z > self.warning_fraction * self.threshold:
            return DriftSignal.WARNING
        return DriftSignal.NONE

    def _into_reference(self, old: float) -> None:
        self.recent_sum -= old
        delta = old - self.ref_mean
        self.ref_mean += self.alpha * delta
        self.ref_var = (1 - self.alpha) * (self.ref_var + self.alpha * delta * delta)

    def _level(self) -> float:
        return max(self.z, 0.0) / self.threshold

    def _clear(self) -> None:
        self.recent = deque()
        self.recent_sum = 0.0
        self.ref_mean = 0.0
        self.ref_var = 0.0
        self.z = 0.0

    def _test_state(self) -> StateDict:
        return {
            "recent": list(self.recent),
            "recent_sum": self.recent_sum,
            "ref_mean": self.ref_mean,
            "ref_var": self.ref_var,
            "z": self.z,
        }

    def _load_test_state(self, state: Mapping[str, Any]) -> None:
        self.recent = deque(float(v) for v in state["recent"])
        self.recent_sum = float(state["recent_sum"])
        self.ref_mean, self.ref_var = float(state["ref_mean"]), float(state["ref_var"])
        self.z = float(state["z"])


if TYPE_CHECKING:  # mypy holds LossDeviation to DriftDetector (see streamlearn.core.protocols)

    def _conforms(detector: LossDeviation) -> DriftDetector:
        return detector
