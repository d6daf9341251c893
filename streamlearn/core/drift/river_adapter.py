"""ADWIN and KSWIN from river, behind the same protocol and phases as the built-in ones.

river's detectors keep their state in objects that cannot be turned into plain data (ADWIN's
window lives in a Rust extension), so state is kept as a replay log: the values fed since
the detector last started. Loading builds a fresh river detector and feeds the log again;
both are deterministic (KSWIN is seeded), so the restored detector is the same one.

The log is bounded by ``replay_limit``. Past it only the newest values are kept, and a
restore rebuilds from those: on a stream stable for that long, the newest values are what
ADWIN's window is made of anyway. river's detectors have no warning level and no statistic
in units of a threshold; ``statistic`` reads 0 until an alarm.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from streamlearn.core.drift.base import BaseDetector
from streamlearn.core.protocols import StateDict
from streamlearn.core.types import DriftSignal

if TYPE_CHECKING:
    from river import drift

    from streamlearn.core.protocols import DriftDetector

# river is imported where a detector is built: `import river.drift` pulls in scikit-learn
# and SciPy (1.2 s of a learner's start) for daemons that use cusum, the default.


class RiverDetector(BaseDetector):
    """A river detector behind the built-in protocol; subclasses build ADWIN or KSWIN.

    Its state is a replay log of the values fed: a restore builds a fresh detector and feeds
    the log again.
    """

    def __init__(
        self, params: Mapping[str, Any], refractory: int = 500, replay_limit: int = 20_000
    ) -> None:
        super().__init__(warmup=0, refractory=refractory, warning_fraction=1.0)
        self.params = dict(params)
        self.replay: deque[float] = deque(maxlen=replay_limit)
        self.river = self._build()

    def _build(self) -> drift.ADWIN | drift.KSWIN:
        raise NotImplementedError

    def _test(self, value: float) -> DriftSignal:
        self.replay.append(value)
        self.river.update(value)  # type: ignore[no-untyped-call]  # river is untyped here
        return DriftSignal.DRIFT if self.river.drift_detected else DriftSignal.NONE

    def _level(self) -> float:
        return 0.0

    def _clear(self) -> None:
        self.replay.clear()
        self.river = self._build()

    def _test_state(self) -> StateDict:
        return {
            "params": dict(self.params),
            "replay": torch.tensor(list(self.replay), dtype=torch.float64),
        }

    def _load_test_state(self, state: Mapping[str, Any]) -> None:
        self._clear()
        for value in state["replay"].tolist():
            self._test(value)


class Adwin(RiverDetector):
    """river's ADWIN: an adaptive window cut where its two halves' means differ."""

    name = "adwin"

    def _build(self) -> drift.ADWIN:
        from river import drift

        return drift.ADWIN(**self.params)  # type: ignore[no-untyped-call]


class Kswin(RiverDetector):
    """river's KSWIN: a Kolmogorov-Smirnov test of the newest values against older ones."""

    name = "kswin"

    def _build(self) -> drift.KSWIN:
        from river import drift

        return drift.KSWIN(**self.params)


if TYPE_CHECKING:  # mypy holds Adwin and Kswin to DriftDetector (see streamlearn.core.protocols)

    def _conforms(adwin: Adwin, kswin: Kswin) -> list[DriftDetector]:
        return [adwin, kswin]
