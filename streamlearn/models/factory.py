"""User-supplied model factories, named in settings as ``"package.module:function"``.

The factory is called as ``factory(n_features=..., n_outputs=..., settings=ModelSettings)``
and returns a ``torch.nn.Module`` (wrapped into a NeuralExpert with the configured
optimizer) or an object that already implements the Expert protocol. Factories come from
the local configuration only, never from the network.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from streamlearn.errors import ModelError


def load_factory(spec: str) -> Callable[..., Any]:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ModelError(f"model.factory: expected 'module:function', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"model.factory: cannot import {module_name!r} ({exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ModelError(f"model.factory: {module_name!r} has no callable {attr!r}")
    return factory  # type: ignore[no-any-return]
