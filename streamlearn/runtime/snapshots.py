"""Snapshots through files: the learner writes them, every serving process reads them.

The directory lives in shared memory (``/dev/shm`` where there is one), so a publish is a
memory copy, and a serving process that restarts finds the newest snapshot at once without
asking the learner. Layout:

- ``experts/<generation>-<id>-<stamp>.pt``: one expert's weights, written once per stamp;
- ``head.pt``: the head naming each expert's stamp, replaced atomically (tmp, rename) after
  the expert files it names exist;
- ``fresh``: touched when the learner confirms the head is still current (its mtime is what
  ``streamlearn_snapshot_age_seconds`` counts from).

Readers poll ``head.pt``'s inode and mtime every few milliseconds and load a changed head
with ``torch.load(weights_only=True)``; expert files are kept until two newer heads replaced
the one naming them, so a reader that is between reading a head and its experts finds them.
A read that fails anyway (a learner restart removed them) is retried at the next poll.
"""

from __future__ import annotations

import io
import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from streamlearn.core.logging import get_logger
from streamlearn.core.protocols import StateDict
from streamlearn.serve.frozen import Assembler, expert_weights, snapshot_head
from streamlearn.serve.snapshot import Snapshot

if TYPE_CHECKING:
    from streamlearn.core.engine import Engine
    from streamlearn.metrics import Metrics

log = get_logger(__name__)
HEAD, FRESH, EXPERTS = "head.pt", "fresh", "experts"


class SnapshotWriter:
    """The learner's side: ``publish_from(engine)`` after learning, as the daemon calls it."""

    def __init__(self, directory: Path, metrics: Metrics | None = None) -> None:
        self.directory = directory
        self.generation = uuid.uuid4().hex[:12]
        self.version: int | None = None  # the version in head.pt
        self.published_at: float | None = None  # wall clock of the last new head
        self._metrics = metrics
        self._experts = directory / EXPERTS
        self._experts.mkdir(parents=True, exist_ok=True)
        (directory / FRESH).touch()
        self._heads: list[set[str]] = []  # expert files named by the latest heads
        self._written: set[str] = set()

    def publish_from(self, engine: Engine) -> int | None:
        """Write ``engine``'s snapshot unless it is already there; the version served."""
        if self.version is not None and self.version == engine.version:
            os.utime(self.directory / FRESH)
            return self.version
        try:
            written = self._write(engine)
        except Exception as exc:  # a failed publish leaves the previous snapshot serving
            log.error("snapshot_failed", error=repr(exc), version=engine.version)
            self._count("failed")
            return self.version
        if written:
            self._count("ok")
        return self.version

    def _write(self, engine: Engine) -> bool:
        head = snapshot_head(engine, self.generation)
        if head is None:
            return False
        assert engine.pool is not None
        names = set()
        for id_, stamp in head["stamps"].items():
            name = self.expert_file(id_, stamp)
            names.add(name)
            if name not in self._written:
                _save_atomic(expert_weights(engine.pool.members[id_].expert), self._experts / name)
                self._written.add(name)
        _save_atomic(head, self.directory / HEAD)
        os.utime(self.directory / FRESH)
        self.version, self.published_at = engine.version, float(head["created"])
        self._collect(names)
        return True

    def expert_file(self, id_: str, stamp: str) -> str:
        return f"{self.generation}-{id_}-{stamp}.pt"

    def _collect(self, names: set[str]) -> None:
        """Remove expert files no head among the latest three names (or an older run's)."""
        self._heads = [*self._heads[-2:], names]
        keep = set().union(*self._heads)
        for path in self._experts.iterdir():
            if path.name not in keep:
                path.unlink(missing_ok=True)
        self._written &= keep

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.snapshot_publishes.labels(result=result).inc()


class SnapshotReader:
    """A serving process's side: :meth:`poll` returns a new snapshot when there is one."""

    def __init__(self, directory: Path, assembler: Assembler) -> None:
        self.directory = directory
        self.assembler = assembler
        self._key: tuple[int, int] | None = None
        self._failures = 0

    def fresh_at(self) -> float | None:
        """Wall clock at which the learner last confirmed its snapshot current."""
        try:
            return os.stat(self.directory / FRESH).st_mtime
        except FileNotFoundError:
            return None

    def poll(self) -> Snapshot | None:
        try:
            stat = os.stat(self.directory / HEAD)
        except FileNotFoundError:
            return None
        key = (stat.st_ino, stat.st_mtime_ns)
        if key == self._key:
            return None
        try:
            snapshot = self._load()
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            self._failures += 1
            if self._failures % 100 == 1:  # a learner restart explains one; many are a fault
                log.warning("snapshot_read_failed", error=repr(exc), failures=self._failures)
            return None
        self._key = key
        return snapshot

    def _load(self) -> Snapshot:
        head = _load(self.directory / HEAD)
        generation = str(head["generation"])

        def weights_of(id_: str, stamp: str) -> StateDict:
            return _load(self.directory / EXPERTS / f"{generation}-{id_}-{stamp}.pt")

        return self.assembler.assemble(head, weights_of)


def _save_atomic(state: Any, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buffer.getbuffer())
    os.replace(tmp, path)  # shared memory: no fsync, a crash loses it with the process


def _load(path: Path) -> StateDict:
    loaded: StateDict = torch.load(
        io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True
    )
    return loaded


def monotonic_from_wall(wall: float) -> float:
    """A wall-clock moment on this process's monotonic clock."""
    return time.monotonic() - (time.time() - wall)
