"""check_detector passes every built-in detector and a user's, and rejects a twin of CUSUM
that breaks exactly one of its promises, naming that promise."""

from __future__ import annotations

import datetime
import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from streamlearn.core.drift.cusum import Cusum
from streamlearn.core.drift.registry import DETECTORS, build_detector
from streamlearn.core.protocols import StateDict
from streamlearn.core.types import DriftAlarm, DriftSignal
from streamlearn.settings import DriftSettings
from streamlearn.testing import check_detector, drifting_stream
from tests.support.drift import mechanics
from tests.support.plugins import sensitive_cusum

# river's KSWIN runs a Kolmogorov-Smirnov test per value: half a minute even on a short
# stream, so it is marked slow (make test runs it; make test-fast does not).
NAMES = [pytest.param(n, marks=pytest.mark.slow) if n == "kswin" else n for n in DETECTORS]


@pytest.mark.parametrize("name", NAMES)
def test_every_built_in_detector_keeps_its_promises(name: str) -> None:
    settings = mechanics(detector=name, warmup=200, refractory=100)
    stream = drifting_stream(4_000) if name == "kswin" else None
    check_detector(lambda: build_detector(settings), stream)


def test_the_defaults_keep_them_on_the_default_stream() -> None:
    check_detector(lambda: build_detector(DriftSettings()))


def test_a_user_detector_keeps_them() -> None:
    settings = DriftSettings(warmup=500, false_alarms_per_100k=10)
    check_detector(lambda: sensitive_cusum(settings))


# -- twins of CUSUM, each breaking one promise -------------------------------------------


class Twin(Cusum):
    """CUSUM as the tests build it: 200 values of warm-up, 100 of refractory."""

    def __init__(self) -> None:
        super().__init__(warmup=200, refractory=100)


class RawStatistic(Twin):
    @property
    def statistic(self) -> float:
        return self.up  # in standard deviations, not in units of the threshold


class Deaf(Twin):
    def update(self, value: float) -> DriftSignal:
        super().update(value)
        return DriftSignal.NONE


class NoisyStatistic(Twin):
    @property
    def statistic(self) -> float:
        return super().statistic * (1 - 1e-9 * random.random())  # an unseeded wobble


class DropsWarnings(Twin):
    def update_many(self, values: Sequence[float] | npt.NDArray[np.float64]) -> list[DriftAlarm]:
        return [a for a in super().update_many(values) if a.signal is DriftSignal.DRIFT]


class ForgetsItsSums(Twin):
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._clear()


class PicklesADate(Twin):
    def state_dict(self) -> StateDict:
        return {**super().state_dict(), "since": datetime.date(2024, 1, 1)}


class ShallowReset(Twin):
    def reset(self) -> None:
        self.n_drifts = 0


class LazyRearm(Twin):
    def rearm(self, cooldown: int = 0) -> None:
        pass  # the monitor's rearm does nothing; its own, after a drift, still works

    def _drifted(self) -> None:
        self.n_drifts += 1
        super().rearm(cooldown=self.refractory)

    def reset(self) -> None:
        super().rearm(cooldown=self.refractory)
        self.n_drifts = 0


class BiasedBaseline(Twin):
    def _set_scale(self) -> None:
        super()._set_scale()
        self.mu -= 1e-3  # invisible on noisy values, an alarm on a constant stream


TWINS: list[tuple[type[Twin], str]] = [
    (RawStatistic, r"^verdicts: statistic"),
    (Deaf, r"^alarms: no DRIFT"),
    (NoisyStatistic, r"^determinism: statistics of twins differ"),
    (DropsWarnings, r"^batches: update_many reported"),
    (ForgetsItsSums, r"^state: a restored detector reads"),
    (PicklesADate, r"^state: raised UnpicklingError"),
    (ShallowReset, r"^reset: "),
    (LazyRearm, r"^rearm: "),
    (BiasedBaseline, r"^constant: a constant stream raised an alarm"),
]


def test_the_twins_common_ancestor_keeps_every_promise() -> None:
    check_detector(Twin)


@pytest.mark.parametrize("twin, promise", TWINS, ids=[twin.__name__ for twin, _ in TWINS])
def test_a_twin_that_breaks_one_promise_is_rejected_for_it(twin: type[Twin], promise: str) -> None:
    with pytest.raises(AssertionError, match=promise):
        check_detector(twin)
