"""A sequence-check expert for replicas that average (docs/scaling.md), for the kill test.

Records carry ``x = [key, seq]`` (:mod:`tests.support.seqproducer`). The state is one float64
tensor ``applied[key, seq]`` at the path a sync round averages (``expert/module/...``), and
``learn`` adds 1 at each record's cell. Averaged over N replicas, every record learned once
anywhere in the group's lineage leaves ``1/N`` in its cell (FedAvg's weight of one update),
a record learned twice ``2/N``, a lost one 0: so ``applied * N == 1`` on every record sent,
and 0 elsewhere, is exactly-once of the group's model. Sums of 1/2 are exact in float64.

``SEQ_LOG`` (optional): append ``key seq pid`` for every update applied, in any process.
The tensor's size comes from ``SEQ_KEYS`` and ``SEQ_MAX``. ``CKPT_WRITE_DELAY_S`` widens
checkpoint writes (:mod:`tests.support.ckptdelay`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tests.support.ckptdelay import widen_from_env


class CountingExpert:
    """Counts, per (key, seq), the updates its lineage applied."""

    # The Expert protocol's accessors: no torch module (never adapted, served by predict),
    # no guard of its own (every learn step goes through).
    module = None
    skipped = None

    def __init__(self, keys: int, max_seq: int, log_path: str | None = None) -> None:
        self.applied = torch.zeros(keys, max_seq + 1, dtype=torch.float64)
        self._log = open(log_path, "a", encoding="utf-8") if log_path else None  # noqa: SIM115
        self._pid = os.getpid()

    def predict(self, x: Tensor) -> Tensor:
        return torch.zeros(x.shape[0])

    def learn(self, x: Tensor, y: Tensor) -> Tensor:
        pairs = [(int(k), int(s)) for k, s in x.tolist()]
        for key, seq in pairs:
            self.applied[key, seq] += 1.0
        if self._log is not None:
            self._log.write("".join(f"{k} {s} {self._pid}\n" for k, s in pairs))
            self._log.flush()
        return torch.zeros(x.shape[0])

    def state_dict(self) -> dict[str, Any]:
        # "module": the path whose tensors a sync round averages.
        return {"module": {"applied": self.applied.clone()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.applied = state["module"]["applied"].clone()


def build(n_features: int, n_outputs: int, settings: Any) -> CountingExpert:
    widen_from_env()
    return CountingExpert(
        int(os.environ["SEQ_KEYS"]), int(os.environ["SEQ_MAX"]), os.environ.get("SEQ_LOG")
    )


def applied(state: Mapping[str, Any]) -> Tensor:
    """The counting expert's ``applied`` in a checkpoint's state (the pool's one expert)."""
    members = state["engine"]["pool"]["members"]
    assert list(members) == [0] or list(members) == ["0"], f"one expert, not {list(members)}"
    tensor: Tensor = next(iter(members.values()))["expert"]["module"]["applied"]
    return tensor


def read_log(path: str | Path) -> list[tuple[int, int, int]]:
    """``(key, seq, pid)`` of every update applied (lost ones too), in order."""
    if not Path(path).exists():
        return []
    rows = [line.split() for line in Path(path).read_text().splitlines()]
    return [(int(r[0]), int(r[1]), int(r[2])) for r in rows if len(r) == 3]
