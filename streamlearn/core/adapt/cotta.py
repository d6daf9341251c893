"""CoTTA-style continual adaptation (Wang et al., 2022), arranged for a serving daemon.

The expert's own network is the *teacher*: it answers every request, so what is served is
always the slow, averaged model. A private *student* copy learns from the teacher's soft
pseudo-labels; where the teacher is unsure (top probability below the confidence threshold)
the pseudo-label is its mean over augmented copies of the row. Both keep their batch-norm
statistics current on the unlabeled batches, each through its own weights. After each
student step the teacher's weights move a little towards the student (exponential moving
average), and a small random share of the student's weights is put back to the anchor: the
last labeled state. That restore is what stops the slow
drift away from anything the labels ever taught.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from streamlearn.core.adapt.base import statistics_mode, update_norm_statistics
from streamlearn.core.protocols import StateDict

if TYPE_CHECKING:
    from streamlearn.core.protocols import AdaptMethod


class CoTTA:
    """Mean-teacher adaptation: a private student learns, the expert's own network follows it.

    The teacher is what serves, so only averaged weights are ever answered with.
    """

    def __init__(
        self,
        *,
        learning_rate: float,
        momentum: float,
        teacher_momentum: float,
        confidence: float,
        augmentations: int,
        restore: float,
        augment: Callable[[Tensor], Tensor],
        generator: torch.Generator,
    ) -> None:
        self.learning_rate = learning_rate
        self.momentum = momentum  # batch-norm statistics, per step
        self.teacher_momentum = teacher_momentum
        self.confidence = confidence
        self.augmentations = augmentations
        self.restore = restore
        self.augment = augment
        self.generator = generator
        self.student: nn.Module | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._anchor: dict[str, Tensor] = {}

    def begin(self, module: nn.Module, anchor: Mapping[str, Tensor]) -> None:
        """The student starts as a copy of the teacher; a new anchor (labeled learning)
        keeps the student's optimizer state, a new method object starts it afresh."""
        if self.student is None:
            self.student = copy.deepcopy(module)
            self._optimizer = torch.optim.Adam(self.student.parameters(), lr=self.learning_rate)
        else:
            self.student.load_state_dict(module.state_dict())
        self._anchor = dict(anchor)

    def step(self, module: nn.Module, x: Tensor, keep: Tensor, n_classes: int) -> int:
        assert self.student is not None and self._optimizer is not None
        if n_classes < 2 or not bool(keep.any()):
            update_norm_statistics(module, x, self.momentum)  # the inputs moved all the same
            update_norm_statistics(self.student, x, self.momentum)
            return 0
        target = self._pseudo_labels(module, x, n_classes)[keep]
        # The whole batch goes through the student, for batch norm's statistics; only the
        # rows the guard lets through teach.
        with statistics_mode(self.student, self.momentum):
            out = self.student(x)[keep, :n_classes]
        loss = -(target * torch.log_softmax(out, dim=1)).sum(dim=1).mean()
        self._optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self._optimizer.step()
        with torch.no_grad():
            self._follow(module)
            self._restore()
        return int(keep.sum())

    def _pseudo_labels(self, teacher: nn.Module, x: Tensor, n_classes: int) -> Tensor:
        """Soft labels from the teacher, its statistics first brought up to date on ``x``."""
        update_norm_statistics(teacher, x, self.momentum)
        was_training = teacher.training
        teacher.eval()
        with torch.no_grad():
            probs = torch.softmax(teacher(x)[:, :n_classes], dim=1)
            unsure = probs.max(dim=1).values < self.confidence
            if bool(unsure.any()):
                rows = x[unsure]
                averaged = sum(
                    torch.softmax(teacher(self.augment(rows))[:, :n_classes], dim=1)
                    for _ in range(self.augmentations)
                )
                probs[unsure] = averaged / self.augmentations
        teacher.train(was_training)
        return probs

    def _follow(self, teacher: nn.Module) -> None:
        """Teacher weights: a moving average of the student's. Each keeps its own batch-norm
        statistics, measured through its own weights."""
        assert self.student is not None
        m = self.teacher_momentum
        for t, s in zip(teacher.parameters(), self.student.parameters(), strict=True):
            t.mul_(m).add_(s, alpha=1 - m)

    def _restore(self) -> None:
        assert self.student is not None
        if self.restore == 0:
            return
        for name, param in self.student.named_parameters():
            source = self._anchor.get(name)
            if source is None:
                continue
            mask = torch.rand(param.shape, generator=self.generator).to(param.device) < self.restore
            param.copy_(torch.where(mask, source.to(param.device), param))

    def state_dict(self) -> StateDict:
        return {
            "student": self.student.state_dict() if self.student is not None else None,
            "optimizer": self._optimizer.state_dict() if self._optimizer is not None else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.student is not None and state.get("student") is not None:
            self.student.load_state_dict(state["student"])
        if self._optimizer is not None and state.get("optimizer") is not None:
            self._optimizer.load_state_dict(state["optimizer"])


if TYPE_CHECKING:  # mypy holds CoTTA to AdaptMethod (see streamlearn.core.protocols)

    def _conforms(method: CoTTA) -> AdaptMethod:
        return method
