"""Checkpoint files in one directory: atomic writes, keep the newest K, fall back on damage.

Write order (each step must finish before the next, see docs/operations.md):

1. write ``.ckpt-<seq>.tmp``; flush; fsync the file;
2. ``os.replace`` it to ``ckpt-<seq>.slck``; fsync the directory, so the rename survives a
   power cut;
3. delete all but the newest ``keep`` files.

Only then may the caller commit the same offsets to Kafka. A crash anywhere leaves either
the previous newest file or the new one complete; a stray ``.tmp`` is removed on start.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamlearn.checkpoint.format import FORMAT_VERSION, decode, encode
from streamlearn.core.errors import CheckpointError
from streamlearn.core.logging import get_logger
from streamlearn.core.types import LoadedCheckpoint

if TYPE_CHECKING:
    from streamlearn.core.protocols import CheckpointStore

log = get_logger(__name__)

_NAME = re.compile(r"^ckpt-(\d{12})\.slck$")


class FileCheckpointStore:
    """Writes checkpoints atomically into one directory and reads back the newest sound one.

    A file is visible under its final name only once complete and fsynced; a torn or corrupt
    one is skipped, never loaded.
    """

    def __init__(
        self,
        directory: Path,
        keep: int = 3,
        on_fallback: Callable[[Path, str], None] | None = None,
        write_delay_s: float = 0.0,
    ) -> None:
        self.directory = Path(directory)
        self.keep = keep
        self._on_fallback = on_fallback
        # Test hook only: widens the window between writing and renaming, so crash tests
        # can land a SIGKILL inside a checkpoint write.
        self._write_delay_s = write_delay_s
        self._protected: Path | None = None
        self.directory.mkdir(parents=True, exist_ok=True)

    def files(self) -> list[Path]:
        """Complete checkpoint files, oldest first."""
        return sorted(p for p in self.directory.iterdir() if _NAME.match(p.name))

    def remove_partial(self) -> list[Path]:
        """Delete leftovers of an interrupted write; returns what was removed."""
        stale = [p for p in self.directory.glob(".ckpt-*.tmp")]
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def save(self, state: dict[str, Any]) -> Path:
        data = encode({**state, "format": FORMAT_VERSION, "created_at": time.time()})
        final = self.directory / f"ckpt-{self._next_seq():012d}.slck"
        tmp = self.directory / f".{final.stem}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            if self._write_delay_s:
                time.sleep(self._write_delay_s)
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        _fsync_dir(self.directory)
        self._prune()
        return final

    def load_latest(self) -> LoadedCheckpoint | None:
        """The newest checkpoint that verifies, or None when there is none at all."""
        skipped: list[Path] = []
        for path in reversed(self.files()):
            try:
                state = load_file(path)
            except CheckpointError as exc:
                log.warning("checkpoint_damaged", path=str(path), error=str(exc))
                skipped.append(path)
                if self._on_fallback is not None:
                    self._on_fallback(path, str(exc))
                continue
            return LoadedCheckpoint(path, state, skipped)
        return None

    def _next_seq(self) -> int:
        existing = self.files()
        if not existing:
            return 1
        match = _NAME.match(existing[-1].name)
        assert match is not None
        return int(match.group(1)) + 1

    def protect(self, path: Path | None) -> None:
        self._protected = None if path is None else Path(path)

    def _prune(self) -> None:
        for path in self.files()[: -self.keep]:
            if path != self._protected:
                path.unlink(missing_ok=True)


if (
    TYPE_CHECKING
):  # mypy holds FileCheckpointStore to CheckpointStore (see streamlearn.core.protocols)

    def _conforms(store: FileCheckpointStore) -> CheckpointStore:
        return store


def load_file(path: Path) -> dict[str, Any]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror})") from None
    return decode(data)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
