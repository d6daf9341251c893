"""Two replicas of a sync test, each its own process on loopback gloo: spawned once, and
what each saved (``rank<r>.pt`` in the output directory) loaded weights-only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.multiprocessing.spawn import spawn


def run_pair(
    replica: Callable[..., None], args: tuple[Any, ...], out: Path
) -> list[dict[str, Any]]:
    """Run ``replica(rank, *args, str(out))`` on ranks 0 and 1; each rank's saved result."""
    spawn(replica, args=(*args, str(out)), nprocs=2, join=True)  # type: ignore[no-untyped-call]
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
