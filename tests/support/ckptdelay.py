"""``CKPT_WRITE_DELAY_S``: the checkpoint store's test hook (``write_delay_s``: a pause
between writing the ``.tmp`` file and renaming it), so that a SIGKILL lands inside a
checkpoint write more often. The daemon has no setting for it; an expert's factory, which
runs in the learner process, is the one place a test reaches into it."""

from __future__ import annotations

import os
from typing import Any


def widen_from_env() -> None:
    """Widen every checkpoint write of this process by ``CKPT_WRITE_DELAY_S`` seconds."""
    delay = float(os.environ.get("CKPT_WRITE_DELAY_S", "0"))
    if delay:
        widen_checkpoint_writes(delay)


def widen_checkpoint_writes(delay_s: float) -> None:
    """Pause ``delay_s`` inside every checkpoint write of this process."""
    from streamlearn.checkpoint.store import FileCheckpointStore

    if getattr(FileCheckpointStore.save, "widened", False):
        return
    save = FileCheckpointStore.save

    def widened(self: Any, state: dict[str, Any]) -> Any:
        self._write_delay_s = delay_s
        return save(self, state)

    widened.widened = True  # type: ignore[attr-defined]
    FileCheckpointStore.save = widened  # type: ignore[method-assign]
