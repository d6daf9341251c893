"""One forward path: route rows to experts, run each expert's network, decode the outputs.

The learner (``Engine``) predicts with its live experts and the selector it trains; a
serving process predicts with frozen copies it loaded from a snapshot. Both go through a
:class:`Predictor`, so what is served is computed exactly as the learner computes its own
prequential answers and the predictions it publishes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from streamlearn.core.experts.selector import rows_by_expert
from streamlearn.core.preprocess import RunningStandardizer
from streamlearn.core.types import Label

#: An expert's forward pass: a scaled float32 batch in, raw outputs out ([rows, outputs] for
#: classification, [rows] for regression). Must not mutate anything.
Forward = Callable[[Tensor], Tensor]
#: Which expert answers each row of a scaled batch.
Route = Callable[[Tensor], list[str]]


@dataclass(frozen=True, slots=True)
class Output:
    """One batch's answer: class labels (or values) and, for classifiers, probabilities."""

    predictions: list[Label]
    probabilities: Tensor | None  # [rows, classes seen], float32
    experts: list[str]  # the expert that answered each row
    # Predictive variance per row (asked for, and every answering expert's head gives one).
    variance: list[float] | None = None


@dataclass(frozen=True, slots=True)
class Predictor:
    """Everything a prediction needs; safe from any number of threads if its parts are."""

    task: str
    labels: Sequence[Label]  # class index -> label, classes seen so far
    forwards: Mapping[str, Forward]  # expert id -> its forward pass
    route: Route
    device: torch.device
    scaler: RunningStandardizer | None = None
    target_scaler: RunningStandardizer | None = None
    # Expert id -> its predictive variance ([rows]), for experts whose head gives one.
    variances: Mapping[str, Forward] = field(default_factory=dict)

    def predict(self, x: Tensor, variance: bool = False) -> Output:
        """Scale, route and decode a raw float32 batch ``[rows, n_features]``; with
        ``variance``, also each row's predictive variance where the experts give one."""
        with torch.inference_mode():
            if self.scaler is not None:
                x = self.scaler.transform(x)
            x = x.to(self.device)
            experts = self.route(x)
            out = self.decode(self.outputs(x, experts), experts)
            if not variance:
                return out
            return replace(out, variance=self.variance(x, experts))

    def variance(self, x: Tensor, experts: list[str]) -> list[float] | None:
        """Each row's predictive variance from its expert (``x`` scaled), in the target's
        own scale for regression; None unless every answering expert gives one."""
        if not experts or any(e not in self.variances for e in experts):
            return None
        spread = torch.zeros(x.shape[0], dtype=torch.float64)
        for expert, rows in rows_by_expert(experts).items():
            spread[rows] = self.variances[expert](x[rows]).cpu().double()
        if self.task == "regression" and self.target_scaler is not None:
            # y = z * std + mean: a variance in z is std^2 times as large in y
            spread *= float(self.target_scaler.scale()[0]) ** 2
        return spread.tolist()

    def outputs(self, x: Tensor, experts: list[str]) -> Tensor:
        """Each row's raw outputs from its expert, on the CPU (``x`` already scaled)."""
        first = experts[0] if experts else None
        if first is None or all(e == first for e in experts):  # the common case: one pass
            return self.forwards[first or self._any()](x).cpu()
        out: Tensor | None = None
        for expert, rows in rows_by_expert(experts).items():
            part = self.forwards[expert](x[rows]).cpu()
            if out is None:
                out = part.new_zeros((x.shape[0], *part.shape[1:]))
            out[rows] = part
        assert out is not None
        return out

    def decode(self, out: Tensor, experts: list[str]) -> Output:
        """Raw outputs -> labels and probabilities, or values in the target's own scale."""
        if self.task == "regression":
            values = out.reshape(-1, 1)
            if self.target_scaler is not None:
                values = self.target_scaler.inverse(values)
            return Output(values.reshape(-1).tolist(), None, experts)
        n = len(self.labels)
        if n == 0:  # nothing learned yet: no class exists to predict
            return Output([], torch.zeros(out.shape[0], 0), experts)
        probabilities = torch.softmax(out[:, :n], dim=1)
        indices = probabilities.argmax(dim=1).tolist()
        return Output([self.labels[i] for i in indices], probabilities, experts)

    def _any(self) -> str:
        return next(iter(self.forwards))


def fixed_route(expert: str) -> Route:
    """Every row to ``expert``: no selector yet, or one expert only."""
    return lambda x: [expert] * x.shape[0]
