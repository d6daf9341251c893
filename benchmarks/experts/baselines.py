"""river's learners on the same streams, test-then-train one sample at a time.

Classification: ARF (adaptive random forest, 10 trees, ADWIN drift detection per tree,
background trees) and HAT (Hoeffding adaptive tree) are river's answers to drift, with
river's defaults except the seed; "naive" predicts the last label seen, the floor any
learner must beat (on a stream with runs of one class it is not low).

Regression: river's ARF regressor and Hoeffding adaptive tree regressor (defaults, seeded),
a linear regression on standardized features ("linear", river's StandardScaler then
LinearRegression, SGD as river does it) and the running mean of the targets ("naive").

Features go in as {column index: float}, unscaled (trees need no scaling; the linear model
scales its own). Every run is deterministic for its seed, so ``cached_river`` may keep a
run's per-sample errors on disk, keyed by the learner, the seed and a hash of the stream's
samples: a sweep over the engine's settings computes each river run once.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from river import dummy, forest, linear_model, preprocessing, stats, tree

if TYPE_CHECKING:  # only for the annotation: importable without the folder on sys.path
    from benchmarks.experts.streams import Stream

RIVER_MODELS: dict[str, Callable[[int], Any]] = {
    "arf": lambda seed: forest.ARFClassifier(seed=seed),
    "hat": lambda seed: tree.HoeffdingAdaptiveTreeClassifier(seed=seed),
    "naive": lambda seed: dummy.NoChangeClassifier(),  # nothing random to seed
}
RIVER_REGRESSORS: dict[str, Callable[[int], Any]] = {
    "arf": lambda seed: forest.ARFRegressor(seed=seed),
    "hat": lambda seed: tree.HoeffdingAdaptiveTreeRegressor(seed=seed),
    "linear": lambda seed: preprocessing.StandardScaler() | linear_model.LinearRegression(),
    "naive": lambda seed: dummy.StatisticRegressor(stats.Mean()),
}
CACHE = Path(os.environ.get("SLBENCH_CACHE", Path.home() / ".cache" / "streamlearn"))


def models_for(stream: Stream) -> dict[str, Callable[[int], Any]]:
    return RIVER_MODELS if stream.task == "classification" else RIVER_REGRESSORS


@dataclass(frozen=True)
class BaselineRun:
    name: str
    errors: np.ndarray  # float [n]: 1/0 wrong/right, or the absolute error; before learning
    seconds: float  # predicting and learning, feature dicts included
    samples_per_s: float


def run_river(name: str, stream: Stream, seed: int = 0) -> BaselineRun:
    """Predict each sample, then learn it. A classifier's missing prediction (None, before
    any label) is wrong; a regressor's is 0."""
    model = models_for(stream)[name](seed)
    rows, labels = stream.x.tolist(), stream.y.tolist()
    errors = np.zeros(len(labels), dtype=np.float64)
    classify = stream.task == "classification"
    began = time.perf_counter()
    for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
        x = dict(enumerate(row))
        guess = model.predict_one(x)
        if classify:
            errors[i] = guess != label
        else:
            errors[i] = abs((guess or 0.0) - label)
        model.learn_one(x, label)
    seconds = time.perf_counter() - began
    return BaselineRun(name, errors, seconds, len(labels) / seconds if seconds else 0.0)


def cached_river(name: str, stream: Stream, seed: int, cache: Path | None = CACHE) -> BaselineRun:
    """``run_river``, or the same run's errors from an earlier call (same samples, seed)."""
    if cache is None:
        return run_river(name, stream, seed)
    digest = hashlib.sha256()
    for array in (stream.x, stream.y):
        digest.update(np.ascontiguousarray(array).tobytes())
    path = cache / f"river-{name}-{stream.name}-s{seed}-{digest.hexdigest()[:16]}.npz"
    if path.exists():
        with np.load(path) as saved:
            return BaselineRun(name, saved["errors"], float(saved["seconds"]), float(saved["rate"]))
    run = run_river(name, stream, seed)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, errors=run.errors, seconds=run.seconds, rate=run.samples_per_s)
    tmp.replace(path)
    return run
