"""Detection delay, misses, false alarms and change-point F1, from alarm indices."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Tally:
    """What one detector did over many streams of one scenario."""

    delays: list[int] = field(default_factory=list)
    changes: int = 0
    missed: int = 0
    false_alarms: int = 0
    stable_samples: int = 0  # samples outside any change's detection window

    def add(
        self,
        alarms: Sequence[int],
        changes: Sequence[int],
        accept_from: Sequence[int],
        horizon: int,
        n: int,
    ) -> None:
        detected = 0
        windows = []
        for i, (change, start) in enumerate(zip(changes, accept_from, strict=True)):
            end = min(change + horizon, accept_from[i + 1] if i + 1 < len(changes) else n)
            windows.append((start, end))
            hit = next((a for a in alarms if start <= a < end), None)
            self.changes += 1
            if hit is None:
                self.missed += 1
            else:
                self.delays.append(hit - change)
                detected += 1
        self.false_alarms += len(alarms) - detected
        self.stable_samples += n - sum(end - start for start, end in windows)

    def summary(self) -> dict[str, float | int | None]:
        delays = np.array(self.delays) if self.delays else None
        return {
            "median_delay": float(np.median(delays)) if delays is not None else None,
            "p90_delay": float(np.percentile(delays, 90)) if delays is not None else None,
            "changes": self.changes,
            "missed": self.missed,
            "false_alarms": self.false_alarms,
            "false_alarms_per_100k": (
                round(self.false_alarms / self.stable_samples * 1e5, 3)
                if self.stable_samples
                else None
            ),
        }


def f1_with_margin(
    alarms: Sequence[int], annotations: dict[str, list[int]], margin: int = 5
) -> float:
    """Change-point F1, averaged over annotators: a true change matches one alarm within
    ``margin`` samples (the scoring of the Turing change-point benchmark, without its
    convention of counting the first sample as a change)."""
    scores = []
    for truth in annotations.values():
        if not truth and not alarms:
            scores.append(1.0)
            continue
        used: set[int] = set()
        for change in truth:
            match = next((a for a in alarms if abs(a - change) <= margin and a not in used), None)
            if match is not None:
                used.add(match)
        precision = len(used) / len(alarms) if alarms else 0.0
        recall = len(used) / len(truth) if truth else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return float(np.mean(scores))
