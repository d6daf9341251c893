"""What every test-time adaptation method must do: the adapter relies on all of it.

- two methods built alike adapt alike: seeded runs must be reproducible;
- state survives ``torch.save`` and ``torch.load(weights_only=True)``, and a restored
  method continues exactly as the original would have;
- rows the guards keep out (``keep`` false) teach nothing: with no row kept, only
  normalization statistics may change, never a parameter;
- ``step`` reports at most as many rows used as were kept.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from streamlearn.core.protocols import AdaptMethod
from streamlearn.testing.common import roundtrip

STEPS = 3


def check_adapt_method(
    make: Callable[[], AdaptMethod], module: nn.Module, x: Tensor, n_classes: int
) -> None:
    """Raise AssertionError naming the first broken promise of the methods ``make`` builds.

    ``module``: a trained network (left untouched; copies are adapted); ``x``: a batch of
    unlabeled inputs it takes; ``n_classes``: the classes it has seen.
    """
    _seeded_runs_agree(make, module, x, n_classes)
    _state_round_trips(make, module, x, n_classes)
    _kept_out_rows_teach_nothing(make, module, x, n_classes)


def _adapted(
    make: Callable[[], AdaptMethod],
    module: nn.Module,
    x: Tensor,
    n_classes: int,
    steps: int = STEPS,
) -> tuple[AdaptMethod, nn.Module]:
    torch.manual_seed(0)
    method, net = make(), copy.deepcopy(module)
    method.begin(net, {k: v.clone() for k, v in net.state_dict().items()})
    keep = torch.ones(x.shape[0], dtype=torch.bool)
    for _ in range(steps):
        used = method.step(net, x, keep, n_classes)
        assert 0 <= used <= x.shape[0], f"step: reported {used} rows of {x.shape[0]}"
    return method, net


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def _seeded_runs_agree(
    make: Callable[[], AdaptMethod], module: nn.Module, x: Tensor, n_classes: int
) -> None:
    _, a = _adapted(make, module, x, n_classes)
    _, b = _adapted(make, module, x, n_classes)
    assert _same(a, b), "two methods built alike adapted differently"


def _state_round_trips(
    make: Callable[[], AdaptMethod], module: nn.Module, x: Tensor, n_classes: int
) -> None:
    method, net = _adapted(make, module, x, n_classes)
    anchor = {k: v.clone() for k, v in module.state_dict().items()}
    restored_net = copy.deepcopy(module)
    restored_net.load_state_dict(roundtrip(net.state_dict()))
    restored = make()
    restored.begin(restored_net, anchor)
    restored.load_state_dict(roundtrip(method.state_dict()))
    if hasattr(method, "generator") and hasattr(restored, "generator"):
        restored.generator.set_state(method.generator.get_state())
    keep = torch.ones(x.shape[0], dtype=torch.bool)
    method.step(net, x, keep, n_classes)
    restored.step(restored_net, x, keep, n_classes)
    assert _same(net, restored_net), "a restored method continued differently"


def _kept_out_rows_teach_nothing(
    make: Callable[[], AdaptMethod], module: nn.Module, x: Tensor, n_classes: int
) -> None:
    method, net = make(), copy.deepcopy(module)
    method.begin(net, {k: v.clone() for k, v in net.state_dict().items()})
    before = [p.detach().clone() for p in net.parameters()]
    used = method.step(net, x, torch.zeros(x.shape[0], dtype=torch.bool), n_classes)
    assert used == 0, f"step: {used} rows used with none kept"
    after = list(net.parameters())
    assert all(torch.equal(b, a) for b, a in zip(before, after, strict=True)), (
        "a parameter changed although no row was kept"
    )


__all__ = ["check_adapt_method"]
