"""Two replicas of a sync test, each its own process on loopback gloo: spawned once, and
what each saved (``rank<r>.pt`` in the output directory) loaded weights-only; an engine
joined as a replica, and its learning step as the daemon's loop takes it (pacing and the
last round: streamlearn/sync/lockstep.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.multiprocessing.spawn import spawn

# The daemon before its replica: streamlearn.daemon's package imports the loop, which
# imports streamlearn.sync.replica.
from streamlearn.core.admission import Rejection
from streamlearn.core.engine import Engine, StepResult
from streamlearn.core.types import Sample
from streamlearn.daemon.buffer import InputBuffer
from streamlearn.daemon.checkpointer import Checkpointer
from streamlearn.daemon.endpoints import Endpoints
from streamlearn.metrics import Metrics
from streamlearn.settings import Settings
from streamlearn.sync.lockstep import take_round
from streamlearn.sync.replica import Replica


def run_pair(
    replica: Callable[..., None], args: tuple[Any, ...], out: Path
) -> list[dict[str, Any]]:
    """Run ``replica(rank, *args, str(out))`` on ranks 0 and 1; each rank's saved result."""
    spawn(replica, args=(*args, str(out)), nprocs=2, join=True)  # type: ignore[no-untyped-call]
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def engine_replica(
    settings: Settings, batch: int, report: Callable[[StepResult], None] | None = None
) -> tuple[Engine, Replica]:
    """An engine joined to its group as a replica with no checkpoints (the group's start
    from rank 0's fresh state): what a replica test drives, as the daemon would."""
    engine = Engine(
        settings.model, settings.engine, settings.drift, settings.experts, settings.adapt
    )
    checkpointer = Checkpointer(
        settings, Metrics(), engine, InputBuffer(batch, 0.0), Endpoints(), lambda: None
    )
    replica = Replica(
        settings.sync, engine, checkpointer, Metrics(), lambda: None, report or (lambda r: None)
    )
    replica.join()
    replica.restore(lambda state, path: None)
    return engine, replica


def step(
    replica: Replica, chunk: list[Sample], learn: Callable[[list[Sample]], StepResult]
) -> list[Rejection]:
    """One learning step as the daemon's loop takes it: learn, hold what waits for a class
    slot, count the step, and take a round if one is due or asked for (looking at once, as
    a busy loop would). The other rejections."""
    result = learn(chunk)
    others = replica.pending.hold(result.rejections, chunk, [None] * len(chunk))
    replica.stepped()
    take_round(replica)
    return others
