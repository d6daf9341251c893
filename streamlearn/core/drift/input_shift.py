"""Covariate-shift detection on the input rows themselves: did the inputs move?

The loss detectors need labels; unlabeled traffic can change domain with none arriving.
This detector watches the rows. Per feature j it keeps two two-sided CUSUMs:

- on z_j = (x_j - mean_j) / sd_j, clipped to +-``clip``: the feature's mean moved;
- on u_j = (|z_j| - mean|z_j|) / sd|z_j|, clipped too: its spread moved (noise widens a
  feature, lost contrast narrows it, without either moving the mean much).

That is 4 d one-sided sums for d features; the statistic is the largest. A change that
touches a tenth of the features is caught by those features' own sums, undiluted by the
rest, which an average over all features would not do.

The threshold is the one-sided CUSUM threshold (:mod:`~streamlearn.core.drift.calibration`,
Siegmund with the warm-up penalty) for a run length of 4 d times the one asked for: a false
alarm of any sum is a false alarm, and a union bound over the sums keeps their sum of rates
at the target. Correlated features make the bound conservative, never loose.

Phases, again after every alarm: ``refractory`` rows ignored, then ``warmup`` rows kept to
estimate every feature's mean and spread (and those of |z|, which need the rows once the
mean is known), then the test. After an alarm the warm-up describes the new domain, so the
next switch, a return to an earlier domain included, is one more alarm.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from streamlearn.core.drift.base import MIN_SPREAD
from streamlearn.core.drift.calibration import cusum_threshold
from streamlearn.core.drift.cusum import _lindley
from streamlearn.core.protocols import StateDict

Rows = npt.NDArray[np.float64]
SUMS_PER_FEATURE = 4  # mean up, mean down, spread up, spread down


class InputShiftDetector:
    """Per-feature CUSUMs on standardized inputs and their magnitudes; one alarm for all.

    ``update_many`` takes rows [n, d] and returns the indices of the rows that raised an
    alarm. Any split of the same rows into batches gives the same alarms.
    """

    name = "input_shift"

    def __init__(
        self,
        k: float = 0.5,
        arl0: float = 1e5,
        clip: float = 2.5,
        warmup: int = 256,
        refractory: int = 0,
    ) -> None:
        self.k = k
        self.arl0 = arl0
        self.clip = clip
        self.warmup = warmup
        self.refractory = refractory
        self.h: float | None = None  # solved once the number of features is known
        self.n_alarms = 0
        self.rearm(cooldown=0)

    def threshold(self, n_features: int) -> float:
        """The drift threshold for ``n_features`` features (ValueError if none is possible)."""
        return cusum_threshold(self.k, self.arl0 * SUMS_PER_FEATURE * n_features, self.warmup)

    def rearm(self, cooldown: int) -> None:
        """Forget the reference; ignore ``cooldown`` rows, then warm up again."""
        self._cooldown = cooldown
        self._warm: list[Rows] = []
        self._reference: dict[str, Rows] | None = None
        self._sums: Rows | None = None

    @property
    def statistic(self) -> float:
        """How close the test is to an alarm: 0 calm, 1 at the threshold."""
        if self._sums is None or self.h is None:
            return 0.0
        return float(self._sums.max()) / self.h

    def update_many(self, rows: Rows) -> list[int]:
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"rows must be [n, features], got shape {x.shape}")
        if self.h is None and len(x):
            self.h = self.threshold(x.shape[1])
        alarms: list[int] = []
        i = 0
        while i < len(x):
            if self._cooldown:
                skip = min(self._cooldown, len(x) - i)
                self._cooldown -= skip
                i += skip
            elif self._reference is None:
                i += self._warm_up(x[i:])
            else:
                tested = self._scan(x[i:])
                i += tested
                if self._sums is None:  # the last row tested alarmed
                    alarms.append(i - 1)
        return alarms

    def _warm_up(self, x: Rows) -> int:
        """Keep rows until the warm-up is full, then fix the reference; rows taken."""
        take = min(self.warmup - sum(len(r) for r in self._warm), len(x))
        self._warm.append(x[:take].copy())
        if sum(len(r) for r in self._warm) >= self.warmup:
            self._reference = _reference(np.concatenate(self._warm), self.clip)
            self._warm = []
            self._sums = np.zeros((SUMS_PER_FEATURE * x.shape[1], 1))
        return take

    def _scan(self, x: Rows) -> int:
        """Test rows up to the first alarm (included); how many were tested."""
        assert self._reference is not None and self._sums is not None and self.h is not None
        z, u = _standardized(x, self._reference, self.clip)
        increments = np.concatenate([z - self.k, -z - self.k, u - self.k, -u - self.k], axis=1).T
        sums = _lindley(self._sums, increments)
        level = sums.max(axis=0)
        over = np.flatnonzero(level > self.h)
        if len(over):
            self.n_alarms += 1
            self.rearm(cooldown=self.refractory)
            return int(over[0]) + 1
        self._sums = sums[:, -1:]
        return len(x)

    def state_dict(self) -> StateDict:
        reference = self._reference
        return {
            "name": self.name,
            "cooldown": self._cooldown,
            "n_alarms": self.n_alarms,
            "h": self.h,
            "warm": torch.from_numpy(np.concatenate(self._warm)) if self._warm else None,
            "reference": (
                {k: torch.from_numpy(v.copy()) for k, v in reference.items()} if reference else None
            ),
            "sums": torch.from_numpy(self._sums.copy()) if self._sums is not None else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state["name"] != self.name:
            raise ValueError(f"detector state is for {state['name']!r}, not {self.name!r}")
        self.rearm(cooldown=int(state["cooldown"]))
        self.n_alarms = int(state["n_alarms"])
        self.h = None if state["h"] is None else float(state["h"])
        if state["warm"] is not None:
            self._warm = [state["warm"].double().numpy()]
        if state["reference"] is not None:
            self._reference = {k: v.double().numpy() for k, v in state["reference"].items()}
        if state["sums"] is not None:
            self._sums = state["sums"].double().numpy()


def _reference(x: Rows, clip: float) -> dict[str, Rows]:
    """Each feature's mean and inverse spread, and those of its clipped |z|, from ``x``."""
    mean = x.mean(axis=0)
    inv_sd = 1.0 / np.maximum(x.std(axis=0), MIN_SPREAD)
    magnitude = np.abs(np.clip((x - mean) * inv_sd, -clip, clip))
    return {
        "mean": mean,
        "inv_sd": inv_sd,
        "magnitude_mean": magnitude.mean(axis=0),
        "magnitude_inv_sd": 1.0 / np.maximum(magnitude.std(axis=0), MIN_SPREAD),
    }


def _standardized(x: Rows, reference: Mapping[str, Rows], clip: float) -> tuple[Rows, Rows]:
    """z and the standardized |z| of each value, both clipped to +-``clip``."""
    z = np.clip((x - reference["mean"]) * reference["inv_sd"], -clip, clip)
    u = (np.abs(z) - reference["magnitude_mean"]) * reference["magnitude_inv_sd"]
    return z, np.clip(u, -clip, clip)
