"""User-supplied model factories, named in settings as ``"package.module:function"``.

The factory is called as ``factory(n_features=..., n_outputs=..., settings=ModelSettings)``
and returns a ``torch.nn.Module`` (wrapped into a NeuralExpert with the configured
optimizer) or an object that already implements the Expert protocol (checked when it is
built: :func:`streamlearn.core.experts.expert.build_network`). Factories come from the local
configuration only, never from the network; :mod:`streamlearn.core.extensions` loads them, as it
loads user drift detectors and adaptation methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamlearn.core.errors import ModelError
from streamlearn.core.extensions import load_object


def load_factory(spec: str) -> Callable[..., Any]:
    return load_object(spec, "model.factory", ModelError)
