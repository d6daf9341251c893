"""The per-expert monitor between the engine and the detectors."""

import math

import torch

from streamlearn.core.drift.base import BaseDetector
from streamlearn.core.drift.monitor import DriftMonitor
from streamlearn.core.types import DriftSignal
from tests.support.drift import mechanics


def monitor() -> DriftMonitor:
    return DriftMonitor(mechanics(warmup=200, refractory=50))


def stable(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_non_finite_losses_are_left_out_and_positions_kept() -> None:
    m = monitor()
    m.observe("0", stable(600), 0, 1)
    values = stable(100, seed=1) + 5.0  # a 5-sigma rise ...
    values[:3] = torch.tensor([math.nan, math.inf, -math.inf])  # ... after a diverged step
    (drift,) = [e for e in m.observe("0", values, 600, 2) if e.kind == "drift"]
    assert drift.sample == 610  # on the stream, the three skipped values counted (not 607)
    detector = m.detector("0")
    assert isinstance(detector, BaseDetector)  # the monitor holds the protocol
    assert math.isfinite(detector.statistic)
    assert math.isfinite(detector.mu)


def test_rearm_starts_the_refractory_period_and_a_new_baseline() -> None:
    m = monitor()
    m.observe("0", stable(600), 0, 1)
    m.rearm("0")
    detector = m.detector("0")
    assert isinstance(detector, BaseDetector)  # the monitor holds the protocol
    assert detector.statistic == 0.0 and detector.baseline.n == 0
    shifted = (stable(250, seed=2) + 10.0).tolist()
    assert {detector.update(v) for v in shifted} == {DriftSignal.NONE}  # learned, no alarm
    assert abs(detector.mu - 10.0) < 0.5


def test_each_expert_has_its_own_detector() -> None:
    m = monitor()
    m.observe("a", stable(600), 0, 1)
    assert set(m.statistics()) == {"a"}
    m.observe("b", stable(10), 600, 2)
    assert m.detector("a") is not m.detector("b")
