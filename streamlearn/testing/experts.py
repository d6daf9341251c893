"""What every expert must do, whatever its network: the pool relies on all of it.

- ``predict`` never mutates: the pool scores every expert on every held batch after a
  drift, and serving copies experts while the learner goes on.
- state survives ``torch.save`` and ``torch.load(weights_only=True)`` and a restored expert
  behaves exactly as the original: checkpoints hold experts as plain state.
- two experts built alike learn alike: seeded runs must be reproducible.
- ``learn`` returns one finite loss per sample, and ``skipped`` is then None or a reason
  (a string).
- ``module``, when not None, is a ``torch.nn.Module`` whose forward pass in eval mode is
  what ``predict`` returns (squeezed for one output): frozen serving runs that module, and
  test-time adaptation changes it in place expecting ``predict`` to follow.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from streamlearn.core.protocols import Expert
from streamlearn.testing.common import roundtrip as roundtrip
from streamlearn.testing.common import same

STEPS = 5  # learning steps each check takes: enough for optimizer state to exist


def check_expert(make: Callable[[], Expert], x: Tensor, y: Tensor) -> None:
    """Raise AssertionError naming the first broken promise of the experts ``make`` builds.

    ``x``: a batch of inputs; ``y``: its targets (class indices or values).
    """
    _losses_are_per_sample(make(), x, y)
    _module_is_what_predict_runs(make(), x, y)
    _predict_never_mutates(make(), x, y)
    _state_round_trips(make, x, y)
    _seeded_runs_agree(make, x, y)


def _losses_are_per_sample(expert: Expert, x: Tensor, y: Tensor) -> None:
    losses = expert.learn(x, y)
    assert losses.shape == (x.shape[0],), (
        f"learn: {tuple(losses.shape)} losses for {x.shape[0]} samples"
    )
    assert bool(losses.isfinite().all()), "learn: non-finite loss"
    assert expert.skipped is None or isinstance(expert.skipped, str), (
        f"skipped: {expert.skipped!r} after learn, not None or a reason"
    )


def _module_is_what_predict_runs(expert: Expert, x: Tensor, y: Tensor) -> None:
    _train(expert, x, y)
    module = expert.module
    if module is None:
        return
    assert isinstance(module, nn.Module), f"module: a {type(module).__name__}, not nn.Module"
    was_training = module.training
    module.eval()
    with torch.no_grad():
        out: Tensor = module(x)
    module.train(was_training)
    predicted = expert.predict(x)
    if out.shape != predicted.shape and out.shape[-1:] == (1,):
        out = out.squeeze(-1)
    assert torch.equal(out, predicted), "module: its forward pass is not what predict returns"


def _predict_never_mutates(expert: Expert, x: Tensor, y: Tensor) -> None:
    _train(expert, x, y)
    before = roundtrip(expert.state_dict())
    first = expert.predict(x)
    second = expert.predict(x)
    assert torch.equal(first, second), "predict: two calls gave different outputs"
    assert same(before, expert.state_dict()), "predict: changed the expert's state"


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
