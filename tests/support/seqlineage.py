"""A sequence-checking expert whose *state* proves what its lineage learned, for chaos tests.

Like :mod:`tests.support.seqexpert` (records carry ``x = [key, seq]`` with a per-key ``seq``
counting from 1), plus, in the state that checkpoints save and restores load:

- ``spans[key]``: the runs of consecutive seqs this lineage applied, ``[[first, last], ...]``;
  one span ``[[1, n]]`` means records 1..n each applied once and nothing else;
- ``violations``: ``[key, seq, step]`` for every update whose ``step = seq - last_seq[key]``
  was not 1 (a repeat or a skip), at most :data:`MAX_VIOLATIONS` of them.

A lineage is what one restored state plus the updates after it make, so the state read
from the last checkpoint (or at a clean shutdown) shows exactly what the model holds: lost
updates of a crashed process are not in it, which a log of every applied update cannot
tell apart. Where partitions move between group members, each member's model is its own
lineage: ``spans`` then has gaps (what the other member learned), never overlaps.

Optional, from the environment of the process that builds it:

- ``SEQ_LOG``: append ``key seq step pid`` for every applied update (all processes, lost
  updates included) — what :func:`read_log` reads;
- ``SEQ_LEARN_SLEEP_S``: sleep this long in every ``learn`` call (a slow learning step);
- ``CKPT_WRITE_DELAY_S``: widen every checkpoint write (:mod:`tests.support.ckptdelay`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tests.support.ckptdelay import widen_from_env

MAX_VIOLATIONS = 1_000


class LineageExpert:
    """Like SequenceCheckExpert, with the spans and violations of its lineage in its state."""

    # The Expert protocol's accessors: no torch module (never adapted, served by predict),
    # no guard of its own (every learn step goes through).
    module = None
    skipped = None

    def __init__(self, log_path: str | None = None, sleep_s: float = 0.0) -> None:
        self.last_seq: dict[int, int] = {}
        self.count: dict[int, int] = {}
        self.total: dict[int, float] = {}
        self.spans: dict[int, list[list[int]]] = {}
        self.violations: list[list[int]] = []
        self.sleep_s = sleep_s
        self._log = open(log_path, "a", encoding="utf-8") if log_path else None  # noqa: SIM115
        self._pid = os.getpid()

    def predict(self, x: Tensor) -> Tensor:
        return torch.zeros(x.shape[0])

    def learn(self, x: Tensor, y: Tensor) -> Tensor:
        if self.sleep_s:
            time.sleep(self.sleep_s)
        lines = []
        for (key_f, seq_f), target in zip(x.tolist(), y.tolist(), strict=True):
            key, seq = int(key_f), int(seq_f)
            step = seq - self.last_seq.get(key, 0)
            lines.append(f"{key} {seq} {step} {self._pid}\n")
            if step != 1 and len(self.violations) < MAX_VIOLATIONS:
                self.violations.append([key, seq, step])
            spans = self.spans.setdefault(key, [])
            if spans and step == 1:
                spans[-1][1] = seq
            else:
                spans.append([seq, seq])
            self.last_seq[key] = seq
            self.count[key] = self.count.get(key, 0) + 1
            self.total[key] = self.total.get(key, 0.0) + target
        if self._log is not None:
            self._log.write("".join(lines))
            self._log.flush()
        return torch.zeros(x.shape[0])

    def state_dict(self) -> dict[str, Any]:
        return {
            "last_seq": dict(self.last_seq),
            "count": dict(self.count),
            "total": dict(self.total),
            "spans": {k: [list(s) for s in v] for k, v in self.spans.items()},
            "violations": [list(v) for v in self.violations],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.last_seq = {int(k): int(v) for k, v in state["last_seq"].items()}
        self.count = {int(k): int(v) for k, v in state["count"].items()}
        self.total = {int(k): float(v) for k, v in state["total"].items()}
        self.spans = {
            int(k): [[int(a), int(b)] for a, b in v] for k, v in state.get("spans", {}).items()
        }
        self.violations = [[int(a) for a in v] for v in state.get("violations", [])]


def build(n_features: int, n_outputs: int, settings: Any) -> LineageExpert:
    widen_from_env()
    return LineageExpert(os.environ.get("SEQ_LOG"), float(os.environ.get("SEQ_LEARN_SLEEP_S", "0")))


def read_log(path: str | Path) -> list[tuple[int, int, int, int]]:
    """``(key, seq, step, pid)`` of every update applied, in the order applied."""
    if not Path(path).exists():
        return []
    with open(path, encoding="utf-8") as handle:
        rows = [line.split() for line in handle]
    return [(int(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows if len(r) == 4]


def expert_state(checkpoint_dir: str | Path) -> dict[str, Any]:
    """The lineage expert's state in the newest valid checkpoint of ``checkpoint_dir``."""
    from streamlearn.checkpoint.store import FileCheckpointStore

    loaded = FileCheckpointStore(Path(checkpoint_dir)).load_latest()
    assert loaded is not None, f"no valid checkpoint in {checkpoint_dir}"
    members = loaded.state["engine"]["pool"]["members"]
    assert list(members) == ["0"], f"one expert expected, the pool has {list(members)}"
    state: dict[str, Any] = members["0"]["expert"]
    return state


def covered(spans: Mapping[int, list[list[int]]]) -> dict[int, set[int]]:
    """Every seq each key's spans cover."""
    return {int(k): {s for a, b in v for s in range(a, b + 1)} for k, v in spans.items()}
