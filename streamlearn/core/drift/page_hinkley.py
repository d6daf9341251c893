"""Page-Hinkley: a rise of the values above their own running mean.

On values standardized with the warm-up baseline (and clipped, as in CUSUM)::

    mean_t = running mean of z since the baseline was set
    m_t    = m_{t-1} + z_t - mean_t - delta
    PH_t   = m_t - min_{j<=t} m_j          -> DRIFT when PH_t > threshold

Unlike CUSUM the reference is the running mean, which follows a slowly falling loss by
itself but also takes in part of a change, so it is slower on small shifts. Only rises
alarm (a falling loss is an expert improving). The threshold is calibrated like CUSUM's with
``k = delta``: once the running mean has settled the two recursions are the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from streamlearn.core.drift.base import DRIFT, BaseDetector, Floats, Signals
from streamlearn.core.drift.calibration import cusum_threshold
from streamlearn.core.protocols import StateDict
from streamlearn.core.types import DriftSignal

if TYPE_CHECKING:
    from streamlearn.core.protocols import DriftDetector


class PageHinkley(BaseDetector):
    """Page-Hinkley on standardized, clipped values: a rise above their own running mean."""

    name = "page_hinkley"

    def __init__(
        self,
        delta: float = 0.5,
        arl0: float = 1e6,
        clip: float = 2.5,
        warmup: int = 500,
        refractory: int = 500,
        warning_fraction: float = 0.5,
    ) -> None:
        super().__init__(warmup, refractory, warning_fraction)
        self.delta = delta
        self.clip = clip
        self.threshold = cusum_threshold(delta, arl0, warmup)
        self.count = warmup
        self.total = self.m = self.m_min = 0.0

    def _test(self, value: float) -> DriftSignal:
        z = (value - self.mu) * self.inv_sd
        z = self.clip if z > self.clip else -self.clip if z < -self.clip else z
        self.count += 1
        self.total += z
        self.m += z - self.total / self.count - self.delta
        self.m_min = min(self.m_min, self.m)
        level = self.m - self.m_min
        if level > self.threshold:
            return DriftSignal.DRIFT
        if level > self.warning_fraction * self.threshold:
            return DriftSignal.WARNING
        return DriftSignal.NONE

    def _scan(self, xs: Floats) -> Signals:
        z = np.clip((xs - self.mu) * self.inv_sd, -self.clip, self.clip)
        counts = self.count + np.arange(1, len(z) + 1, dtype=np.float64)
        totals = self.total + np.cumsum(z)
        m = self.m + np.cumsum(z - totals / counts - self.delta)
        m_min = np.minimum(np.minimum.accumulate(m), self.m_min)
        level = m - m_min
        crossed = level > self.threshold
        stop = int(crossed.argmax()) if crossed.any() else len(xs) - 1
        signals: Signals = (level[: stop + 1] > self.warning_fraction * self.threshold).astype(
            np.int8
        )
        if crossed[stop]:
            signals[-1] = DRIFT
        self.count = int(counts[stop])
        self.total, self.m, self.m_min = float(totals[stop]), float(m[stop]), float(m_min[stop])
        return signals

    def _level(self) -> float:
        return float(self.m - self.m_min) / self.threshold

    def _clear(self) -> None:
        # The warm-up values have mean 0 in z units: they seed the running mean, so the
        # first monitored values are not compared with a mean of one.
        self.count = self.warmup
        self.total = 0.0
        self.m = 0.0
        self.m_min = 0.0

    def _test_state(self) -> StateDict:
        return {"count": self.count, "total": self.total, "m": self.m, "m_min": self.m_min}

    def _load_test_state(self, state: Mapping[str, Any]) -> None:
        self.count = int(state["count"])
        self.total, self.m = float(state["total"]), float(state["m"])
        self.m_min = float(state["m_min"])


if TYPE_CHECKING:  # mypy holds PageHinkley to DriftDetector (see streamlearn.core.protocols)

    def _conforms(detector: PageHinkley) -> DriftDetector:
        return detector
