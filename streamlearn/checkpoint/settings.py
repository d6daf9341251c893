"""The ``checkpoint`` settings section."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from streamlearn.core.section import Section


class CheckpointSettings(Section):
    """Where and how often checkpoints are written, and how many are kept."""

    enabled: bool = True
    dir: Path = Path("checkpoints")
    every_samples: int = Field(10_000, ge=1)
    every_seconds: float = Field(60.0, gt=0)
    # The promise is "keep the last 3": enough to fall back past one torn and one corrupt file.
    keep: int = Field(3, ge=1)
    # After a failed or deferred checkpoint (disk full, outputs not landed) the next try waits
    # retry_min_s, doubling up to retry_max_s: a full disk must not cost a whole state
    # serialization on every learning step.
    retry_min_s: float = Field(1.0, gt=0)
    retry_max_s: float = Field(60.0, gt=0)
