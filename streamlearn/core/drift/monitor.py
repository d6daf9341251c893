"""One detector per expert, fed each learning step's per-sample losses (or 0/1 errors).

The engine calls :meth:`DriftMonitor.observe` after every labeled step with the losses the
step computed before it updated the weights (test-then-train: what the expert knew). The
monitor turns the detector's alarms into :class:`DriftEvent` records positioned on the
engine's sample count; the daemon logs, counts and publishes them. Detector state is part
of the engine's ``state_dict`` and so of every checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from torch import Tensor

from streamlearn.core.drift.registry import detector_factory
from streamlearn.core.drift.settings import DriftSettings
from streamlearn.core.logging import get_logger
from streamlearn.core.protocols import DriftDetector, StateDict
from streamlearn.core.types import DriftSignal

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class DriftEvent:
    """A drift or warning on one expert: the row of the events topic and ``/v1/drift``."""

    kind: str  # "drift" or "warning"
    detector: str
    expert: str
    sample: int  # position in the stream: samples the engine had learned before this one
    model_version: int
    time: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DriftMonitor:
    """One detector per expert, created on first sight, fed the losses from before each step.

    It reports; what a drift means for the pool is decided elsewhere. A user's detector
    (``drift.detector: "package.module:name"``) is loaded and checked when it is made.
    """

    def __init__(self, settings: DriftSettings) -> None:
        self.settings = settings
        self._make = detector_factory(settings)
        self.detectors: dict[str, DriftDetector] = {}

    def detector(self, expert: str) -> DriftDetector:
        if expert not in self.detectors:
            self.detectors[expert] = self._make()
        return self.detectors[expert]

    def observe(
        self, expert: str, values: Tensor, first_sample: int, model_version: int
    ) -> list[DriftEvent]:
        xs = values.detach().double().cpu().numpy()
        positions = np.arange(len(xs))
        finite = np.isfinite(xs)
        if not finite.all():
            # A diverged model's NaN or Inf loss would poison the detector's sums for good;
            # the values are left out and the positions of the rest kept.
            log.warning(
                "drift_values_skipped",
                expert=expert,
                count=int((~finite).sum()),
                reason="non-finite loss",
            )
            xs, positions = xs[finite], positions[finite]
        alarms = self.detector(expert).update_many(xs)
        now = time.time()
        return [
            DriftEvent(
                "drift" if alarm.signal is DriftSignal.DRIFT else "warning",
                self.settings.detector,
                expert,
                first_sample + int(positions[alarm.index]),
                model_version,
                now,
            )
            for alarm in alarms
        ]

    def rearm(self, expert: str) -> None:
        """The expert's losses will change for a known reason: re-estimate its baseline."""
        self.detector(expert).rearm(cooldown=self.settings.refractory)

    def forget(self, expert: str) -> None:
        """The expert is gone from the pool: so is its detector."""
        self.detectors.pop(expert, None)

    def statistics(self) -> dict[str, float]:
        return {expert: d.statistic for expert, d in self.detectors.items()}

    def state_dict(self) -> StateDict:
        return {
            "detector": self.settings.detector,
            "experts": {e: d.state_dict() for e, d in self.detectors.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.detectors = {}
        if state["detector"] != self.settings.detector:
            # Another algorithm's statistics mean nothing to this one: start it fresh.
            log.warning(
                "drift_state_discarded", saved=state["detector"], configured=self.settings.detector
            )
            return
        for expert, detector_state in state["experts"].items():
            self.detector(expert).load_state_dict(detector_state)
