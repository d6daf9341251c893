"""The covariate-shift detector on input rows: calibration, delay, batches, state."""

from __future__ import annotations

import io
import statistics

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from streamlearn.core.drift.input_shift import InputShiftDetector
from streamlearn.core.drift.settings import InputShiftSettings

FEATURES = 64


def stable(rng: np.random.Generator, n: int, d: int = FEATURES) -> np.ndarray:
    return rng.normal(size=(n, d))


def test_false_alarms_on_a_stable_stream_stay_under_the_rate_asked_for() -> None:
    # 10 per 100k asked for, on 200k stable rows: at most 20 expected, and the union bound
    # over the features' sums only errs on the side of fewer.
    detector = InputShiftDetector(arl0=1e4)
    rng = np.random.default_rng(0)
    alarms = sum(len(detector.update_many(stable(rng, 1_000, 16))) for _ in range(200))
    assert alarms <= 20
    # The shipped rate (0.1 per 100k) on the same rows: none.
    detector = InputShiftDetector(arl0=1e6)
    rng = np.random.default_rng(0)
    assert sum(len(detector.update_many(stable(rng, 1_000, 16))) for _ in range(200)) == 0


def shift_delay(seed: int, change: str) -> int:
    """Rows after a change in a tenth of the features until the alarm."""
    rng = np.random.default_rng(seed)
    detector = InputShiftDetector(arl0=1e6)
    assert detector.update_many(stable(rng, 300)) == []
    x = stable(rng, 500)
    columns = rng.choice(FEATURES, FEATURES // 10, replace=False)
    if change == "mean":
        x[:, columns] += 1.0
    else:
        x[:, columns] *= 2.0
    alarms = detector.update_many(x)
    assert alarms, f"seed {seed}: a {change} change went unseen"
    return alarms[0] + 1


def test_a_one_sd_mean_change_in_a_tenth_of_the_features_is_caught_within_64_rows() -> None:
    delays = [shift_delay(seed, "mean") for seed in range(20)]
    assert statistics.median(delays) <= 64
    assert min(delays) >= 5  # no alarm before the change has had a chance to build up


def test_a_change_of_spread_alone_is_caught() -> None:
    delays = [shift_delay(seed, "spread") for seed in range(10)]
    assert statistics.median(delays) <= 128


def test_after_an_alarm_it_learns_the_new_domain_and_alarms_again_on_a_return() -> None:
    rng = np.random.default_rng(3)
    detector = InputShiftDetector(arl0=1e6)
    a, b = stable(rng, 600), stable(rng, 600) + 2.0
    back = stable(rng, 600)
    alarms = detector.update_many(np.concatenate([a, b, back]))
    assert len(alarms) == 2
    assert 600 <= alarms[0] < 600 + 64 and 1_200 <= alarms[1] < 1_200 + 64
    assert detector.n_alarms == 2


def test_any_split_into_batches_gives_the_same_alarms() -> None:
    rng = np.random.default_rng(4)
    x = np.concatenate([stable(rng, 400), stable(rng, 400) + 1.5, stable(rng, 400)])
    whole = InputShiftDetector(arl0=1e6, refractory=10).update_many(x)
    for size in (1, 7, 32, 333):
        detector = InputShiftDetector(arl0=1e6, refractory=10)
        alarms = []
        for start in range(0, len(x), size):
            alarms += [start + i for i in detector.update_many(x[start : start + size])]
        assert alarms == whole, size
    assert len(whole) == 2


@pytest.mark.parametrize("cut", [100, 700])  # in the warm-up; while testing
def test_state_round_trip_through_a_weights_only_load_continues_identically(cut: int) -> None:
    rng = np.random.default_rng(5)
    x = np.concatenate([stable(rng, 900), stable(rng, 600) + 1.0])
    first = InputShiftDetector(arl0=1e6)
    first.update_many(x[:cut])
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    second = InputShiftDetector(arl0=1e6)
    second.load_state_dict(torch.load(buffer, weights_only=True))
    assert second.statistic == first.statistic
    assert second.update_many(x[cut:]) == first.update_many(x[cut:])
    assert second.state_dict().keys() == first.state_dict().keys()
    assert second.n_alarms == first.n_alarms == 1


def test_seeded_runs_are_deterministic_and_statistic_is_zero_while_warming() -> None:
    x = np.concatenate(
        [stable(np.random.default_rng(6), 500), stable(np.random.default_rng(7), 300) + 1]
    )
    runs = []
    for _ in range(2):
        detector = InputShiftDetector(arl0=1e6)
        detector.update_many(x[:100])
        assert detector.statistic == 0.0
        runs.append(detector.update_many(x[100:]))
    assert runs[0] == runs[1] and runs[0]


def test_bad_shapes_and_foreign_state_are_refused() -> None:
    detector = InputShiftDetector()
    with pytest.raises(ValueError, match="rows must be"):
        detector.update_many(np.zeros(5))
    state = detector.state_dict() | {"name": "cusum"}
    with pytest.raises(ValueError, match="not 'input_shift'"):
        detector.load_state_dict(state)


def test_a_warmup_too_short_for_the_rate_is_a_settings_error() -> None:
    with pytest.raises(ValidationError, match="too short"):
        InputShiftSettings(warmup=16, false_alarms_per_100k=1e-6)


def test_wide_inputs_get_a_longer_warmup_instead_of_no_threshold() -> None:
    from streamlearn.core.drift.input_watch import InputWatch

    narrow = InputWatch(InputShiftSettings(), 64)
    assert narrow.detector.warmup == 256
    wide = InputWatch(InputShiftSettings(), 10_000)
    assert wide.detector.warmup == 512 and wide.detector.h is not None
    rows = np.random.default_rng(8).normal(size=(600, 10_000))
    events, alarms = wide.observe(torch.from_numpy(rows), model_version=0)
    assert (events, alarms) == ([], [])
