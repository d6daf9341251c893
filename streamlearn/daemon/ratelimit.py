"""A log limiter: a flood of bad records must not become a flood of log lines."""

from __future__ import annotations

import time
from collections.abc import Callable


class LogLimiter:
    """Allows at most ``per_second`` log lines per second and counts the ones it held back."""

    def __init__(self, per_second: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self._clock = clock
        self._window = -1
        self._used = 0
        self._suppressed = 0
        self._reported = -1

    def allow(self) -> bool:
        window = int(self._clock())
        if window != self._window:
            self._window, self._used = window, 0
        if self._used < self.per_second:
            self._used += 1
            return True
        self._suppressed += 1
        return False

    def take_suppressed(self) -> int:
        """Lines held back, reported at most once a second so the report is no flood."""
        if int(self._clock()) == self._reported:
            return 0
        self._reported = int(self._clock())
        count, self._suppressed = self._suppressed, 0
        return count
