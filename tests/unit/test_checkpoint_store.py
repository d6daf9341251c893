import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from streamlearn.checkpoint import FileCheckpointStore, decode, encode
from streamlearn.checkpoint.format import MAGIC
from streamlearn.core.errors import CheckpointError


def state(n: int) -> dict[str, Any]:
    return {"n": n, "weights": torch.full((3,), float(n))}


def test_save_then_load_latest(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path)
    store.save(state(1))
    path = store.save(state(2))
    loaded = store.load_latest()
    assert loaded is not None
    assert loaded.path == path and loaded.skipped == []
    assert loaded.state["n"] == 2 and torch.equal(loaded.state["weights"], torch.full((3,), 2.0))


def test_keeps_only_the_newest_k(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path, keep=3)
    for n in range(5):
        store.save(state(n))
    names = [p.name for p in store.files()]
    assert names == ["ckpt-000000000003.slck", "ckpt-000000000004.slck", "ckpt-000000000005.slck"]


def test_no_checkpoint_is_none(tmp_path: Path) -> None:
    assert FileCheckpointStore(tmp_path).load_latest() is None


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_damaged_newest_falls_back_to_previous_and_reports(tmp_path: Path, damage: str) -> None:
    reported: list[Path] = []
    store = FileCheckpointStore(tmp_path, on_fallback=lambda p, e: reported.append(p))
    store.save(state(1))
    newest = store.save(state(2))
    data = newest.read_bytes()
    if damage == "truncate":
        newest.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        middle = len(data) - 20
        newest.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
    else:
        newest.write_bytes(b"")
    loaded = store.load_latest()
    assert loaded is not None
    assert loaded.state["n"] == 1
    assert loaded.skipped == [newest] and reported == [newest]


def test_all_damaged_is_none(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path)
    store.save(state(1)).write_bytes(b"garbage")
    assert store.load_latest() is None


def test_partial_writes_are_removed(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path)
    (tmp_path / ".ckpt-000000000001.tmp").write_bytes(b"half")
    assert [p.name for p in store.remove_partial()] == [".ckpt-000000000001.tmp"]
    assert list(tmp_path.iterdir()) == []


class Evil:
    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return (print, ("pwned",))


def test_a_pickled_object_is_refused_even_with_a_valid_checksum() -> None:
    buffer = io.BytesIO()
    torch.save({"format": 1, "evil": Evil()}, buffer)
    import hashlib

    payload = buffer.getvalue()
    crafted = MAGIC + hashlib.sha256(payload).digest() + payload
    with pytest.raises(CheckpointError, match="weights_only"):
        decode(crafted)
    with pytest.raises(CheckpointError):
        decode(MAGIC + b"\x00" * 32 + pickle.dumps({"format": 1}))


def test_encode_decode_round_trip() -> None:
    assert decode(encode({"format": 1, "a": [1, "b"]})) == {"format": 1, "a": [1, "b"]}
