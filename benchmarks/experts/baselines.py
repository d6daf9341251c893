"""river's learners on the same streams, test-then-train one sample at a time.

ARF (adaptive random forest, ADWIN drift detection per tree, background trees) and HAT
(Hoeffding adaptive tree) are river's answers to drift, with river's defaults except the
seed; "naive" predicts the last label seen, the floor any learner must beat (on a stream
with runs of one class it is not low). Features go in as {column index: float}, unscaled:
trees need no scaling.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from river import dummy, forest, tree

if TYPE_CHECKING:  # only for the annotation: importable without the folder on sys.path
    from benchmarks.experts.streams import Stream

RIVER_MODELS: dict[str, Callable[[int], Any]] = {
    "arf": lambda seed: forest.ARFClassifier(seed=seed),
    "hat": lambda seed: tree.HoeffdingAdaptiveTreeClassifier(seed=seed),
    "naive": lambda seed: dummy.NoChangeClassifier(),  # nothing random to seed
}


@dataclass(frozen=True)
class BaselineRun:
    name: str
    correct: np.ndarray  # bool [n], prediction made before learning the sample
    seconds: float  # predicting and learning, feature dicts included
    samples_per_s: float


def run_river(name: str, stream: Stream, seed: int = 0) -> BaselineRun:
    """Predict each sample, then learn it; no prediction (None, before any label) is wrong."""
    model = RIVER_MODELS[name](seed)
    rows, labels = stream.x.tolist(), stream.y.tolist()
    correct = np.zeros(len(labels), dtype=bool)
    began = time.perf_counter()
    for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
        x = dict(enumerate(row))
        correct[i] = model.predict_one(x) == label
        model.learn_one(x, label)
    seconds = time.perf_counter() - began
    return BaselineRun(name, correct, seconds, len(labels) / seconds if seconds else 0.0)
