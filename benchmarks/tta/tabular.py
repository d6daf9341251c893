"""Tabular covariate shift: river's RandomRBF classes under growing sensor miscalibration.

The source phase is the generator as it is. Afterwards every feature is read through a
miscalibrated sensor, ``x' = gain * x + offset``, with a per-feature gain and offset drawn
once per seed and scaled by the severity (1..5): the inputs move, the labels stay what the
true inputs say. That is the kind of shift a deployed tabular model meets when upstream
instruments or pipelines change, and what test-time adaptation is meant to absorb.
"""

from __future__ import annotations

import itertools

import numpy as np
from river.datasets import synth

N_FEATURES = 10
N_CLASSES = 4
SEVERITIES = (1, 2, 3, 4, 5)
_STRENGTH = (0.15, 0.3, 0.45, 0.6, 0.75)  # gain spread and offset (in feature sds)
_FEATURE_SD = 0.3  # RandomRBF features lie in [0, 1] with about this spread


def generate(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of a seeded RandomRBF concept, features [n, 10] and classes [n]."""
    stream = synth.RandomRBF(
        seed_model=seed,
        seed_sample=seed + 1,
        n_classes=N_CLASSES,
        n_features=N_FEATURES,
        n_centroids=20,
    )
    rows = list(itertools.islice(stream, n))
    x = np.array(
        [[v for _, v in sorted(features.items())] for features, _ in rows], dtype=np.float32
    )
    return x, np.array([label for _, label in rows], dtype=np.int64)


def miscalibrate(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """``x`` as a sensor drifted to ``severity`` reads it; the same sensor for every call."""
    rng = np.random.default_rng(seed + 1_000)
    direction_gain = rng.normal(size=N_FEATURES)
    direction_offset = rng.normal(size=N_FEATURES)
    strength = _STRENGTH[severity - 1]
    gain = np.exp(strength * direction_gain)
    offset = strength * direction_offset * _FEATURE_SD
    return (x * gain + offset).astype(np.float32)
