"""check_checkpoint_store passes FileCheckpointStore (keeping 3 files, or 1) and rejects a
twin of it that breaks exactly one promise, naming that promise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamlearn.checkpoint import FileCheckpointStore, LoadedCheckpoint
from streamlearn.checkpoint.format import FORMAT_VERSION, encode
from streamlearn.checkpoint.store import load_file
from streamlearn.testing import check_checkpoint_store


@pytest.mark.parametrize("keep", [3, 1])
def test_file_store_keeps_every_promise(tmp_path: Path, keep: int) -> None:
    check_checkpoint_store(lambda directory: FileCheckpointStore(directory, keep), tmp_path)


class LosesLineage(FileCheckpointStore):
    def save(self, state: dict[str, Any]) -> Path:
        return super().save({k: v for k, v in state.items() if k != "lineage"})


class Amnesiac(FileCheckpointStore):
    """Sees only the files it wrote itself: a restart finds nothing."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.mine: set[Path] = set()

    def save(self, state: dict[str, Any]) -> Path:
        path = super().save(state)
        self.mine.add(path)
        return path

    def files(self) -> list[Path]:
        return [p for p in super().files() if p in self.mine]


class OldestWins(FileCheckpointStore):
    def load_latest(self) -> LoadedCheckpoint | None:
        files = self.files()
        return LoadedCheckpoint(files[0], load_file(files[0]), []) if files else None


class WritesInPlace(FileCheckpointStore):
    def save(self, state: dict[str, Any]) -> Path:
        path = self.directory / f"ckpt-{len(self.files()) + 1:012d}.slck"
        path.write_bytes(encode({**state, "format": FORMAT_VERSION, "created_at": 0.0}))
        return path


class KeepsLeftovers(FileCheckpointStore):
    def remove_partial(self) -> list[Path]:
        return []


class NoFallback(FileCheckpointStore):
    def load_latest(self) -> LoadedCheckpoint | None:
        files = self.files()
        return LoadedCheckpoint(files[-1], load_file(files[-1]), []) if files else None


class SilentFallback(FileCheckpointStore):
    def load_latest(self) -> LoadedCheckpoint | None:
        loaded = super().load_latest()
        return None if loaded is None else LoadedCheckpoint(loaded.path, loaded.state, [])


class IgnoresProtection(FileCheckpointStore):
    def protect(self, path: Path | None) -> None:
        pass


TWINS: list[tuple[type[FileCheckpointStore], str]] = [
    (LosesLineage, r"^round trip: the loaded state lacks 'lineage'"),
    (Amnesiac, r"^round trip: load_latest\(\) is None after a save"),
    (OldestWins, r"^latest wins: load_latest\(\) read .*ckpt-000000000001.slck, the newest is"),
    (WritesInPlace, r"^atomic: save made its file visible without renaming it into place"),
    (KeepsLeftovers, r"^atomic: remove_partial\(\) found nothing after a crashed save"),
    (NoFallback, r"^fallback \(a flipped byte\): raised CheckpointError: checksum mismatch"),
    (SilentFallback, r"^fallback \(a flipped byte\): skipped \[\], not the damaged"),
    (IgnoresProtection, r"^protect: the protected ckpt-000000000001.slck was pruned"),
]


@pytest.mark.parametrize("twin, promise", TWINS, ids=[twin.__name__ for twin, _ in TWINS])
def test_a_twin_that_breaks_one_promise_is_rejected_for_it(
    tmp_path: Path, twin: type[FileCheckpointStore], promise: str
) -> None:
    with pytest.raises(AssertionError, match=promise):
        check_checkpoint_store(twin, tmp_path)
