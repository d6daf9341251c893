"""Immutable serving snapshots: what one model version answers with.

A snapshot owns frozen copies of everything a prediction needs (networks in eval mode, the
selector, scaler statistics, label names) behind one
:class:`~streamlearn.core.predictor.Predictor`, the same forward path the learner uses. It is
built from plain state (see :mod:`streamlearn.serve.frozen`): in a serving process from the
files the learner publishes, in-process straight from an engine. Readers take the board's
current snapshot (``board.py``) once per request and use only that object: a request never
sees half of one model version and half of the next, and never waits for a learning step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torch import Tensor

from streamlearn.core.logging import get_logger
from streamlearn.core.predictor import Output, Predictor
from streamlearn.core.types import Label

if TYPE_CHECKING:
    pass

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ExpertInfo:
    """What ``/v1/experts`` says about one expert."""

    id: str
    created: float
    samples_learned: int
    last_active: float | None
    active: bool
    wins: int = 0
    # Mean window loss this expert shows on its own regime; None until it learned enough.
    loss_band: tuple[float, float] | None = None
    accuracy: float | None = None  # prequential, over about the last 1000 answers
    created_sample: int = 0  # stream positions (labeled samples taken in)
    last_active_sample: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One published model version, frozen: everything a prediction needs.

    Immutable and shared by request threads; the learner publishes a new one, never edits it.
    """

    version: int
    created: float  # wall clock when the learner published it
    task: str
    n_features: int
    feature_names: tuple[str, ...] | None
    labels: tuple[Label, ...]
    expert_id: str  # the active expert: it answers wherever the selector is unsure
    experts: tuple[ExpertInfo, ...]
    predictor: Predictor = field(repr=False)
    # The learner run that made it: a restarted learner restores an older checkpoint, and
    # its versions start below the last one served without being stale.
    generation: str = ""

    def predict(self, x: Tensor, variance: bool = False) -> Output:
        """Predict a float32 batch ``[rows, n_features]``; safe from any number of threads.
        ``variance``: also each row's predictive variance, where the experts give one."""
        return self.predictor.predict(x, variance)
