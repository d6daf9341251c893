"""A model whose forward pass stalls or fails on a marked input, in whichever process runs it.

``model.factory: tests.support.slowmodel:build`` with ``model.standardize: false``; any row
whose first feature is ``SLOW_MARK`` makes the forward pass sleep ``SLOW_SECONDS`` (keeps a
request in flight on demand), one whose first feature is ``BROKEN_MARK`` makes it raise (a
model bug, as a serving process meets it).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor, nn

from streamlearn.core.models import build_mlp

SLOW_MARK = 12345.0
SLOW_SECONDS = 1.5
BROKEN_MARK = -54321.0


class SlowOnMark(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        if bool((x[:, 0] == SLOW_MARK).any()):
            time.sleep(SLOW_SECONDS)
        if bool((x[:, 0] == BROKEN_MARK).any()):
            raise RuntimeError("boom")
        out: Tensor = self.inner(x)
        return out


def build(n_features: int, n_outputs: int, settings: Any) -> nn.Module:
    torch.manual_seed(settings.seed)
    return SlowOnMark(build_mlp(n_features, n_outputs, settings.hidden, settings.activation))
