"""Class slots agreed by a group of replicas: a new class gets its output slot at a round.

One learner gives a new label the next free slot in the order it sees labels. Two replicas
would then put different classes in one slot between rounds, and the round averages output
rows slot by slot, blending them. So a replica never gives a slot itself
(``engine.unknown_labels = "defer"``): a labeled sample of a class without one is refused as
``label_pending`` and held here with where it came from. At the next round (asked for at
once) every replica gathers every replica's new labels; after the average every replica
holds the same label index, and gives slots to the union in rank order, each replica's
labels in the order it first saw them, so all give the same slots (a full index takes a
rare class's slot alike everywhere: the index's counts are the template's). Each replica
then learns what it held, with unknown labels refused for good (``"refuse"``: a label the
index had no room for), and the round averages again so those updates join the group's
model before anything is served or saved.

Held samples are learned before the round's checkpoint, so a checkpoint never stands past
a sample its model has not taken in; a replica that dies holding some replays them from
the group's last checkpoint, as it replays everything after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

from streamlearn.core.admission import LABEL_PENDING, Rejection
from streamlearn.core.preprocess import LabelError, LabelIndex
from streamlearn.core.types import Label, Sample

Origin = TypeVar("Origin")  # where a held sample came from, as its learner names it


class PendingLabels(Generic[Origin]):
    """Samples whose class waits for a slot, in arrival order, with their origins."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.origins: list[Origin] = []

    def __len__(self) -> int:
        return len(self.samples)

    def hold(
        self, rejections: list[Rejection], chunk: Sequence[Sample], origins: Sequence[Origin]
    ) -> list[Rejection]:
        """Keep the chunk's samples refused as pending; the other rejections."""
        others = []
        for rejection in rejections:
            if rejection.reason == LABEL_PENDING:
                self.samples.append(chunk[rejection.index])
                self.origins.append(origins[rejection.index])
            else:
                others.append(rejection)
        return others

    def new_labels(self) -> list[Label]:
        """The held samples' labels, each once, in the order they first came."""
        return list(dict.fromkeys(s.y for s in self.samples if s.y is not None))

    def take(self) -> tuple[list[Sample], list[Origin]]:
        taken = self.samples, self.origins
        self.samples, self.origins = [], []
        return taken


def agree(labels: LabelIndex, gathered: Sequence[Sequence[Label]]) -> list[Label]:
    """Give slots to every replica's new labels, in rank order (collective in effect: every
    replica must call it on the same index with the same ``gathered``); the labels given
    one. A label the index has no room for gets none, everywhere alike."""
    given = []
    labels.new_batch()  # the round's labels are one batch: none takes another's new slot
    for label in dict.fromkeys(label for new in gathered for label in new):
        try:
            labels.add(label)
        except LabelError:
            continue
        given.append(label)
    return given
