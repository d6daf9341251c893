"""Champion vs challenger on the same delayed labels: paired correctness, one-sided test.

Every join scores both answers given to the same sample at the same time: the champion's
(what was served) and the challenger's. Over a block of ``window`` such pairs only the
discordant ones say which is better: ``b`` joins only the challenger got right, ``c`` only
the champion. The accuracy difference is ``d = (b - c) / n``, its variance under pairing
``((b + c) / n - d**2) / n`` (the McNemar setting: concordant pairs carry no information).
The challenger is promoted when the one-sided lower confidence bound
``d - z * sqrt(var)`` exceeds ``margin``: better by the margin with that confidence.

The test is taken once per full block, then the block starts over (fixed, non-overlapping
looks: checking after every join would test the same data hundreds of times and promote
on noise far more often than ``1 - confidence``). Pure decisions; the daemon moves states.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any


@dataclass(frozen=True, slots=True)
class PairedBlock:
    """One block's figures, for the event, the log and ``/v1/models``."""

    pairs: int
    champion: float  # accuracy of the champion's answers
    challenger: float
    only_challenger: int  # b: discordant pairs the challenger got right
    only_champion: int  # c
    lower_bound: float  # one-sided lower bound of challenger - champion accuracy


def difference_lower_bound(b: int, c: int, n: int, z: float) -> float:
    """One-sided lower bound of the paired accuracy difference (challenger - champion)."""
    if n == 0:
        return -1.0
    d = (b - c) / n
    variance = max((b + c) / n - d * d, 0.0) / n
    return d - z * math.sqrt(variance)


class ChallengerJudge:
    """Counts paired correctness; at each full block says whether to promote."""

    def __init__(self, window: int, margin: float, confidence: float) -> None:
        self.window = window
        self.margin = margin
        self.z = NormalDist().inv_cdf(confidence)
        self._reset()
        self.last: PairedBlock | None = None  # the latest full block judged

    def _reset(self) -> None:
        self.n = self.champion_right = self.challenger_right = 0
        self.only_challenger = self.only_champion = 0

    def add(self, champion: bool, challenger: bool) -> PairedBlock | None:
        """Score one pair; a block to promote on, once one is full and clears the bound."""
        self.n += 1
        self.champion_right += champion
        self.challenger_right += challenger
        self.only_challenger += challenger and not champion
        self.only_champion += champion and not challenger
        if self.n < self.window:
            return None
        block = self.block()
        self.last = block
        self._reset()
        return block if block.lower_bound > self.margin else None

    def block(self) -> PairedBlock:
        """The block so far."""
        n = max(self.n, 1)
        return PairedBlock(
            self.n,
            self.champion_right / n,
            self.challenger_right / n,
            self.only_challenger,
            self.only_champion,
            difference_lower_bound(self.only_challenger, self.only_champion, self.n, self.z),
        )

    def restart(self) -> None:
        """After a promotion both hold the same state: the next block starts from zero."""
        self._reset()

    def state_dict(self) -> dict[str, Any]:
        counts = (self.n, self.champion_right, self.challenger_right)
        return {"counts": [*counts, self.only_challenger, self.only_champion]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        (
            self.n,
            self.champion_right,
            self.challenger_right,
            self.only_challenger,
            self.only_champion,
        ) = (int(v) for v in state["counts"])
