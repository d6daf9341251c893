"""What the engine takes from a batch: the right width, finite values, labels it can learn.

The codec refuses the same things for records; this is the engine's own line, for samples
that reach it another way (``POST /v1/learn`` crosses from serving as plain values) and for
what only the model knows: its width once the first sample fixed it, and its labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from streamlearn.core.experts.guard import bad_rows
from streamlearn.core.fastdecode import FLOAT32_MAX
from streamlearn.core.preprocess import LabelError, LabelIndex, show
from streamlearn.core.types import Label, Sample

# A labeled sample whose class has no output slot yet, refused while a replica of a group
# waits for the group's round to agree on slots (docs/scaling.md, "Class slots"): the
# replica holds it and learns it at that round; never a dead letter.
LABEL_PENDING = "label_pending"
# What admission does with a label that has no slot: give it one (one learner), refuse it
# as pending (a replica between rounds), or refuse it for good (a replica learning its
# held samples after the round: a label the group could give no slot).
UnknownLabels = Literal["add", "defer", "refuse"]


@dataclass(slots=True)
class Rejection:
    """A sample the engine refused, by its position in the batch, with why."""

    index: int  # position in the batch given to ``Engine.process``
    reason: str
    detail: str


@dataclass(slots=True)
class Admitted:
    """The usable samples' indices, their targets (class index, number, or None for
    unlabeled) and their inputs as float32 rows."""

    kept: list[int] = field(default_factory=list)
    targets: dict[int, float | int | None] = field(default_factory=dict)
    x: Tensor = field(default_factory=lambda: torch.empty(0))


def infer_width(samples: Sequence[Sample], max_features: int) -> int | None:
    """The width to build at: the first sample's within ``max_features``, if any."""
    return next((len(s.x) for s in samples if 0 < len(s.x) <= max_features), None)


class Admission:
    """Sorts a batch into the rows the model can take and the rejections.

    Encodes labels only for admitted rows, so a refused row never takes a class slot.
    """

    def __init__(self, labels: LabelIndex, is_classifier: bool, max_features: int) -> None:
        self.labels = labels
        self.is_classifier = is_classifier
        self.max_features = max_features
        self.unknown_labels: UnknownLabels = "add"

    def admit(
        self, samples: Sequence[Sample], n_features: int | None, rejections: list[Rejection]
    ) -> Admitted:
        """Labels are encoded last, so a refused row never takes a class slot."""
        wide = [i for i, s in enumerate(samples) if len(s.x) == n_features]
        if len(wide) < len(samples):
            rejections += self._wrong_widths(samples, set(wide), n_features)
        if not wide:
            return Admitted()
        x = torch.tensor([samples[i].x for i in wide], dtype=torch.float32)
        rows = list(range(len(wide)))
        if bad := bad_rows(x):  # finite in JSON is not always finite in float32
            rows = sorted(set(rows) - set(bad))
            rejections += [
                Rejection(
                    wide[r],
                    "non_finite",
                    "x: a value is beyond float32's range (the model's dtype)",
                )
                for r in bad
            ]
        self.labels.new_batch()
        out = Admitted()
        for r in rows:
            i = wide[r]
            try:
                out.targets[i] = self._target(samples[i])
            except LabelError as exc:
                rejections.append(Rejection(i, exc.reason, exc.detail))
                continue
            out.kept.append(i)
        if len(out.kept) < len(wide):
            position = {i: r for r, i in enumerate(wide)}
            x = x[[position[i] for i in out.kept]]
        out.x = x
        return out

    def _wrong_widths(
        self, samples: Sequence[Sample], wide: set[int], n_features: int | None
    ) -> list[Rejection]:
        expected = (
            f"expected {n_features}"
            if n_features is not None
            else f"and none within model.max_features={self.max_features} yet"
        )
        return [
            Rejection(i, "feature_count", f"x: {len(s.x)} features, {expected}")
            for i, s in enumerate(samples)
            if i not in wide
        ]

    def _target(self, sample: Sample) -> float | int | None:
        if sample.y is None:
            return None
        if self.is_classifier:
            if self.unknown_labels != "add" and self.labels.find(sample.y) is None:
                self._refuse_unknown(sample.y)
            return self.labels.encode(sample.y)
        target = float(sample.y)
        if not abs(target) <= FLOAT32_MAX:
            raise LabelError("non_finite", f"y: {target:g} is beyond float32's range")
        return target

    def _refuse_unknown(self, label: Label) -> None:
        self.labels.check_kind(label)  # a label of the wrong kind is refused as ever
        if self.unknown_labels == "defer":
            raise LabelError(LABEL_PENDING, f"y: {show(label)} waits for a class slot")
        raise LabelError(
            "too_many_classes",
            f"y: {show(label)} got no class slot at the group's round "
            f"(model.max_classes={self.labels.capacity})",
        )
