"""What every checkpoint store must do: restarts are effectively-once only if it does.

:func:`check_checkpoint_store` holds a store to these promises, each in a fresh directory:

- **empty**: a new store has no files, ``load_latest`` is None, ``remove_partial`` removes
  nothing;
- **round trip**: ``save`` returns a file that ``files`` lists; ``load_latest`` returns that
  path, nothing skipped, and a state holding every key saved with an equal value (tensors
  included; a store may add keys of its own); a new store over the same directory loads it;
- **latest wins**: after two saves ``load_latest`` returns the second, and ``files`` lists
  oldest first;
- **atomic**: a save interrupted before its file is renamed into place (a crash; simulated
  by making ``os.replace`` and ``os.rename`` fail) leaves the previous checkpoint the
  latest and ``files`` unchanged; ``remove_partial`` then deletes what it left and says so;
  the next save becomes the latest;
- **fallback**: a newest file with a flipped byte, or cut short (a torn write), is skipped,
  reported in ``skipped``, and the previous one loaded; with every file damaged
  ``load_latest`` is None while ``files`` still lists them;
- **protect**: a protected file outlives more saves than the store keeps, and is pruned
  again once another is protected (the last id a whole group saved, docs/scaling.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn
from unittest import mock

import torch

from streamlearn.core.protocols import CheckpointStore, StateDict
from streamlearn.core.types import LoadedCheckpoint
from streamlearn.testing.common import promise, same


class _Crash(BaseException):
    """The process dying mid-save: a BaseException, so no store code catches it."""


def check_checkpoint_store(make: Callable[[Path], CheckpointStore], root: Path) -> None:
    """Raise AssertionError naming the first broken promise of the stores ``make`` builds.

    ``make(directory)`` builds a store over ``directory`` (created empty for each promise,
    under ``root``); called again with the same directory it must see the same checkpoints.
    It must keep at least two files for the fallback promise to be checked in full.
    """
    with promise("empty"):
        store = make(_fresh(root, "empty"))
        assert store.files() == [], f"files() of a new store: {store.files()}"
        assert store.load_latest() is None, "load_latest() of a new store is not None"
        assert store.remove_partial() == [], "remove_partial() removed something from nothing"
    with promise("round trip"):
        _round_trip(make, _fresh(root, "round-trip"))
    with promise("latest wins"):
        _latest_wins(make(_fresh(root, "latest")))
    with promise("atomic"):
        _interrupted_save_is_never_loaded(make(_fresh(root, "atomic")))
    for damage in (_flip_a_byte, _cut_short):
        with promise(f"fallback ({damage.__doc__})"):
            _damaged_newest_falls_back(make(_fresh(root, damage.__name__)), damage)
    with promise("protect"):
        _protected_outlives_pruning(make(_fresh(root, "protect")))


def _state(n: int) -> StateDict:
    """A checkpoint-like state, different for each ``n``."""
    return {
        "offsets": [["in", 0, 10 * n], ["in", 1, 10 * n + 1]],
        "lineage": f"lineage-{n}",
        "engine": {"weights": torch.full((3, 2), float(n)), "steps": n, "labels": ["a", "b"]},
    }


def _fresh(root: Path, name: str) -> Path:
    directory = Path(root) / name
    directory.mkdir(parents=True, exist_ok=False)
    return directory


def _holds(loaded: LoadedCheckpoint | None, saved: StateDict, path: Path | None = None) -> None:
    assert loaded is not None, "load_latest() is None after a save"
    if path is not None:
        assert loaded.path == path, f"load_latest() read {loaded.path}, the newest is {path}"
    for key, value in saved.items():
        assert key in loaded.state, f"the loaded state lacks {key!r}"
        assert same(loaded.state[key], value), f"{key!r} loaded as {loaded.state[key]!r}"


def _round_trip(make: Callable[[Path], CheckpointStore], directory: Path) -> None:
    store = make(directory)
    path = store.save(_state(1))
    assert path.exists() and path in store.files(), f"save returned {path}, not a listed file"
    loaded = store.load_latest()
    _holds(loaded, _state(1), path)
    assert loaded is not None and loaded.skipped == [], f"skipped {loaded and loaded.skipped}"
    _holds(make(directory).load_latest(), _state(1), path)


def _latest_wins(store: CheckpointStore) -> None:
    first, second = store.save(_state(1)), store.save(_state(2))
    files = store.files()
    assert files and files[-1] == second, f"files() {files} do not end with the newest {second}"
    assert first not in files or files.index(first) < files.index(second), (
        f"files() {files} are not oldest first"
    )
    _holds(store.load_latest(), _state(2), second)


def _interrupted_save_is_never_loaded(store: CheckpointStore) -> None:
    kept = store.save(_state(1))
    before = store.files()
    with _crash_on_rename():
        try:
            store.save(_state(2))
        except _Crash:
            pass
        else:
            raise AssertionError("save made its file visible without renaming it into place")
    assert store.files() == before, f"files() after a crashed save: {store.files()}"
    _holds(store.load_latest(), _state(1), kept)
    removed = store.remove_partial()
    assert removed, "remove_partial() found nothing after a crashed save"
    assert not any(p.exists() for p in removed), "remove_partial() left files it reported"
    assert store.files() == before, "remove_partial() removed a complete checkpoint"
    newest = store.save(_state(3))
    _holds(store.load_latest(), _state(3), newest)


@contextmanager
def _crash_on_rename() -> Iterator[None]:
    def crash(*args: Any, **kwargs: Any) -> NoReturn:
        raise _Crash

    with mock.patch.object(os, "replace", crash), mock.patch.object(os, "rename", crash):
        yield


def _flip_a_byte(path: Path) -> None:
    """a flipped byte"""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _cut_short(path: Path) -> None:
    """a torn write"""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _damaged_newest_falls_back(store: CheckpointStore, damage: Callable[[Path], None]) -> None:
    older, newest = store.save(_state(1)), store.save(_state(2))
    damage(newest)
    loaded = store.load_latest()
    if older in store.files():
        _holds(loaded, _state(1), older)
        assert loaded is not None and loaded.skipped == [newest], (
            f"skipped {loaded and loaded.skipped}, not the damaged {newest}"
        )
        damage(older)
    assert store.load_latest() is None, "load_latest() loaded a damaged file"
    assert newest in store.files(), "files() stopped listing a damaged file"


__all__ = ["check_checkpoint_store"]


# More saves than any store here keeps (the shipped checkpoint.keep is 3).
_MANY_SAVES = 12


def _protected_outlives_pruning(store: CheckpointStore) -> None:
    kept = store.save(_state(1))
    store.protect(kept)
    for n in range(2, _MANY_SAVES):
        store.save(_state(n))
    assert kept in store.files(), f"the protected {kept.name} was pruned"
    store.protect(store.files()[-1])
    for n in range(_MANY_SAVES, 2 * _MANY_SAVES):
        store.save(_state(n))
    assert kept not in store.files(), f"{kept.name}, no longer protected, was never pruned"
