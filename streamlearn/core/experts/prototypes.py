"""Class prototypes per expert on the inputs every expert shares: routing without a network.

Each expert keeps the mean of the input rows (as the experts take them, scaled) of every
class it learned: the nearest-class-mean head of ``heads/prototype.py``, kept in every head
mode. They live on the shared inputs rather than on each expert's own penultimate features
because comparing experts on those needs every expert's body forward: the cost these are
meant to save. A row's score for an expert is its best class score ``-1/2 |x - mu_c|^2`` (up
to a term shared by all experts); with a label, the prototype loss is the cross entropy of
those scores (``spanned``: an unseen class costs at most ``LOGIT_SPAN``).

The pool uses them (``experts.prototypes``) as a routing fallback where the selector is
unsure, and to shortlist the experts a decision window runs through their networks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from streamlearn.core.models.heads import PrototypeHead, spanned, with_bias


class InputPrototypes:
    """One expert's class means over ``n_features`` inputs, for ``n_classes`` classes."""

    def __init__(self, n_features: int, n_classes: int) -> None:
        self.head = PrototypeHead(n_features + 1, n_classes)
        self._weights: Tensor | None = None  # the solve, until the next update

    def update(self, x: Tensor, y: Tensor) -> None:
        """Learned rows ``x`` (scaled inputs) with class indices ``y``."""
        onehot = nn.functional.one_hot(y.cpu(), self.head.counts.shape[0]).to(torch.float64)
        self.head.update(with_bias(x), onehot)
        self._weights = None

    def weights(self) -> Tensor:
        """[n_features + 1, n_classes]: the linear scores' weights (a copy is safe to share)."""
        if self._weights is None:
            self._weights = self.head.weights()
        return self._weights

    def losses(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-row cross entropy of the class scores against ``y``."""
        scores = with_bias(x) @ self.weights()
        return nn.functional.cross_entropy(spanned(scores), y.cpu(), reduction="none")

    def state_dict(self) -> dict[str, Any]:
        return self.head.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.head.load_state_dict(state)
        self._weights = None


def nearest(prototypes: Mapping[str, Tensor], x: Tensor) -> list[str]:
    """Per row, the expert (id -> its prototype weights) with the nearest class mean."""
    ids: Sequence[str] = list(prototypes)
    stacked = torch.stack([prototypes[i] for i in ids])  # [experts, features + 1, classes]
    scores = torch.einsum("nf,efc->nec", with_bias(x), stacked).amax(dim=2)
    return [ids[e] for e in scores.argmax(dim=1).tolist()]
