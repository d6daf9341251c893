"""Recursive least squares over a linear head: ridge regression kept exact, batch by batch.

With ``R = (Phi^T Phi + ridge I)^-1`` over every feature row learned so far (a bias column
included) and ``W = R Phi^T Y``, a batch ``X`` with targets ``Y`` updates both in closed
form::

    R <- R - R X^T (I + X R X^T)^-1 X R        W <- W + R X^T (Y - X W)   (R the new one)

so ``W`` equals the joint ridge solve on all data seen, in any batching, with no learning
rate. A class seen for the first time is a target column that was zero until then: its
column of ``W`` starts at zero and a batch mixing old and new classes needs nothing special.
The matching *downdate* (the signs flipped: Woodbury the other way) removes given rows'
contribution exactly: what ``POST /v1/forget`` runs. Float64 throughout: the downdate
subtracts, and float32 loses the 1e-6 agreement after a few thousand rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from streamlearn.core.errors import ModelError

DTYPE = torch.float64


class RlsHead:
    """Exact streaming ridge regression of ``n_outputs`` targets on ``width`` features.

    ``width`` counts the bias column (the caller appends a column of ones).
    """

    def __init__(self, width: int, n_outputs: int, ridge: float) -> None:
        self.ridge = ridge
        self.R = torch.eye(width, dtype=DTYPE) / ridge
        self.W = torch.zeros(width, n_outputs, dtype=DTYPE)
        self.rows = 0  # rows in the solve now: learned less forgotten

    def update(self, x: Tensor, y: Tensor) -> None:
        """Learn rows ``x`` [n, width] with targets ``y`` [n, n_outputs] (float64)."""
        gain = self._gain(x, sign=1.0)
        self.W += gain @ (y - x @ self.W)
        self.rows += x.shape[0]

    def downdate(self, x: Tensor, y: Tensor) -> None:
        """Remove rows learned before, exactly: ``W`` is then the ridge solve without them.

        Rows never learned make the information matrix lose positive definiteness; that is
        refused (ModelError) and the state is left as it was.
        """
        kept = self.R.clone(), self.W.clone()
        try:
            gain = self._gain(x, sign=-1.0)
        except ModelError:
            self.R, self.W = kept
            raise
        self.W -= gain @ (y - x @ self.W)
        self.rows -= x.shape[0]

    def weights(self) -> Tensor:
        """[width, n_outputs]: the head's solve now."""
        return self.W

    def _gain(self, x: Tensor, sign: float) -> Tensor:
        """Rank-n change of ``R`` for rows added (+1) or removed (-1); the gain ``R_new X^T``."""
        rx = self.R @ x.T  # [width, n]
        inner = torch.eye(x.shape[0], dtype=DTYPE) + sign * (x @ rx)
        chol, info = torch.linalg.cholesky_ex(inner)
        if int(info) != 0:
            raise ModelError("rls: these rows were not all learned (the downdate is not definite)")
        # R_new = R - sign * R X^T inner^-1 X R, and R_new X^T = R X^T inner^-1 (both signs).
        solved = torch.cholesky_solve(rx.T, chol)  # inner^-1 X R: [n, width]
        self.R -= sign * (rx @ solved)
        self.R = (self.R + self.R.T) / 2  # rounding must not make it drift off symmetric
        return solved.T

    def state_dict(self) -> dict[str, Any]:
        return {"R": self.R.clone(), "W": self.W.clone(), "rows": self.rows}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.R = state["R"].to("cpu", DTYPE).clone()
        self.W = state["W"].to("cpu", DTYPE).clone()
        self.rows = int(state["rows"])
