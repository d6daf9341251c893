"""A seeded classification stream and a shifted copy of it: what adaptation is tested on."""

from __future__ import annotations

import numpy as np

from streamlearn.core.engine import Engine
from streamlearn.core.types import Sample

N_CLASSES = 4
N_FEATURES = 8


def blobs(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian classes around fixed centres (the same centres for every call)."""
    centres = np.random.default_rng(1234).normal(0.0, 1.5, (N_CLASSES, N_FEATURES))
    rng = np.random.default_rng(seed)
    y = rng.integers(N_CLASSES, size=n)
    return (centres[y] + rng.normal(size=(n, N_FEATURES))).astype(np.float32), y


def miscalibrated(x: np.ndarray, strength: float = 0.8) -> np.ndarray:
    """Every feature read through a sensor with its own gain and offset."""
    rng = np.random.default_rng(99)
    gain = np.exp(strength * rng.normal(size=N_FEATURES))
    return (x * gain + 2 * strength * rng.normal(size=N_FEATURES)).astype(np.float32)


def learn(engine: Engine, x: np.ndarray, y: np.ndarray, batch: int = 32) -> None:
    for start in range(0, len(y), batch):
        engine.process(
            [
                Sample(r, int(label))
                for r, label in zip(
                    x[start : start + batch].tolist(),
                    y[start : start + batch].tolist(),
                    strict=True,
                )
            ]
        )


def answer(engine: Engine, x: np.ndarray, batch: int = 32) -> np.ndarray:
    """Predicted classes, each answered before the engine adapts on it."""
    out: list[int] = []
    for start in range(0, len(x), batch):
        result = engine.process([Sample(r, None) for r in x[start : start + batch].tolist()])
        for p in result.predictions:
            assert p.prediction is not None
            out.append(int(p.prediction))
    return np.array(out)
