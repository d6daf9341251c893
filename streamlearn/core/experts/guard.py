"""Keeps a network's learning steps finite: a bad step is skipped or undone, never kept.

One non-finite value anywhere in a step (the loss, a gradient, a weight after the update)
spreads to every weight within a step or two, every answer is NaN from then on, and the
next checkpoint makes it permanent. :class:`StepGuard` checks the three places in order:

- ``loss``: the batch's mean loss is non-finite: no backward pass, no step.
- ``gradient``: the gradients' norm is non-finite: no step. A finite gradient whose square
  overflows float32 counts too: Adam would square it into an infinite second moment, which
  freezes that weight silently for ever.
- ``weights``: the weights (and floating buffers, such as batch norm's running statistics)
  went non-finite in the step: the module and its optimizer go back to the last good copy.

A skipped step still ran the forward pass, which moves batch norm's running statistics:
those are checked then too. Each check is one fused norm over the tensors and a few scalar
reads: 15 us alone, about 30 us in place on the default MLP, whose learning step takes about
1 ms (benchmarks/guard_cost.py). The good copy is taken when the network is built or loaded
and refreshed every ``GOOD_EVERY`` steps that passed, not before each step: a copy costs
0.1-0.2 ms, several checks' worth, and a restore (something absurd, such as a learning rate
of 1e30) losing at most that many steps is a fair price for it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

# Steps between refreshes of the last good copy.
GOOD_EVERY = 50

LOSS, GRADIENT, WEIGHTS = "loss", "gradient", "weights"


class StepGuard:
    """Takes an optimizer step only if the loss, the gradients and the new weights are finite.

    A bad step is skipped or rolled back to the last good weights, never kept.
    """

    def __init__(self, module: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.module = module
        self.optimizer = optimizer
        self._good: tuple[dict[str, Tensor], dict[str, Any]] = ({}, {})
        self._since_good = 0
        self.reset()

    def step(self, loss: Tensor) -> str | None:
        """Back-propagate ``loss`` and take one optimizer step, guarded; why the step was
        skipped or undone, or None."""
        self.optimizer.zero_grad(set_to_none=True)
        if not self.loss_ok(loss):
            return self._skipped(LOSS)
        loss.backward()  # type: ignore[no-untyped-call]
        if not self.gradients_ok():
            self.optimizer.zero_grad(set_to_none=True)
            return self._skipped(GRADIENT)
        self.optimizer.step()
        return None if self.after_step() else WEIGHTS

    def loss_ok(self, loss: Tensor) -> bool:
        return math.isfinite(loss.item())

    def gradients_ok(self) -> bool:
        return _finite_norms([p.grad for p in self._params if p.grad is not None])

    def after_step(self) -> bool:
        """Whether the weights stayed finite; if not, they are back at the last good copy."""
        if _finite_norms(self._weights):
            self._since_good += 1
            if self._since_good >= GOOD_EVERY:
                self._keep()
            return True
        self.restore()
        return False

    def restore(self) -> None:
        module_state, optimizer_state = self._good
        self.module.load_state_dict(module_state)
        # The optimizer adopts the tensors it is given and updates them in place: a copy.
        self.optimizer.load_state_dict(_clone(optimizer_state))
        self.optimizer.zero_grad(set_to_none=True)

    def reset(self) -> None:
        """The weights as they are now (new, or just loaded) are the good copy."""
        self._watch()
        self._keep()

    def _skipped(self, reason: str) -> str:
        """A skipped step still ran the forward pass, which moves batch norm's running
        statistics: those must be finite too."""
        if not _finite_norms(self._weights):
            self.restore()
        return reason

    def _watch(self) -> None:
        # Walking the module for its tensors costs as much as checking them: once, here.
        # Loading a state dict copies into these same tensors.
        self._params = list(self.module.parameters())
        self._weights = [p.detach() for p in self._params]
        self._weights += [b for b in self.module.buffers() if b.is_floating_point()]

    def _keep(self) -> None:
        module_state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        self._good = (module_state, _clone(self.optimizer.state_dict()))
        self._since_good = 0


def bad_rows(*tensors: Tensor) -> list[int]:
    """Rows (along the first dimension, shared by all) holding a NaN or an infinity."""
    # A sum is finite unless an element is NaN or infinite (or the sum overflows: then look
    # closer); one reduction and a scalar read cost a fifth of an isfinite mask.
    if math.isfinite(sum(float(t.sum()) for t in tensors)):
        return []
    ok = torch.ones(tensors[0].shape[0], dtype=torch.bool)
    for t in tensors:
        ok &= torch.isfinite(t).reshape(t.shape[0], -1).all(dim=1).cpu()
    return [r for r, good in enumerate(ok.tolist()) if not good]


def finite_or(values: Tensor, fallback: Tensor) -> Tensor:
    """``values`` with each NaN or infinity replaced by ``fallback``'s value."""
    if not bad_rows(values):
        return values
    return torch.where(torch.isfinite(values), values, fallback)


def _clone(state: Any) -> Any:
    """A copy of a state dict's tensors and containers (deepcopy is ten times slower)."""
    if isinstance(state, Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return {k: _clone(v) for k, v in state.items()}
    if isinstance(state, list):
        return [_clone(v) for v in state]
    return state  # numbers, strings, tuples of numbers: immutable


def _finite_norms(tensors: list[Tensor]) -> bool:
    """Whether every tensor's 2-norm is finite: exactly when no element is NaN or infinite,
    or so large (above ~1.8e19) that its square overflows float32."""
    if not tensors:
        return True
    norms = torch._foreach_norm(tensors)
    if norms[0].is_cuda:  # one host sync, not one per tensor
        return math.isfinite(torch.stack(norms).sum().item())
    # On the CPU a few scalar reads cost less than stacking them (2 us against 7).
    return math.isfinite(sum(norm.item() for norm in norms))
