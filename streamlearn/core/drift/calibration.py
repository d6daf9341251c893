"""Thresholds from a target false-alarm rate, instead of textbook constants.

The classic CUSUM setting (k=0.5, h=5) has an in-control average run length of about 930
samples on standard normal data: on a stream of per-sample losses that is an alarm every
second or two. Here the user states how many false alarms per 100k stable samples they
accept, and the threshold is solved for.

Two approximations, both validated by ``benchmarks/drift`` on 1M-sample stable streams:

- Siegmund's formula for the average run length of a one-sided CUSUM on N(0, 1) values;
- a penalty for the warm-up: the baseline mean and spread are estimated from ``warmup``
  values, and a reference set a little low makes alarms much more frequent (the run length
  falls exponentially in the error). The penalty is the expected factor over that error.
"""

from __future__ import annotations

import math
from functools import lru_cache

# Siegmund's correction for the overshoot of a normal random walk over the threshold.
_OVERSHOOT = 1.166


def siegmund_arl(h: float, k: float, shift: float = 0.0) -> float:
    """Average run length of a one-sided CUSUM with reference ``k``, threshold ``h``.

    ``shift`` is the mean of the standardized input: 0 in control, 1 for a 1-sigma rise.
    """
    theta = shift - k
    b = h + _OVERSHOOT
    if abs(theta) < 1e-9:
        return b * b
    return (math.exp(-2 * theta * b) + 2 * theta * b - 1) / (2 * theta * theta)


def _log_arl0(h: float, k: float) -> float:
    """log of the in-control :func:`siegmund_arl`, without overflow for large h."""
    x = 2 * k * (h + _OVERSHOOT)
    if x < 50:
        return math.log(siegmund_arl(h, k))
    return x - math.log(2 * k * k)  # exp(x) dwarfs the other terms


def log_warmup_penalty(b: float, k: float, warmup: int) -> float:
    """Log of the expected factor by which a ``warmup`` baseline's error shortens ARL0.

    A mean error e (variance 1/n) shortens the run length by exp(-2 b e); a relative spread
    error r (variance 1/2n) by about exp(-4 k b r). Their lognormal expectations multiply.
    """
    return (2 + 4 * k * k) * b * b / warmup if warmup > 1 else 0.0


# The search costs about 1 ms, and a detector is made for every expert at every sync round
# (the group's state is loaded whole; docs/scaling.md, "Time per round").
@lru_cache(maxsize=256)
def cusum_threshold(k: float, arl0: float, warmup: int) -> float:
    """The smallest h whose penalized in-control run length reaches ``arl0``.

    Raises ValueError when none does: the penalty grows with h squared, so a short warm-up
    caps the run length any threshold can promise.
    """

    def penalized(h: float) -> float:
        return _log_arl0(h, k) - log_warmup_penalty(h + _OVERSHOOT, k, warmup)

    def enough(h: float) -> bool:
        return penalized(h) >= math.log(arl0)

    # The penalized log run length is concave in h: find its peak, then search below it.
    best = max((0.25 * i for i in range(1, 801)), key=penalized)
    if not enough(best):
        raise ValueError(
            f"warmup={warmup} is too short to promise {1e5 / arl0:g} false alarms "
            "per 100k samples: lengthen the warm-up or accept more false alarms"
        )
    low, high = 0.0, best
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high


def window_z_threshold(window: int, arl0: float) -> float:
    """The z level a sliding ``window``-mean test upcrosses once per ``arl0`` samples.

    Rice's formula for the standardized moving average of i.i.d. values (lag-one
    correlation 1 - 1/window): upcrossings of level u happen at a rate of about
    phi(u) / sqrt(pi * window) per sample.
    """
    density = math.sqrt(math.pi * window) / arl0
    return math.sqrt(max(2.0 * math.log(1.0 / (density * math.sqrt(2 * math.pi))), 1.0))


def arl_from_rate(false_alarms_per_100k: float) -> float:
    return 100_000.0 / false_alarms_per_100k
