"""The engine's watch over its input rows: the shift detector, the row count, the events.

One detector for the whole input stream, not one per expert: a change of domain reaches
every expert at once, and the inputs exist before any expert is chosen for them. Rows are
watched raw, before input standardization, whose statistics move with labeled learning.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from streamlearn.core.drift.calibration import arl_from_rate, cusum_threshold
from streamlearn.core.drift.input_shift import InputShiftDetector
from streamlearn.core.drift.monitor import DriftEvent
from streamlearn.core.drift.settings import InputShiftSettings
from streamlearn.core.errors import ModelError
from streamlearn.core.logging import get_logger
from streamlearn.core.protocols import StateDict

log = get_logger(__name__)

KIND = "input_shift"
# A warm-up may be lengthened up to this many times the one set, for wide inputs.
MAX_WARMUP_FACTOR = 16
ALL_EXPERTS = "*"  # the event's expert: the input stream concerns every expert


class InputWatch:
    """Feeds rows to the shift detector and positions its alarms on the rows seen."""

    def __init__(self, settings: InputShiftSettings, n_features: int) -> None:
        self.settings = settings
        warmup = _warmup_for(settings, n_features)
        self.detector = InputShiftDetector(
            k=settings.k,
            arl0=arl_from_rate(settings.false_alarms_per_100k),
            clip=settings.clip,
            warmup=warmup,
            refractory=settings.refractory,
        )
        self.detector.h = self.detector.threshold(n_features)
        self.rows_seen = 0  # rows watched so far: the events' position

    def observe(self, x: Tensor, model_version: int) -> tuple[list[DriftEvent], list[int]]:
        """Watch ``x`` (rows in arrival order); the events and the row indices that raised
        them."""
        if not x.shape[0]:
            return [], []
        alarms = self.detector.update_many(x.detach().double().cpu().numpy())
        now = time.time()
        events = [
            DriftEvent(KIND, KIND, ALL_EXPERTS, self.rows_seen + i, model_version, now)
            for i in alarms
        ]
        self.rows_seen += int(x.shape[0])
        return events, alarms

    @property
    def statistic(self) -> float:
        return self.detector.statistic

    def state_dict(self) -> StateDict:
        return {"rows_seen": self.rows_seen, "detector": self.detector.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        h = self.detector.h  # solved for the settings in force, not the checkpoint's
        self.detector.load_state_dict(state["detector"])
        self.detector.h = h
        self.rows_seen = int(state["rows_seen"])


def _warmup_for(settings: InputShiftSettings, n_features: int) -> int:
    """The warm-up set, doubled until a threshold exists for ``n_features`` features.

    Every feature's mean and spread come from the warm-up, and more features need a higher
    threshold for the same false-alarm rate, whose penalty for estimation error grows with
    it: about 900 features at most with 256 rows and 0.1 per 100k; 512 rows cover 10,000.
    """
    warmup = settings.warmup
    arl0 = arl_from_rate(settings.false_alarms_per_100k) * 4 * n_features
    while True:
        try:
            cusum_threshold(settings.k, arl0, warmup)
        except ValueError as error:
            if warmup >= settings.warmup * MAX_WARMUP_FACTOR:
                raise ModelError(
                    f"drift.input_shift with {n_features} features: {error}"
                ) from error
            warmup *= 2
            continue
        if warmup != settings.warmup:
            log.info(
                "input_shift_warmup_lengthened",
                features=n_features,
                warmup=warmup,
                why="the warm-up set cannot promise the false-alarm rate for this many features",
            )
        return warmup
