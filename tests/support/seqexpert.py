"""A test-only expert that proves each record is applied to the model exactly once.

Records carry ``x = [key, seq]`` with a per-key ``seq`` counting from 1. The expert's state is
``last_seq[key]`` and ``count[key]``; every applied update appends ``key seq step`` to the log
file named by ``$SEQ_LOG``, where ``step = seq - last_seq[key]`` must always be exactly 1.
Updates lost to a crash are in the log too, but never in a restored state.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import Tensor


class SequenceCheckExpert:
    """Logs every update it applies; its state is what a lineage learned, key by key."""

    # The Expert protocol's accessors: no torch module (never adapted, served by predict),
    # no guard of its own (every learn step goes through).
    module = None
    skipped = None

    def __init__(self, log_path: str) -> None:
        self.last_seq: dict[int, int] = {}
        self.count: dict[int, int] = {}
        self.total: dict[int, float] = {}
        self._log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - lives with the expert

    def predict(self, x: Tensor) -> Tensor:
        return torch.zeros(x.shape[0])

    def learn(self, x: Tensor, y: Tensor) -> Tensor:
        lines = []
        for (key_f, seq_f), target in zip(x.tolist(), y.tolist(), strict=True):
            key, seq = int(key_f), int(seq_f)
            lines.append(f"{key} {seq} {seq - self.last_seq.get(key, 0)}\n")
            self.last_seq[key] = seq
            self.count[key] = self.count.get(key, 0) + 1
            self.total[key] = self.total.get(key, 0.0) + target
        self._log.write("".join(lines))
        self._log.flush()
        return torch.zeros(x.shape[0])

    def state_dict(self) -> dict[str, Any]:
        return {
            "last_seq": dict(self.last_seq),
            "count": dict(self.count),
            "total": dict(self.total),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.last_seq = {int(k): int(v) for k, v in state["last_seq"].items()}
        self.count = {int(k): int(v) for k, v in state["count"].items()}
        self.total = {int(k): float(v) for k, v in state["total"].items()}


def build(n_features: int, n_outputs: int, settings: Any) -> SequenceCheckExpert:
    return SequenceCheckExpert(os.environ["SEQ_LOG"])


def read_log(path: str) -> list[tuple[int, int, int]]:
    with open(path, encoding="utf-8") as handle:
        # Each line is written as "key seq step": three fields (the cast does not check it).
        return [
            cast(tuple[int, int, int], tuple(int(v) for v in line.split()))
            for line in handle
            if line.strip()
        ]
