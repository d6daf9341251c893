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
_PREFIX = "streamlearn-"
_OWNER = "supervisor.pid"


@dataclass(frozen=True, slots=True)
class RuntimeDir:
    """The private directory one service's processes share: snapshots, metrics, socket, status.

    Made and removed by the supervisor (``Service``).
    """

    root: Path

    @classmethod
    def create(cls) -> RuntimeDir:
        base = _SHM if _SHM.is_dir() and os.access(_SHM, os.W_OK) else Path(tempfile.gettempdir())
        remove_orphans(base)
        root = Path(tempfile.mkdtemp(prefix=_PREFIX, dir=base))  # mode 0700
        made = cls(root)
        for path in (made.snapshots, made.metrics):
            path.mkdir()
        (root / _OWNER).write_text(str(os.getpid()))
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


def remove_orphans(base: Path) -> list[Path]:
    """Remove runtime directories whose supervisor is gone (killed with SIGKILL, it could
    not clean up): in shared memory they would hold RAM until the machine restarts."""
    removed = []
    for root in base.glob(f"{_PREFIX}*"):
        try:
            pid = int((root / _OWNER).read_text())
        except (OSError, ValueError):
            continue  # not ours, or still being made
        if not _alive(pid):
            shutil.rmtree(root, ignore_errors=True)
            removed.append(root)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: not ours to judge
    return True
