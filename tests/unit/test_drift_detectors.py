"""Each detector on seeded streams, with the exact positions it must signal at."""

from typing import Any

import numpy as np
import pytest

from streamlearn.core.drift.calibration import cusum_threshold, siegmund_arl, window_z_threshold
from streamlearn.core.drift.cusum import Cusum
from streamlearn.core.drift.registry import build_detector
from streamlearn.core.types import DriftSignal
from tests.support.drift import mechanics


def regimes() -> np.ndarray:
    """1500 values each of N(0,1), N(1,1), N(-1,1), N(1,1): a rise, a fall, a rise."""
    rng = np.random.default_rng(42)
    return np.concatenate([rng.normal(mean, 1.0, 1_500) for mean in (0.0, 1.0, -1.0, 1.0)])


def alarms(name: str, values: np.ndarray, **overrides: Any) -> dict[str, list[int]]:
    detector = build_detector(mechanics(detector=name, warmup=200, refractory=100, **overrides))
    found = detector.update_many(values)
    return {
        kind: [a.index for a in found if a.signal is signal]
        for kind, signal in (("drift", DriftSignal.DRIFT), ("warning", DriftSignal.WARNING))
    }


@pytest.mark.parametrize(
    ("name", "drifts"),
    [
        # Rises only: the fall at 3000 re-estimates the baseline (cusum) or is ignored.
        ("cusum", [1542, 4512]),
        ("page_hinkley", [1544, 4532]),
        # Its reference forgets slowly (memory 5000): after the fall it still remembers the
        # higher loss, so the last rise is found late and the reference's decay alarms once more.
        ("loss_deviation", [1541, 4601, 5893]),
        # river's detectors are two-sided by construction: the fall is a drift too.
        ("adwin", [1571, 3015, 4523]),
        # KSWIN compares 30 values: at alpha 1e-4 a 1-sigma shift is below its power.
        ("kswin", [3022, 4521]),
    ],
)
def test_drifts_are_found_exactly_where_expected(name: str, drifts: list[int]) -> None:
    assert alarms(name, regimes())["drift"] == drifts


def test_cusum_warns_before_it_drifts() -> None:
    found = alarms("cusum", regimes())
    assert found["warning"][:2] == [1512, 1517]
    assert found["warning"][0] < found["drift"][0]


def test_cusum_both_directions_alarms_on_the_fall_as_well() -> None:
    assert alarms("cusum", regimes(), cusum={"direction": "both"})["drift"] == [1542, 3015, 4513]


def test_a_falling_loss_rebaselines_so_the_next_rise_is_measured_from_the_new_level() -> None:
    rng = np.random.default_rng(3)
    detector = Cusum(warmup=200, refractory=0)
    detector.update_many(rng.normal(5.0, 1.0, 1_000))  # an expert still learning
    detector.update_many(rng.normal(0.0, 1.0, 1_000))  # ... has learned: no drift
    assert detector.n_drifts == 0
    assert abs(detector.mu) < 0.3  # the baseline followed the loss down
    found = detector.update_many(rng.normal(1.5, 1.0, 500))  # a rise below the old level
    assert [a.signal for a in found][-1] is DriftSignal.DRIFT


def test_a_clipped_outlier_cannot_alarm_alone() -> None:
    detector = Cusum(warmup=200, refractory=0)
    detector.update_many(np.random.default_rng(4).normal(0.0, 1.0, 200))
    assert detector.update(1e9) is DriftSignal.NONE


def test_a_constant_stream_does_not_divide_by_zero() -> None:
    detector = Cusum(warmup=200, refractory=0)
    assert not detector.update_many(np.zeros(10_000))
    assert [a.signal for a in detector.update_many(np.ones(100))][-1] is DriftSignal.DRIFT


def test_siegmund_matches_the_textbook_run_lengths() -> None:
    # Montgomery's table for k=0.5: h=4 gives ARL0 about 336 (Siegmund: 336), h=5 about 930.
    assert siegmund_arl(4.0, 0.5) == pytest.approx(336, rel=0.01)
    assert siegmund_arl(5.0, 0.5) == pytest.approx(930, rel=0.02)
    assert siegmund_arl(5.0, 0.5, shift=1.0) == pytest.approx(10.4, rel=0.02)


def test_thresholds_grow_with_the_run_length_asked_for_and_a_short_warm_up() -> None:
    assert cusum_threshold(0.5, 1e4, 500) < cusum_threshold(0.5, 1e6, 500)
    assert cusum_threshold(0.5, 1e6, 5_000) < cusum_threshold(0.5, 1e6, 200)
    assert window_z_threshold(50, 1e4) < window_z_threshold(50, 1e6)
