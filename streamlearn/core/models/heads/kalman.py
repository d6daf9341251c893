"""A Kalman filter over a linear head's weights, whose forgetting coefficient is learned.

Each output column ``w`` of the head drifts as ``w_t ~ N(gamma * w_{t-1}, (1 - gamma^2) S0)``,
``S0 = I / ridge`` the prior, and is observed through ``y = phi^T w + noise``, the noise of
variance ``sigma^2``. For classes the targets are one-hot and each column is filtered as a
Gaussian regression: the Gaussian surrogate of the softmax. All columns share one covariance
``P`` (the same rows observe them all), so a step costs what an RLS step costs.

gamma is per sample: a batch of n rows first moves the state n samples on (gamma^n), then
observes them jointly, so the learning does not depend on the batch size. gamma itself
follows the gradient of the batch's one-step predictive log-likelihood,
``log N(Y; X gamma^n W, X P_prior X^T + sigma^2 I)`` over the seen columns, taken in
``u = log(1 - gamma)``: a step then moves the memory ``1 / (1 - gamma)`` by a factor,
whatever its size. On a stable stream the likelihood prefers gamma -> 1 (a narrower
prediction, nothing shrunk); when the residuals outgrow the predicted variance, forgetting
widens it and gamma falls. gamma falling is a drift signal of its own, exported per expert
as ``streamlearn_head_forgetting``. The filter also gives a predictive variance per row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

DTYPE = torch.float64
# The largest move of u = log(1-gamma) in one step: one odd batch cannot throw the memory away.
MAX_STEP = 0.5


class KalmanHead:
    """Filtered linear weights with learned forgetting; ``width`` counts the bias column."""

    def __init__(
        self,
        width: int,
        n_outputs: int,
        ridge: float,
        noise: float,
        forgetting: float,
        forgetting_range: tuple[float, float],
        rate: float,
    ) -> None:
        self.prior = 1.0 / ridge  # S0 = I/lambda: the same prior as RLS's ridge
        self.noise = noise  # sigma^2
        self.rate = rate
        lo, hi = forgetting_range
        self.u_bounds = (math.log(1 - hi), math.log(1 - lo))
        self.u_start = self.u = math.log(1 - forgetting)
        self.P = torch.eye(width, dtype=DTYPE) * self.prior
        self.W = torch.zeros(width, n_outputs, dtype=DTYPE)

    @property
    def forgetting(self) -> float:
        """gamma now, per sample."""
        return 1.0 - math.exp(self.u)

    def update(self, x: Tensor, y: Tensor, columns: int) -> bool:
        """Observe rows ``x`` [n, width] with targets ``y`` [n, n_outputs]; ``columns``:
        the leading target columns that are real (classes seen), those gamma is fitted on.
        False: S was not positive definite and nothing changed; a broken P fails every later
        step the same way, so the caller should ``restart`` it."""
        n = x.shape[0]
        decay = self.forgetting**n  # gamma^n: n samples of drift
        spread = (1 - decay**2) * self.prior  # the prior's share of P_prior
        # Only n x width products and one rank-n change touch P, in place: at 257 features a
        # width x width pass costs about what the whole n x n algebra does.
        p_xt, x_w = self.P @ x.T, x @ self.W  # [width, n], [n, C]
        xpx, xx = x @ p_xt, self.prior * (x @ x.T)
        # S = X P_prior X^T + sigma^2 I, P_prior = decay^2 P + (1 - decay^2) S0: its Cholesky
        # serves both the forgetting's gradient and the filter step.
        chol = self._fit_forgetting(decay, xpx, xx, y[:, :columns], x_w[:, :columns])
        if chol is None:
            return False  # S not positive definite (a broken state): the filter as it was
        px_t = p_xt.T.mul_(decay**2).add_(x, alpha=spread)  # (P_prior X^T)^T: [n, width]
        half = torch.linalg.solve_triangular(chol, px_t, upper=False)  # L^-1 X P_prior
        gain_t = torch.linalg.solve_triangular(chol.T, half, upper=True)  # S^-1 X P_prior
        self.W.mul_(decay).addmm_(gain_t.T, y - decay * x_w)
        # P = P_prior - P_prior X^T S^-1 X P_prior, the subtracted term as half^T half:
        # symmetric by construction, so P stays symmetric without a transposed copy.
        self.P.mul_(decay**2).diagonal().add_(spread)
        self.P.addmm_(half.T, half, alpha=-1.0)
        return True

    def restart(self) -> None:
        """Keep the weights as the prior mean, drop the confidence in them: the covariance
        back to the prior and gamma to where it starts (a jump, where the drift model only
        knows slow change; in place, as ``update``)."""
        self.P.zero_().diagonal().fill_(self.prior)
        self.u = self.u_start

    def variance(self, x: Tensor) -> Tensor:
        """Predictive variance of each row's outputs (one value per row: columns share P)."""
        return ((x @ self.P) * x).sum(dim=1) + self.noise

    def weights(self) -> Tensor:
        return self.W

    def _fit_forgetting(
        self, d: float, xpx: Tensor, xx: Tensor, y: Tensor, x_w: Tensor
    ) -> Tensor | None:
        """One gradient step on u up the batch's predictive log-likelihood (per row and
        column): the prediction is ``d * x_w`` with covariance ``S = d^2 xpx + (1 - d^2) xx
        + sigma^2 I``, ``d = gamma^n``. The gradient in closed form (no autograd: a graph
        would cost more than the filter step), with ``a = S^-1 r``::

            dLL/dd = tr(x_w^T a) + 1/2 tr(a^T S' a) - C/2 tr(S^-1 S'),  S' = 2d (xpx - xx)

        Returns the Cholesky factor of ``S`` (None where it is not positive definite).
        """
        n, columns = y.shape
        eye = torch.eye(n, dtype=DTYPE)
        factored = torch.linalg.cholesky_ex(d**2 * xpx + (1 - d**2) * xx + self.noise * eye)
        chol: Tensor = factored.L
        info: Tensor = factored.info
        if int(info) != 0:
            return None  # a step from a broken covariance teaches nothing
        if columns == 0:
            return chol
        a = torch.cholesky_solve(y - d * x_w, chol)  # S^-1 r: [n, C]
        ds = 2 * d * (xpx - xx)
        s_inv_ds = torch.cholesky_solve(ds, chol)
        grad_d = (x_w * a).sum() + 0.5 * (a * (ds @ a)).sum() - 0.5 * columns * s_inv_ds.trace()
        # d = gamma^n, gamma = 1 - exp(u): dd/du = -n gamma^(n-1) (1 - gamma)
        gamma = self.forgetting
        grad = float(grad_d) * -n * gamma ** (n - 1) * (1 - gamma) / y.numel()
        if math.isfinite(grad):
            step = max(-MAX_STEP, min(MAX_STEP, self.rate * grad))
            self.u = min(max(self.u + step, self.u_bounds[0]), self.u_bounds[1])
        return chol

    def state_dict(self) -> dict[str, Any]:
        return {"P": self.P.clone(), "W": self.W.clone(), "u": self.u}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.P = state["P"].to("cpu", DTYPE).clone()
        self.W = state["W"].to("cpu", DTYPE).clone()
        self.u = float(state["u"])
