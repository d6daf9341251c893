"""What every built-in detector shares: a refractory countdown, a warm-up baseline, batches.

A detector goes through three phases, and again after every drift (or :meth:`rearm`):

1. **refractory**: ``refractory`` values are ignored. Right after a drift the loss is the
   transient of an expert adapting or being swapped in, not the next regime.
2. **warm-up**: ``warmup`` values estimate the baseline mean and spread that the test
   standardizes with. Re-estimating after every change is what keeps the loss level of a
   new regime (or a new expert) from raising the next alarm.
3. **monitoring**: the detector's own test, ``_test`` one value at a time or ``_scan`` over
   an array. Monitoring begins **settling**: while each further block of ``warmup`` values
   has a mean significantly below the baseline's, that block becomes the baseline. After a
   drift the expert is still learning when the warm-up ends, so the first baseline is too
   high and too wide; measured in its units a later rise may never reach the threshold.
   The first block that is not lower ends the settling.

``update`` takes one value; ``update_many`` takes a batch and returns only the events in it:
each DRIFT, and each WARNING that follows a non-WARNING. Both paths give the same signals
(the conformance checks hold every detector to that).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from streamlearn.core.protocols import StateDict
from streamlearn.core.types import DriftAlarm, DriftSignal

Floats = npt.NDArray[np.float64]
Signals = npt.NDArray[np.int8]  # DriftSignal values, one per tested value

# Plain ints for array work: enum attribute lookups cost more than the numpy calls around them.
WARNING, DRIFT = int(DriftSignal.WARNING), int(DriftSignal.DRIFT)
_SIGNALS = tuple(DriftSignal)

# A block must sit this many standard errors below the baseline mean to replace it: a stable
# stream does so once in about 700 blocks, and a biased-low baseline costs false alarms.
SETTLE_SE = 3.0

# A spread below this is a constant stream (e.g. a perfect expert's zero losses); standardizing
# by it would turn the first rounding error into an alarm.
MIN_SPREAD = 1e-6


class Welford:
    """Running mean and variance, one value or a whole batch at a time (Chan's merge)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    def add_many(self, xs: Floats) -> None:
        if not len(xs):
            return
        n_b, mean_b = len(xs), float(xs.mean())
        m2_b = float(((xs - mean_b) ** 2).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.n = n

    @property
    def std(self) -> float:
        return max(math.sqrt(self.m2 / self.n), MIN_SPREAD) if self.n > 1 else MIN_SPREAD

    def state_dict(self) -> StateDict:
        return {"n": self.n, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.n, self.mean, self.m2 = int(state["n"]), float(state["mean"]), float(state["m2"])


class BaseDetector:
    """The phase machine; subclasses supply the test (``_test``, optionally ``_scan``)."""

    name: ClassVar[str]

    def __init__(self, warmup: int, refractory: int, warning_fraction: float) -> None:
        self.warmup = warmup
        self.refractory = refractory
        self.warning_fraction = warning_fraction
        self.baseline = Welford()
        # The baseline as the tests use it, fixed once the warm-up is complete.
        self.mu = 0.0
        self.inv_sd = 1.0
        self.settling: Welford | None = None  # the block that may replace the baseline
        self._cooldown = refractory
        self._last = DriftSignal.NONE
        self.n_drifts = 0

    # -- the protocol ----------------------------------------------------------------------

    def update(self, value: float) -> DriftSignal:
        if self._cooldown:
            self._cooldown -= 1
            signal = DriftSignal.NONE
        elif self.baseline.n < self.warmup:
            self._warm(np.array([value], dtype=np.float64))
            signal = DriftSignal.NONE
        else:
            signal = self._test(value)
            if signal is DriftSignal.DRIFT:
                self._drifted()
            else:
                self._settle(np.array([value], dtype=np.float64))
        self._last = signal
        return signal

    def update_many(self, values: Sequence[float] | Floats) -> list[DriftAlarm]:
        xs = np.asarray(values, dtype=np.float64)
        alarms: list[DriftAlarm] = []
        i = 0
        while i < len(xs):
            if self._cooldown:
                skip = min(self._cooldown, len(xs) - i)
                self._cooldown -= skip
                self._last = DriftSignal.NONE
                i += skip
            elif self.baseline.n < self.warmup:
                take = min(self.warmup - self.baseline.n, len(xs) - i)
                self._warm(xs[i : i + take])
                self._last = DriftSignal.NONE
                i += take
            else:
                end = (
                    len(xs)
                    if self.settling is None
                    else min(len(xs), i + self.warmup - self.settling.n)
                )
                block = self.settling
                signals = self._scan(xs[i:end])
                alarms += self._events(signals, offset=i)
                last = _SIGNALS[signals[-1]]
                if last is DriftSignal.DRIFT:
                    self._drifted()
                else:
                    # A test that restarted settling did so at its last value: the new
                    # block begins there, as on the one-value path.
                    first = i if self.settling is block else i + len(signals) - 1
                    self._settle(xs[first : i + len(signals)])
                i += len(signals)
                self._last = last
        return alarms

    def reset(self) -> None:
        """Forget everything, as if just built (refractory and warm-up come first)."""
        self.rearm(cooldown=self.refractory)
        self.n_drifts = 0

    def rearm(self, cooldown: int = 0) -> None:
        """Clear the statistic and re-estimate the baseline, after ``cooldown`` values.

        The engine calls this when the expert behind the losses changes, so the new
        expert's loss level is learned rather than taken for a drift.
        """
        self._cooldown = cooldown
        self.baseline = Welford()
        self.settling = None
        self._last = DriftSignal.NONE
        self._clear()

    @property
    def statistic(self) -> float:
        """How close the test is to an alarm: 0 calm, 1 at the drift threshold."""
        if self._cooldown or self.baseline.n < self.warmup:
            return 0.0
        return self._level()

    def state_dict(self) -> StateDict:
        return {
            "name": self.name,
            "cooldown": self._cooldown,
            "last": int(self._last),
            "n_drifts": self.n_drifts,
            "baseline": self.baseline.state_dict(),
            "settling": self.settling.state_dict() if self.settling else None,
            "test": self._test_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state["name"] != self.name:
            raise ValueError(f"detector state is for {state['name']!r}, not {self.name!r}")
        self._cooldown = int(state["cooldown"])
        self._last = DriftSignal(int(state["last"]))
        self.n_drifts = int(state["n_drifts"])
        self.baseline.load_state_dict(state["baseline"])
        self.settling = None
        if state["settling"] is not None:
            self.settling = Welford()
            self.settling.load_state_dict(state["settling"])
        self._set_scale()
        self._load_test_state(state["test"])

    # -- for subclasses --------------------------------------------------------------------

    def _warm(self, xs: Floats) -> None:
        self.baseline.add_many(xs)
        if self.baseline.n >= self.warmup:
            self._set_scale()
            self.settling = Welford()

    def _resettle(self) -> None:
        """The loss fell well below the baseline: collect a block that may replace it."""
        if self.settling is None:  # one already being collected will do
            self.settling = Welford()

    def _settle(self, xs: Floats) -> None:
        """Feed the settling block; adopt it if it is clearly lower, else stop settling."""
        if self.settling is None or self.baseline.n < self.warmup:
            return  # settled, or the test itself re-armed the baseline
        self.settling.add_many(xs)
        if self.settling.n < self.warmup:
            return
        block, base = self.settling, self.baseline
        if block.mean < base.mean - SETTLE_SE * base.std / math.sqrt(self.warmup):
            self.baseline, self.settling = block, Welford()
            self._clear()
            self._set_scale()
        else:
            self.settling = None

    def _set_scale(self) -> None:
        self.mu, self.inv_sd = self.baseline.mean, 1.0 / self.baseline.std

    def _test(self, value: float) -> DriftSignal:
        raise NotImplementedError

    def _scan(self, xs: Floats) -> Signals:
        """Test values in order up to the first DRIFT (included), or up to a point after
        which the baseline must be warmed up again; the signals of those tested."""
        signals: list[int] = []
        for value in xs.tolist():
            signal = self._test(value)
            signals.append(int(signal))
            if signal is DriftSignal.DRIFT or self.baseline.n < self.warmup:
                break
        return np.array(signals, dtype=np.int8)

    def _level(self) -> float:
        raise NotImplementedError

    def _clear(self) -> None:
        raise NotImplementedError

    def _test_state(self) -> StateDict:
        raise NotImplementedError

    def _load_test_state(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError

    # -- internals -------------------------------------------------------------------------

    def _drifted(self) -> None:
        self.n_drifts += 1
        self.rearm(cooldown=self.refractory)

    def _events(self, signals: Signals, offset: int) -> list[DriftAlarm]:
        if not signals.any():
            return []  # the common case, by far
        warning = signals == WARNING
        before = np.concatenate(([self._last is DriftSignal.WARNING], warning[:-1]))
        at = np.flatnonzero((signals == DRIFT) | (warning & ~before))
        return [DriftAlarm(offset + int(j), _SIGNALS[signals[j]]) for j in at]


def events_of(signals: Sequence[DriftSignal]) -> list[DriftAlarm]:
    """The events ``update_many`` reports for a sequence of ``update`` signals."""
    out: list[DriftAlarm] = []
    previous = DriftSignal.NONE
    for i, signal in enumerate(signals):
        if signal is DriftSignal.DRIFT or (
            signal is DriftSignal.WARNING and previous is not DriftSignal.WARNING
        ):
            out.append(DriftAlarm(i, signal))
        previous = signal
    return out
