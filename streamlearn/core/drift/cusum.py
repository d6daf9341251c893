"""Two-sided standardized CUSUM, with its threshold calibrated for a false-alarm rate.

Values are standardized with the warm-up baseline, z = (x - mean) / std, clipped to
``[-clip, clip]`` so one huge loss (a mislabeled sample) cannot cross the threshold alone.
Two sums track a rise and a fall::

    up   = max(0, up   + z - k)
    down = max(0, down - z - k)

``k`` is half the smallest shift (in standard deviations) to catch fast; ``h`` is solved
from the false-alarm target (:mod:`streamlearn.core.drift.calibration`).

With ``direction="up"`` (the default for losses) only a rise is a drift: a falling loss is
the expert getting better. A fall past ``h`` still means the baseline is stale: the lower
sum restarts and the next block of ``warmup`` values may replace the baseline (settling,
see :mod:`~streamlearn.core.drift.base`), while the test keeps watching; otherwise a
long-improving expert would be measured against an old, high loss and rises would go
unseen.

The batch path solves the recursion in closed form, S_t = W_t - min(-S_0, min_j<=t W_j)
with W the cumulative sum of the increments, so a micro-batch costs a few numpy calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from streamlearn.core.drift.base import DRIFT, BaseDetector, Floats, Signals
from streamlearn.core.drift.calibration import cusum_threshold
from streamlearn.core.protocols import StateDict
from streamlearn.core.types import DriftSignal

if TYPE_CHECKING:
    from streamlearn.core.protocols import DriftDetector

Direction = Literal["up", "both"]


class Cusum(BaseDetector):
    """Two-sided CUSUM on standardized, clipped values; the default detector.

    Its threshold is solved for a false-alarm rate, so it is not set by hand.
    """

    name = "cusum"

    def __init__(
        self,
        k: float = 0.5,
        arl0: float = 1e6,
        clip: float = 2.5,
        direction: Direction = "up",
        warmup: int = 500,
        refractory: int = 500,
        warning_fraction: float = 0.5,
    ) -> None:
        super().__init__(warmup, refractory, warning_fraction)
        self.k = k
        self.clip = clip
        self.direction = direction
        self.h = cusum_threshold(k, arl0, warmup)
        self.up = 0.0
        self.down = 0.0

    def _test(self, value: float) -> DriftSignal:
        z = (value - self.mu) * self.inv_sd
        z = self.clip if z > self.clip else -self.clip if z < -self.clip else z
        up = self.up + z - self.k
        down = self.down - z - self.k
        self.up = up = up if up > 0.0 else 0.0
        self.down = down = down if down > 0.0 else 0.0
        if up > self.h or (down > self.h and self.direction == "both"):
            return DriftSignal.DRIFT
        if down > self.h:
            self.down = 0.0
            self._resettle()
        if self._alarm_sum(up, down) > self.warning_fraction * self.h:
            return DriftSignal.WARNING
        return DriftSignal.NONE

    def _scan(self, xs: Floats) -> Signals:
        z = np.clip((xs - self.mu) * self.inv_sd, -self.clip, self.clip)
        increments = np.empty((2, len(z)))
        np.subtract(z, self.k, out=increments[0])
        np.subtract(-self.k, z, out=increments[1])
        sums = _lindley(np.array([[self.up], [self.down]]), increments)
        stop = len(xs)
        if sums.max() > self.h:
            stop = int((sums > self.h).any(axis=0).argmax()) + 1
            sums = sums[:, :stop]
        level = sums.max(axis=0) if self.direction == "both" else sums[0]
        signals: Signals = (level > self.warning_fraction * self.h).astype(np.int8)  # WARNING=1
        self.up, self.down = float(sums[0, -1]), float(sums[1, -1])
        if self.up > self.h or (self.down > self.h and self.direction == "both"):
            signals[-1] = DRIFT
        elif self.down > self.h:
            self.down = 0.0
            self._resettle()
        return signals

    def _alarm_sum(self, up: float, down: float) -> float:
        return max(up, down) if self.direction == "both" else up

    def _level(self) -> float:
        return self._alarm_sum(self.up, self.down) / self.h

    def _clear(self) -> None:
        self.up = 0.0
        self.down = 0.0

    def _test_state(self) -> StateDict:
        return {"up": self.up, "down": self.down}

    def _load_test_state(self, state: Mapping[str, Any]) -> None:
        self.up, self.down = float(state["up"]), float(state["down"])


def _lindley(start: Floats, increments: Floats) -> Floats:
    """max(0, S + w) applied along each row of ``increments`` from ``start``, all at once."""
    walk = np.cumsum(increments, axis=1)
    floor = np.minimum(np.minimum.accumulate(walk, axis=1), -start)
    result: Floats = walk - floor
    return result


if TYPE_CHECKING:  # mypy holds Cusum to DriftDetector (see streamlearn.core.protocols)

    def _conforms(detector: Cusum) -> DriftDetector:
        return detector
