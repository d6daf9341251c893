"""Live accuracy of what was served: each join scores the answer given back then.

Rolling windows over the last N joins (``labels.windows``), kept as one ring of 0/1 of the
largest window with a running count per window, so a join costs O(windows).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from streamlearn.core.types import Label


def served_right(prediction: Label | None, y: Label) -> bool:
    """Whether the answer served was the label (no answer, before any class: wrong)."""
    return prediction is not None and prediction == y


class ServedAccuracy:
    """Accuracy of served answers over the last ``w`` joins, for each window ``w``."""

    def __init__(self, windows: Sequence[int]) -> None:
        self.windows = sorted(windows)
        self._ring: deque[float] = deque(maxlen=self.windows[-1])
        self._right: dict[int, float] = dict.fromkeys(self.windows, 0.0)
        self.joins = 0

    def add(self, value: float) -> None:
        """One join's score: 1/0 (right/wrong), or a regression answer's error."""
        ring = self._ring
        for w in self.windows:
            if len(ring) >= w:  # the value leaving window w
                self._right[w] -= ring[-w]
            self._right[w] += value
        ring.append(value)
        self.joins += 1

    def accuracy(self, window: int) -> float | None:
        """Over the last ``window`` joins (fewer while fewer came); None before any."""
        seen = min(len(self._ring), window)
        return self._right[window] / seen if seen else None

    def state_dict(self) -> dict[str, Any]:
        return {"ring": list(self._ring), "joins": self.joins}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._ring.clear()
        self._right = dict.fromkeys(self.windows, 0.0)
        saved = [float(v) for v in state["ring"]]
        for value in saved[-self.windows[-1] :]:
            self.add(value)
        self.joins = int(state["joins"])
