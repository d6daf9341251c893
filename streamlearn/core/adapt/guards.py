"""The guards around test-time adaptation: what it may learn from, and when to undo it.

Self-training on its own predictions can run away: on a class-sorted stream TENT soon
predicts one class for everything, with total confidence. Four checks watch for that, one
expert at a time, and each puts the expert back to its anchor (the state its last labeled
learning left) when it fires:

- ``entropy``: mean normalized prediction entropy over the last ``window`` rows fell below
  ``min_entropy``. A model that is certain of everything has stopped looking at its input.
- ``marginal``: the normalized entropy of the predicted classes' histogram over the window
  fell below ``min_marginal`` times that of the labels the expert learned (its guard set):
  a few classes are taking everything over. Relative to the labels, so that a stream that
  is 95% one class is not a collapse by itself.
- ``guard_set``: accuracy on a uniform sample of the labeled rows this expert learned fell
  more than ``guard_drop`` below what the anchor scores on the same rows. The rows are kept
  as the expert saw them and normalized with their own batch statistics, so what is checked
  is the weights: adapted statistics are supposed to fit the new inputs, not the labeled
  past (norm adaptation, which changes nothing else, cannot fail it).
- ``periodic``: ``reset_every`` adapted rows since the last reset (off by default).

The window and the counts run from one reset to the next: labeled learning moves the
anchor but does not blind the checks. Before any of that, the entropy filter keeps rows
whose prediction is too uncertain out of the gradient: their pseudo-labels are mostly wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from streamlearn.core.adapt.base import statistics_mode
from streamlearn.core.adapt.settings import GuardSettings
from streamlearn.core.experts.replay import Reservoir
from streamlearn.core.protocols import StateDict


class Guard:
    """Watches one expert's adaptation for collapse and says when to return to the anchor.

    It only decides; the adapter does the reset.
    """

    def __init__(self, settings: GuardSettings, seed: int) -> None:
        self.settings = settings
        self._entropy = torch.zeros(settings.window)
        self._predicted = torch.zeros(settings.window, dtype=torch.long)
        self._filled = 0  # rows in the window since the last reset
        self.adapted = 0  # rows learned from since the last reset
        self.steps = 0  # adaptation steps since the last reset
        self.anchor_accuracy: float | None = None
        self.guard_set = Reservoir(max(settings.guard_set, 1), seed)

    def confident(self, entropy: Tensor) -> Tensor:
        """Rows allowed to teach: normalized entropy at most ``max_entropy``."""
        return entropy <= self.settings.max_entropy

    def clear(self) -> None:
        """After a reset: the window and the counts start over."""
        self._filled = 0
        self.adapted = 0
        self.steps = 0

    def observe(self, entropy: Tensor, predicted: Tensor, n_classes: int) -> str | None:
        """Take in a batch's predictions; the collapse check that fires, if one does."""
        self._push(entropy.detach().cpu(), predicted.detach().cpu())
        if self._filled < self.settings.window or n_classes < 2:
            return None
        if float(self._entropy.mean()) < self.settings.min_entropy:
            return "entropy"
        bound = self.settings.min_marginal * self._label_entropy(n_classes)
        if _normalized_entropy(torch.bincount(self._predicted), n_classes) < bound:
            return "marginal"
        return None

    def label_shares(self, n_classes: int) -> list[float] | None:
        """Each class's share of the labels learned (add-one smoothed); None without any."""
        held = self.guard_set.rows()
        if self.settings.guard_set == 0 or held is None or n_classes < 2:
            return None
        counts = torch.bincount(held[1], minlength=n_classes)[:n_classes].double() + 1
        return (counts / counts.sum()).tolist()

    def _label_entropy(self, n_classes: int) -> float:
        """Normalized entropy of the labels learned (1.0, balanced, without a guard set)."""
        held = self.guard_set.rows()
        if self.settings.guard_set == 0 or held is None:
            return 1.0
        return _normalized_entropy(torch.bincount(held[1]), n_classes)

    def _push(self, entropy: Tensor, predicted: Tensor) -> None:
        window = self.settings.window
        entropy, predicted = entropy[-window:], predicted[-window:]
        n = entropy.shape[0]
        self._entropy = torch.cat([self._entropy[n:], entropy])
        self._predicted = torch.cat([self._predicted[n:], predicted])
        self._filled = min(window, self._filled + n)

    def periodic_due(self) -> bool:
        every = self.settings.reset_every
        return every > 0 and self.adapted >= every

    def remember(self, x: Tensor, y: Tensor) -> None:
        """Labeled rows the expert learned, as it saw them: the guard set samples them."""
        if self.settings.guard_set > 0:
            self.guard_set.add(x.detach().cpu(), y.detach().cpu())

    def accuracy(self, module: nn.Module, n_classes: int) -> float | None:
        held = self.guard_set.rows()
        # Batch statistics need two rows at least.
        if self.settings.guard_set == 0 or held is None or held[0].shape[0] < 2 or n_classes < 2:
            return None
        x, y = held
        device = next(module.parameters()).device
        # Normalized with the guard set's own batch statistics (running ones untouched).
        with statistics_mode(module, momentum=0.0), torch.no_grad():
            out = module(x.to(device))[:, :n_classes].cpu()
        return float((out.argmax(dim=1) == y).float().mean())

    def guard_set_dropped(self, module: nn.Module, n_classes: int) -> bool:
        """Every ``guard_every`` steps: has guard-set accuracy fallen past the bound?"""
        if self.anchor_accuracy is None or self.steps % self.settings.guard_every:
            return False
        now = self.accuracy(module, n_classes)
        return now is not None and now < self.anchor_accuracy - self.settings.guard_drop

    def state_dict(self) -> StateDict:
        return {
            "entropy": self._entropy.clone(),
            "predicted": self._predicted.clone(),
            "filled": self._filled,
            "adapted": self.adapted,
            "steps": self.steps,
            "anchor_accuracy": self.anchor_accuracy,
            "guard_set": self.guard_set.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.adapted, self.steps = int(state["adapted"]), int(state["steps"])
        self.anchor_accuracy = state["anchor_accuracy"]
        self.guard_set.load_state_dict(state["guard_set"], torch.device("cpu"))
        if state["entropy"].shape[0] == self.settings.window:
            self._entropy = state["entropy"].clone()
            self._predicted = state["predicted"].clone()
            self._filled = int(state["filled"])
        # else guards.window changed since the checkpoint: the window fills again


def _normalized_entropy(counts: Tensor, n_classes: int) -> float:
    """Entropy of a class histogram over the entropy of ``n_classes`` equal classes."""
    if n_classes < 2 or int(counts.sum()) == 0:
        return 1.0
    share = counts[counts > 0].double() / counts.sum()
    return float(-(share * share.log()).sum()) / math.log(n_classes)
