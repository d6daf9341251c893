"""The value streams the drift benchmark feeds detectors, each with its known change points.

Two kinds:

- synthetic per-sample "losses": normal, or skewed (gamma, shape 2, standardized), with an
  abrupt rise of 0.5, 1 or 2 standard deviations; stable streams of the same, plus 0/1
  errors (Bernoulli 0.1);
- real loss streams: streamlearn's own engine (an MLP learning test-then-train, drift
  detection off) on river generators, and the losses it produced: gradual drifts
  (``ConceptDriftStream`` with a width), recurring concepts (A -> B -> C -> A ...), and a
  long stable stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np
from river.datasets import synth
from river.datasets.base import SyntheticDataset

from streamlearn.core.engine import Engine
from streamlearn.core.types import Sample
from streamlearn.settings import DriftSettings, ModelSettings
from streamlearn.streams import drifting_stream


@dataclass
class Stream:
    name: str
    values: np.ndarray
    changes: list[int] = field(default_factory=list)  # indices where the new regime begins
    accept_from: list[int] = field(default_factory=list)  # earliest index that counts


def abrupt(dist: str, shift: float, seed: int, before: int = 3_000, after: int = 2_000) -> Stream:
    values = noise(dist, before + after, seed)
    values[before:] += shift
    return Stream(f"{dist} +{shift}sd", values, [before], [before])


def noise(dist: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dist == "normal":
        return rng.normal(0.0, 1.0, n)
    if dist == "gamma":
        skewed: np.ndarray = (rng.gamma(2.0, 1.0, n) - 2.0) / np.sqrt(2.0)  # like most losses
        return skewed
    if dist == "bernoulli":
        return (rng.random(n) < 0.1).astype(np.float64)  # 0/1 errors at 10% error rate
    raise ValueError(dist)


def engine_losses(samples: Iterable[dict[str, Any]], n: int, seed: int = 0) -> np.ndarray:
    """Per-sample losses of streamlearn's engine learning ``samples`` test-then-train."""
    engine = Engine(
        ModelSettings(hidden=[32], learning_rate=0.005, seed=seed),
        drift=DriftSettings(enabled=False),
    )
    out: list[np.ndarray] = []
    batch: list[Sample] = []
    for item in islice(samples, n):
        batch.append(Sample(item["x"], item["y"]))
        if len(batch) == 32:
            out.append(_losses(engine, batch))
            batch = []
    if batch:
        out.append(_losses(engine, batch))
    return np.concatenate(out)


def _losses(engine: Engine, batch: list[Sample]) -> np.ndarray:
    result = engine.process(batch)
    assert result.losses is not None
    return result.losses.double().cpu().numpy()


def _river(stream: Iterable[tuple[dict[str, Any], object]]) -> Iterator[dict[str, Any]]:
    for x, y in stream:
        yield {"x": [float(v) for v in x.values()], "y": y}


GRADUAL: dict[
    str, Callable[[int, int], SyntheticDataset]
] = {  # (before, after) concepts of one river generator
    "sea": lambda seed, variant: synth.SEA(variant=variant, seed=seed),
    "agrawal": lambda seed, variant: synth.Agrawal(classification_function=variant, seed=seed),
}
GRADUAL_VARIANTS = {"sea": (0, 3), "agrawal": (0, 2)}


def gradual(
    generator: str, width: int, seed: int, position: int = 10_000, n: int = 16_000
) -> Stream:
    first, second = GRADUAL_VARIANTS[generator]
    stream = synth.ConceptDriftStream(
        stream=GRADUAL[generator](seed, first),
        drift_stream=GRADUAL[generator](seed, second),
        position=position,
        width=width,
        seed=seed,
    )
    values = engine_losses(_river(stream), n, seed)
    # The new concept's share is a sigmoid of width ``width`` around ``position``.
    return Stream(f"{generator} gradual w={width}", values, [position], [position - width // 2])


def recurring(generator: str, seed: int, segment: int = 5_000, segments: int = 9) -> Stream:
    n = segment * segments
    values = engine_losses(drifting_stream(generator, n, seed, segment), n, seed)
    changes = list(range(segment, n, segment))
    return Stream(f"{generator} recurring", values, changes, changes)


def stable_learning(n: int, seed: int) -> Stream:
    """An MLP's losses on one SEA concept (10% label noise) after its first 5k samples."""
    values = engine_losses(_river(synth.SEA(variant=0, seed=seed, noise=0.1)), n + 5_000, seed)
    return Stream("sea stable (engine losses)", values[5_000:])
