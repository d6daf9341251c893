"""The closed-form expert: a network body learned by gradient, a head solved in closed form.

``model.head`` rls, kalman or prototype builds a :class:`HeadedNetwork`: the configured
network with its last linear layer replaced by buffers the head's solver writes. One
``learn`` step, test-then-train as always:

1. the body computes the batch's features; the head's outputs give the per-sample losses
   (before anything learns, as for the SGD head);
2. while the body learns (``model.closed_form.body_samples``; null: always) it takes one
   optimizer step on the head's squared error against the targets (one-hot for classes),
   plus, for classes, ``closed_form.body_cross_entropy`` times the cross-entropy of the
   head's scores as logits; the head's weights held fixed: the body learns features the
   linear head can use;
3. the solver takes the features (float64, a bias column appended) and the targets and
   updates in closed form (no learning rate); its solve is copied into the module.

A solver's statistics hold the features as they were when learned: while the body learns,
old rows' features drift from the body's current ones. Freezing the body (body_samples: N)
ends that, and makes :meth:`HeadExpert.forget` exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

from streamlearn.core.errors import ModelError
from streamlearn.core.experts.guard import StepGuard
from streamlearn.core.experts.hyper import configured_groups, load_keeping_configured
from streamlearn.core.logging import get_logger
from streamlearn.core.models import evaluating, predict_with, training
from streamlearn.core.models.heads import (
    HeadedNetwork,
    KalmanHead,
    PrototypeHead,
    RlsHead,
    with_bias,
)
from streamlearn.core.models.settings import ModelSettings
from streamlearn.core.protocols import Expert, StateDict, StepScaling, WarmStarted

Solver = RlsHead | KalmanHead | PrototypeHead
log = get_logger(__name__)
FEATURES = "features"  # skipped: the body gave non-finite features; the head kept its solve
# skipped: the Kalman filter's innovation matrix was not positive definite (a broken
# covariance); the weights are kept and the covariance restarts from the prior.
COVARIANCE = "covariance"


class HeadExpert:
    """A body learned by gradient and a head learned in closed form (module docstring)."""

    def __init__(
        self,
        module: HeadedNetwork,
        optimizer: torch.optim.Optimizer | None,
        task: Literal["classification", "regression"],
        solver: Solver,
        body_samples: int | None,
        body_cross_entropy: float,
    ) -> None:
        self.module: HeadedNetwork = module  # the Expert protocol's: what serving runs
        self.optimizer = optimizer  # None: the body has no parameters
        self.task = task
        self.solver = solver
        self.body_samples = body_samples
        self.body_cross_entropy = body_cross_entropy
        self.n_seen = 0  # classes seen: outputs [0, n_seen) are scored
        self.samples = 0  # labeled samples learned
        # The optimizer steps the body only: the guard watches (and restores) that, not the
        # head's buffers, which the solver rewrites every step (and whose float64 covariance
        # would cost a norm of width^2 values per step).
        self.guard = StepGuard(module.body, optimizer) if optimizer is not None else None
        self.skipped: str | None = None
        self._base_lrs = [float(g["lr"]) for g in optimizer.param_groups] if optimizer else []
        self._step_factor = 1.0
        self._configured = configured_groups(optimizer) if optimizer else []  # hyper.py
        self._publish()

    @property
    def forgetting(self) -> float | None:
        """The Kalman head's forgetting gamma per sample; None for the other heads."""
        return self.solver.forgetting if isinstance(self.solver, KalmanHead) else None

    def predict(self, x: Tensor) -> Tensor:
        return predict_with(self.module, x, self.task)

    def variance(self, x: Tensor) -> Tensor:
        """Each row's predictive variance (the Kalman head's; ModelError for the others)."""
        with evaluating(self.module):
            return self.module.variance(x)

    def learn(self, x: Tensor, y: Tensor) -> Tensor:
        body_learns = self.guard is not None and (
            self.body_samples is None or self.samples < self.body_samples
        )
        features = self._features(x, body_learns)
        scores = self.module.scores(features)
        targets = self._targets(y)
        losses = self._losses(self.module.outputs(scores), y)
        self.skipped = None
        if body_learns:
            assert self.guard is not None
            self.skipped = self.guard.step(self._body_loss(scores, targets, y))
        rows = with_bias(features.detach())
        if bool(torch.isfinite(rows).all()):
            if not self._update(rows, targets.to(rows)):
                self.skipped = self.skipped or COVARIANCE
        else:
            self.skipped = self.skipped or FEATURES
        self._publish()
        self.samples += x.shape[0]
        return losses.detach()

    def _publish(self) -> None:
        """The solve into the module (what serving runs), with the covariance if it has one."""
        self.module.set_head(self.solver.weights())
        solver = self.solver
        module = self.module
        if isinstance(solver, KalmanHead) and module.has_variance:
            if covariance_shareable(solver, module):
                self._share_covariance(solver, module)
            else:
                module.set_covariance(solver.P, solver.noise)

    @staticmethod
    def _share_covariance(solver: KalmanHead, module: HeadedNetwork) -> None:
        """The filter updates P in place: sharing the module's buffer publishes each step's
        covariance without a width^2 copy; only a load (a new P) needs one."""
        if solver.P is not module.head_covariance:
            module.set_covariance(solver.P, solver.noise)
            solver.P = module.head_covariance

    def after_warm_start(self) -> None:
        """A spawn copied another expert into this one (WarmStarted): the Kalman head keeps
        the copied weights but restarts its covariance and forgetting, else a filter that
        has grown sure over thousands of samples learns the new regime as slowly as gamma
        lets it (docs/benchmarks.md, "Closed-form heads")."""
        if isinstance(self.solver, KalmanHead):
            self.solver.restart()

    def forget(self, x: Tensor, y: Tensor) -> int:
        """Remove these labeled samples from the head's solve exactly (RLS only): the weights
        are then those of a head that never learned them, on the body's current features
        (exact when the body was frozen since they were learned). The body is not unlearned.
        """
        if not isinstance(self.solver, RlsHead):
            raise ModelError("forget: only the rls head can unlearn samples exactly")
        with torch.no_grad():
            features = self._features(x, body_learns=False)
            targets = self._targets(y, learning=False)
        rows = with_bias(features)
        self.solver.downdate(rows, targets.to(rows))
        self.module.set_head(self.solver.weights())
        return x.shape[0]

    def scale_step(self, factor: float) -> None:
        """Learn the body at ``factor`` times the configured step size (adaptive batches)."""
        self._step_factor = factor
        if self.optimizer is not None:
            for group, base in zip(self.optimizer.param_groups, self._base_lrs, strict=True):
                group["lr"] = base * factor

    def state_dict(self) -> StateDict:
        return {
            "module": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else {},
            "solver": self.solver.state_dict(),
            "n_seen": self.n_seen,
            "samples": self.samples,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.module.load_state_dict(state["module"])  # fills a pre-variance state's buffers
        if self.optimizer is not None:
            load_keeping_configured(self.optimizer, state["optimizer"], self._configured)
        self.scale_step(self._step_factor)
        self.solver.load_state_dict(state["solver"])
        self._publish()
        self.n_seen = int(state["n_seen"])
        self.samples = int(state["samples"])
        if self.guard is not None:
            self.guard.reset()

    def _features(self, x: Tensor, body_learns: bool) -> Tensor:
        if body_learns:
            with training(self.module, x.shape[0]):
                out: Tensor = self.module.body(x)
            return out
        with evaluating(self.module):
            out = self.module.body(x)
        return out

    def _targets(self, y: Tensor, learning: bool = True) -> Tensor:
        """One-hot rows for classes (the seen count grows while learning), else [n, 1]."""
        if self.task == "regression":
            return y.reshape(-1, 1).float()
        if learning and y.numel():
            self.n_seen = max(self.n_seen, int(y.max()) + 1)
        width = self.module.n_outputs
        return nn.functional.one_hot(y, width).float()

    def _body_loss(self, scores: Tensor, targets: Tensor, y: Tensor) -> Tensor:
        """Each row's squared error over the seen columns, mean over rows; for classes plus
        the weighted cross-entropy of the raw scores as logits (the module docstring). Not
        the link's outputs the losses are read from: the rls and kalman link floors scores
        at 0.01 before the log, and a floored score passes no gradient to the body."""
        columns = max(self.n_seen, 1)
        seen = scores[:, :columns]
        error = (seen - targets[:, :columns]).square().sum(dim=1).mean()
        if self.task == "classification" and self.body_cross_entropy > 0:
            error = error + self.body_cross_entropy * nn.functional.cross_entropy(seen, y)
        return error

    def _losses(self, out: Tensor, y: Tensor) -> Tensor:
        if self.task == "classification":
            return nn.functional.cross_entropy(out[:, : self.n_seen], y, reduction="none")
        return nn.functional.mse_loss(out.squeeze(-1), y, reduction="none")

    def _update(self, rows: Tensor, targets: Tensor) -> bool:
        """The solver's closed-form step; False where the Kalman filter could not take it."""
        if not isinstance(self.solver, KalmanHead):
            self.solver.update(rows, targets)
            return True
        if self.solver.update(rows, targets, max(self.n_seen, 1)):
            return True
        # Left as it is, the broken covariance fails every later step too: the head would
        # freeze silently. The weights stay; the confidence in them goes back to the prior.
        log.warning("kalman_covariance_restarted", reason="innovation not positive definite")
        self.solver.restart()
        return False


def covariance_shareable(solver: KalmanHead, module: HeadedNetwork) -> bool:
    """Whether the solver can filter in the module's covariance buffer itself. Solvers live
    on the CPU whatever ``model.device`` (``with_bias``); a module on a GPU holds its buffer
    there, so each publish copies P into it instead."""
    return solver.P.device == module.head_covariance.device


def solver_for(settings: ModelSettings, width: int, n_outputs: int) -> Solver:
    """The closed-form solver ``model.head`` names, over ``width`` features and a bias."""
    s = settings.closed_form
    if settings.head == "rls":
        return RlsHead(width + 1, n_outputs, s.ridge)
    if settings.head == "kalman":
        return KalmanHead(
            width + 1,
            n_outputs,
            s.ridge,
            s.noise,
            s.forgetting,
            (s.forgetting_min, s.forgetting_max),
            s.forgetting_rate,
        )
    return PrototypeHead(width + 1, n_outputs)


if TYPE_CHECKING:  # mypy holds HeadExpert to Expert (see streamlearn.core.protocols)

    def _conforms(expert: HeadExpert) -> Expert:
        return expert

    def _scales(expert: HeadExpert) -> StepScaling:
        return expert

    def _restarts(expert: HeadExpert) -> WarmStarted:
        return expert
