"""An expert's normal loss band: the loss level it shows on the regime it learned.

While an expert is active its per-sample losses (taken before each step: what it knew)
feed an exponentially weighted mean and variance, so the band follows the expert as it
improves and forgets the first, clumsy samples. After a drift the pool asks each expert
whether its mean loss over the decision window lies inside its band: a window of ``n``
losses from the expert's own regime has a mean within a few standard errors of the band's,
plus a tolerance for the slow changes (input scaling, a little noise) between visits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from streamlearn.core.protocols import StateDict

# A new expert's first losses are its transient (and, on a cold start, those of inputs not
# yet standardized): they are left out of the band, which would otherwise stay wide for long.
SKIP_FIRST = 100
# Losses the band must hold before it means anything: reusing an expert on a thinner
# record would be reusing a guess.
MIN_BAND_SAMPLES = 100
# Once the band exists, losses are clipped to this many standard deviations above its mean:
# one exploding batch must not widen an expert's band for its whole memory.
CLIP_SD = 4.0


class LossBand:
    """The loss level an expert shows on its own regime, as an exponentially weighted mean and
    variance; the pool reuses an expert only when a window falls inside it.
    """

    def __init__(self, memory: int) -> None:
        self.memory = memory
        self.skipped = 0  # transient losses left out so far
        self.n = 0  # losses in the band
        self.mean = 0.0
        self.var = 0.0

    @property
    def ready(self) -> bool:
        return self.n >= MIN_BAND_SAMPLES

    @property
    def std(self) -> float:
        return math.sqrt(self.var)

    def update(self, losses: Tensor) -> None:
        values = losses.detach().double().cpu()
        values = values[values.isfinite()]
        skip = min(SKIP_FIRST - self.skipped, values.numel())
        self.skipped += skip
        values = values[skip:]
        if self.ready:
            values = values.clamp(max=self.mean + CLIP_SD * self.std)
        b = values.numel()
        if b == 0:
            return
        # Plain averaging until ``memory`` losses are in, so the start is not biased to 0.
        weight = b / (self.n + b) if self.n < self.memory else 1 - (1 - 1 / self.memory) ** b
        batch_mean = float(values.mean())
        batch_var = float(values.var(unbiased=False))
        delta = batch_mean - self.mean
        self.mean += weight * delta
        self.var = (1 - weight) * self.var + weight * batch_var + weight * (1 - weight) * delta**2
        self.n += b

    def upper(self, n: int, z: float, tolerance: float) -> float:
        """The highest mean loss over ``n`` samples that still counts as this regime."""
        return self.mean + (z / math.sqrt(max(n, 1)) + tolerance) * self.std

    def bounds(self, n: int, z: float, tolerance: float) -> tuple[float, float]:
        width = (z / math.sqrt(max(n, 1)) + tolerance) * self.std
        return max(0.0, self.mean - width), self.mean + width

    def state_dict(self) -> StateDict:
        return {
            "memory": self.memory,
            "skipped": self.skipped,
            "n": self.n,
            "mean": self.mean,
            "var": self.var,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.memory, self.n = int(state["memory"]), int(state["n"])
        self.skipped = int(state["skipped"])
        self.mean, self.var = float(state["mean"]), float(state["var"])
