"""The runtime directory the processes of one service share, and its layout."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Shared memory where there is some: snapshots are written twice a second while learning,
# and a tmpfs makes that a memory copy.
_SHM = Path("/dev/shm")


@dataclass(frozen=True, slots=True)
class RuntimeDir:
    root: Path

    @classmethod
    def create(cls) -> RuntimeDir:
        base = _SHM if _SHM.is_dir() and os.access(_SHM, os.W_OK) else None
        root = Path(tempfile.mkdtemp(prefix="streamlearn-", dir=base))  # mode 0700
        made = cls(root)
        for path in (made.snapshots, made.metrics):
            path.mkdir()
        return made

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    @property
    def metrics(self) -> Path:
        """prometheus-client's multiprocess files of the serving processes."""
        return self.root / "metrics"

    @property
    def learner_socket(self) -> Path:
        return self.root / "learner.sock"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
