"""The served-model guard: live accuracy of what was served against its own band.

Each join says whether the answer served was right. The guard keeps a *good level*: the
served accuracy over the ``confirm_joins`` joins after a state was captured, and that
state as the rollback target once those joins scored inside the band (a delayed label shows
damage late, so a state is good only once its answers were). Damage: the recent window's
95% upper Wilson bound falls below the good level minus ``margin``. Then the daemon rolls
served model and learner back to the good state and holds (learns no joined label) until
a full window scores within ``margin`` of the good level again, or ``max_hold_joins`` passed:
then the change is taken as real and learning resumes.

Pure decisions over a stream of right/wrong; the daemon copies and restores the states.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streamlearn.core.labels.settings import GuardSettings

_Z95 = 1.959964


class GuardAction(enum.Enum):
    """What the daemon does after a join."""

    LEARN = "learn"  # learn the joined sample
    CAPTURE = "capture"  # learn it; take the current state as the next candidate
    ROLLBACK = "rollback"  # restore the good state, hold; do not learn this one
    HOLD = "hold"  # do not learn it
    RELEASE = "release"  # the hold ends; learn it


@dataclass(frozen=True, slots=True)
class Verdict:
    """The action and the figures behind it (for the event and the log)."""

    action: GuardAction
    recent: float | None = None  # accuracy of the recent window
    good: float | None = None  # the good level
    upper: float | None = None  # the recent window's upper bound


def wilson_upper(right: int, n: int) -> float:
    """The 95% upper Wilson bound of a proportion ``right / n``."""
    if n == 0:
        return 1.0
    p = right / n
    z2 = _Z95 * _Z95
    centre = p + z2 / (2 * n)
    spread = _Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z2 / n))


class ServedGuard:
    """Decides, join by join, when to capture, roll back, hold and release."""

    def __init__(self, settings: GuardSettings) -> None:
        self.settings = settings
        self.recent: deque[int] = deque(maxlen=settings.window)
        self.holding = False
        self.has_good = False  # a confirmed state exists
        self.has_candidate = False
        self.good_level: float | None = None
        self._since_capture: list[int] = []  # right/wrong since the candidate was taken
        self._held = 0

    def judge(self, right: bool) -> Verdict:
        self.recent.append(int(right))
        if self.holding:
            return self._while_holding()
        if self.has_good and self._damaged():
            return self._rollback()
        self._since_capture.append(int(right))
        if len(self._since_capture) < self.settings.confirm_joins:
            return Verdict(GuardAction.LEARN)
        # The candidate's answers scored for confirm_joins joins without damage: it is good.
        level = sum(self._since_capture) / len(self._since_capture)
        if self.has_candidate:
            self.has_good, self.good_level = True, level
        self.has_candidate = True
        self._since_capture = []
        return Verdict(GuardAction.CAPTURE, self._recent(), self.good_level)

    def restart(self) -> None:
        """Forget the good state, the candidate and any hold: confirmation starts again.
        After ``/v1/forget`` the kept states hold forgotten samples, so none may return."""
        self.recent.clear()
        self.holding, self._held = False, 0
        self.has_good, self.good_level = False, None
        self.has_candidate, self._since_capture = False, []

    def recapture(self) -> None:
        """The state now served is the candidate (a promotion replaced the old one):
        it is confirmed by its own next ``confirm_joins`` answers, never by the old ones."""
        self.has_candidate, self._since_capture = True, []

    def _recent(self) -> float:
        return sum(self.recent) / len(self.recent)

    def _damaged(self) -> bool:
        if len(self.recent) < self.settings.window or self.good_level is None:
            return False
        upper = wilson_upper(sum(self.recent), len(self.recent))
        return upper < self.good_level - self.settings.margin

    def _rollback(self) -> Verdict:
        upper = wilson_upper(sum(self.recent), len(self.recent))
        verdict = Verdict(GuardAction.ROLLBACK, self._recent(), self.good_level, upper)
        self.holding, self._held = True, 0
        self.recent.clear()
        self.has_candidate, self._since_capture = False, []
        return verdict

    def _while_holding(self) -> Verdict:
        self._held += 1
        assert self.good_level is not None
        back = (
            len(self.recent) >= self.settings.window
            and self._recent() >= self.good_level - self.settings.margin
        )
        if back or self._held >= self.settings.max_hold_joins:
            verdict = Verdict(GuardAction.RELEASE, self._recent(), self.good_level)
            self.holding = False
            self.recent.clear()
            if not back:  # the change is real: the old level no longer says what is good
                self.has_good, self.good_level = False, None
            return verdict
        return Verdict(GuardAction.HOLD)

    def state_dict(self) -> dict[str, Any]:
        return {
            "recent": list(self.recent),
            "holding": self.holding,
            "has_good": self.has_good,
            "has_candidate": self.has_candidate,
            "good_level": self.good_level,
            "since_capture": list(self._since_capture),
            "held": self._held,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.recent.clear()
        self.recent.extend(int(v) for v in state["recent"])
        self.holding = bool(state["holding"])
        self.has_good = bool(state["has_good"])
        self.has_candidate = bool(state["has_candidate"])
        level = state["good_level"]
        self.good_level = None if level is None else float(level)
        self._since_capture = [int(v) for v in state["since_capture"]]
        self._held = int(state["held"])
