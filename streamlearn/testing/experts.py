"""What every expert must do, whatever its network: the pool relies on all of it.

- ``predict`` never mutates: the pool scores every expert on every held batch after a
  drift, and serving copies experts while the learner goes on.
- state survives ``torch.save`` and ``torch.load(weights_only=True)`` and a restored expert
  behaves exactly as the original: checkpoints hold experts as plain state.
- two experts built alike learn alike: seeded runs must be reproducible.
- ``learn`` returns one finite loss per sample.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from streamlearn.protocols import Expert

STEPS = 5  # learning steps each check takes: enough for optimizer state to exist


def check_expert(make: Callable[[], Expert], x: Tensor, y: Tensor) -> None:
    """Raise AssertionError naming the first broken promise of the experts ``make`` builds.

    ``x``: a batch of inputs; ``y``: its targets (class indices or values).
    """
    _losses_are_per_sample(make(), x, y)
    _predict_never_mutates(make(), x, y)
    _state_round_trips(make, x, y)
    _seeded_runs_agree(make, x, y)


def _losses_are_per_sample(expert: Expert, x: Tensor, y: Tensor) -> None:
    losses = expert.learn(x, y)
    assert losses.shape == (x.shape[0],), (
        f"learn: {tuple(losses.shape)} losses for {x.shape[0]} samples"
    )
    assert bool(losses.isfinite().all()), "learn: non-finite loss"


def _predict_never_mutates(expert: Expert, x: Tensor, y: Tensor) -> None:
    _train(expert, x, y)
    before = roundtrip(expert.state_dict())
    first = expert.predict(x)
    second = expert.predict(x)
    assert torch.equal(first, second), "predict: two calls gave different outputs"
    assert _same(before, expert.state_dict()), "predict: changed the expert's state"


def _state_round_trips(make: Callable[[], Expert], x: Tensor, y: Tensor) -> None:
    original = make()
    _train(original, x, y)
    restored = make()
    restored.load_state_dict(roundtrip(original.state_dict()))
    assert torch.equal(restored.predict(x), original.predict(x)), (
        "state: a restored expert predicts differently"
    )
    assert torch.equal(restored.learn(x, y), original.learn(x, y)), (
        "state: a restored expert learns differently (optimizer state missing?)"
    )
    assert torch.equal(restored.predict(x), original.predict(x)), (
        "state: a restored expert diverged after one step"
    )


def _seeded_runs_agree(make: Callable[[], Expert], x: Tensor, y: Tensor) -> None:
    a, b = make(), make()
    assert torch.equal(_train(a, x, y), _train(b, x, y)), "determinism: losses differ"
    assert torch.equal(a.predict(x), b.predict(x)), "determinism: predictions differ"


def _train(expert: Expert, x: Tensor, y: Tensor) -> Tensor:
    return torch.stack([expert.learn(x, y) for _ in range(STEPS)])


def roundtrip(state: dict[str, Any]) -> Any:
    """``state`` through ``torch.save`` and ``torch.load(weights_only=True)``: what a
    checkpoint does to it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor):
        return isinstance(b, Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return (
            isinstance(b, list | tuple)
            and len(a) == len(b)
            and all(_same(p, q) for p, q in zip(a, b, strict=True))
        )
    return bool(a == b)
