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

from streamlearn.core.drift.calibration import arl_from_rate
from streamlearn.core.drift.input_shift import InputShiftDetector
from streamlearn.core.drift.monitor import DriftEvent
from streamlearn.core.drift.settings import InputShiftSettings
from streamlearn.core.errors import ModelError
from streamlearn.core.protocols import StateDict

KIND = "input_shift"
ALL_EXPERTS = "*"  # the event's expert: the input stream concerns every expert


class InputWatch:
    """Feeds rows to the shift detector and positions its alarms on the rows seen."""

    def __init__(self, settings: InputShiftSettings, n_features: int) -> None:
        self.settings = settings
        self.detector = InputShiftDetector(
            k=settings.k,
            arl0=arl_from_rate(settings.false_alarms_per_100k),
            clip=settings.clip,
            warmup=settings.warmup,
            refractory=settings.refractory,
        )
        try:
            self.detector.h = self.detector.threshold(n_features)
        except ValueError as error:
            raise ModelError(f"drift.input_shift with {n_features} features: {error}") from error
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
