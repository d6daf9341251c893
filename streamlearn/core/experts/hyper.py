"""An optimizer's configured hyper-parameters, kept across loads of another's state.

``torch.optim.Optimizer.load_state_dict`` replaces the param groups' hyper-parameters
(lr, momentum, weight decay, betas, ...) with the saved ones, not only the per-parameter
state (momentum buffers, Adam's moments). An expert is configured by its own settings, so
after a load the configured values are put back: a promoted challenger's state, a rollback
or a checkpoint written under other settings brings its weights and per-parameter state,
never its hyper-parameters.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch


def configured_groups(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """The hyper-parameters of each param group as configured (without its params)."""
    return [
        {key: copy.deepcopy(value) for key, value in group.items() if key != "params"}
        for group in optimizer.param_groups
    ]


def load_keeping_configured(
    optimizer: torch.optim.Optimizer,
    state: Mapping[str, Any],
    configured: list[dict[str, Any]],
) -> None:
    """Load ``state`` (per-parameter state) and put the configured hyper-parameters back."""
    optimizer.load_state_dict(dict(state))
    for group, values in zip(optimizer.param_groups, configured, strict=True):
        group.update(copy.deepcopy(values))
