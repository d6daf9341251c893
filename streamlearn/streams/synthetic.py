"""Recurring-regime streams from river's synthetic generators.

Each stream cycles through concepts A -> B -> C -> A -> ... with an abrupt change every
``segment`` samples, so recurrences are known for scoring but never told to the learner.
A sample is the input record contract as a dict: ``{"x": [...], "y": ..., "task": ...}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from river.datasets import synth


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """A synthetic stream: its description, its concepts, and how to make each generator."""

    description: str
    concepts: tuple[int, ...]
    make: Callable[[int, int], Any]  # (concept, seed) -> river generator


STREAMS: dict[str, StreamSpec] = {
    "agrawal": StreamSpec(
        "Agrawal loan functions 1, 3, 5 recurring; 9 features, 2 classes",
        (0, 2, 4),
        lambda c, seed: synth.Agrawal(classification_function=c, seed=seed, perturbation=0.05),
    ),
    "sea": StreamSpec(
        "SEA threshold variants 0, 1, 2, 3 recurring; 3 features, 10% label noise",
        (0, 1, 2, 3),
        lambda c, seed: synth.SEA(variant=c, seed=seed, noise=0.1),
    ),
    "stagger": StreamSpec(
        "STAGGER concepts 0, 1, 2 recurring; 3 categorical features",
        (0, 1, 2),
        lambda c, seed: synth.STAGGER(classification_function=c, seed=seed),
    ),
    "hyperplane": StreamSpec(
        "rotating hyperplane, gradual drift; 10 features",
        (0,),
        lambda c, seed: synth.Hyperplane(
            seed=seed, n_features=10, n_drift_features=5, mag_change=0.001, noise_percentage=0.05
        ),
    ),
}


def drifting_stream(
    name: str, n: int, seed: int = 42, segment: int = 2_000
) -> Iterator[dict[str, Any]]:
    """``n`` samples of stream ``name``; the concept changes every ``segment`` samples."""
    spec = STREAMS[name]
    generators = {c: iter(spec.make(c, seed + i)) for i, c in enumerate(spec.concepts)}
    for index in range(n):
        concept = spec.concepts[(index // segment) % len(spec.concepts)]
        x, y = next(generators[concept])
        yield {
            "x": [float(v) for v in x.values()],
            "y": _label(y),
            "task": f"{name}-{concept}",
            "id": str(index),
        }


def take(name: str, n: int, seed: int = 42, segment: int = 2_000) -> list[dict[str, Any]]:
    return list(islice(drifting_stream(name, n, seed, segment), n))


def _label(y: Any) -> int | float | str:
    if isinstance(y, bool):
        return int(y)
    if isinstance(y, int | float | str):
        return y
    return str(y)
