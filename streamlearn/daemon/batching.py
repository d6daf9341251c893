"""Adaptive micro-batching: the learning step grows only when the backlog would outlast the budget.

A learner that keeps up learns exactly as configured: ``engine.max_batch`` samples per step
at the configured step size. A learner behind (a restart after an outage, a burst) learns
faster per sample in larger batches, because a step's fixed cost (Python, the selector, the
optimizer) is paid once per batch. So the batch doubles while the backlog would take longer
than ``engine.lag_budget_s`` to clear at the rate measured at the current size, up to
``engine.max_adaptive_batch``, and halves back once it would clear within a quarter of the
budget (hysteresis: a backlog near the budget does not flip the size every step).

The step size follows the square-root rule: ``lr * sqrt(batch / max_batch)``. For Adam-like
optimizers the gradient noise of a batch b falls as 1/b, and keeping the optimizer's
stochastic dynamics alike across batch sizes calls for scaling the step with sqrt(b)
(Malladi et al., "On the SDEs and Scaling Rules for Adaptive Gradient Algorithms", 2022);
linear scaling overshoots for Adam at these sizes. For SGD the same rule is the conservative
choice (linear scaling is only safe with warm-up).
"""

from __future__ import annotations

import math

# The rate is a moving average over steps: weight of the newest. 0.2 follows a change of
# batch size within about ten steps while one slow step (a GC pause) moves it little.
_RATE_SMOOTHING = 0.2
# Steps to learn at a size before the next change: the rate measured at the new size must
# have replaced the old one before it is trusted again.
_SETTLE_STEPS = 10
# Shrink back once the backlog clears within this fraction of the budget.
_SHRINK_AT = 0.25


class AdaptiveBatch:
    """The size of the next learning step's batch and the step-size factor that goes with it.

    ``observe`` after each step with the samples it learned and the seconds it took;
    ``resize`` with the samples waiting (buffered plus the consumer's lag).
    """

    def __init__(self, base: int, ceiling: int, budget_s: float) -> None:
        self.base = base
        self.ceiling = max(base, ceiling)
        self.budget_s = budget_s
        self.size = base
        self.rate: float | None = None  # samples/s learned at about the current size
        self._steps_at_size = 0

    @property
    def step_scale(self) -> float:
        """The factor on the configured learning rate at the current size (1.0 at base)."""
        return math.sqrt(self.size / self.base)

    @property
    def enabled(self) -> bool:
        return self.ceiling > self.base and self.budget_s > 0

    def observe(self, samples: int, seconds: float) -> None:
        if samples <= 0 or seconds <= 0:
            return
        rate = samples / seconds
        self.rate = rate if self.rate is None else self.rate + _RATE_SMOOTHING * (rate - self.rate)
        self._steps_at_size += 1

    def resize(self, backlog: int) -> int:
        """The batch size for the next steps, given ``backlog`` samples waiting."""
        if not self.enabled or self.rate is None or self._steps_at_size < _SETTLE_STEPS:
            return self.size
        clear_s = backlog / self.rate
        if clear_s > self.budget_s and self.size < self.ceiling:
            self._set(min(self.ceiling, self.size * 2))
        elif clear_s < self.budget_s * _SHRINK_AT and self.size > self.base:
            self._set(max(self.base, self.size // 2))
        return self.size

    def reset(self) -> int:
        """Back to the base size at once (outputs cannot land: larger steps would only add
        to what waits)."""
        if self.size != self.base:
            self._set(self.base)
        return self.size

    def _set(self, size: int) -> None:
        self.size = size
        self._steps_at_size = 0
