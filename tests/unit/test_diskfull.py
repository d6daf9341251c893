"""The reliability suite's full disk (tests/support/diskfull.py) fills only between two
checkpoints: a write already under way as it fills lands, and every later one fails."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from tests.support.diskfull import FULL_DEVICE, FullDisk


def test_a_checkpoint_being_written_as_the_disk_fills_lands_first(tmp_path: Path) -> None:
    (tmp_path / "ckpt-000000000004.slck").write_bytes(b"complete")
    writing = tmp_path / ".ckpt-000000000005.tmp"
    writing.write_bytes(b"half")  # the daemon's write of seq 5, under way
    disk = FullDisk(tmp_path)
    filled = threading.Event()

    def fill() -> None:
        disk.fill()
        filled.set()

    filler = threading.Thread(target=fill)
    filler.start()
    try:
        assert not filled.wait(0.2), "filled while a checkpoint was being written"
        assert not writing.is_symlink()  # never unlinked under its writer
        os.replace(writing, tmp_path / "ckpt-000000000005.slck")  # it lands
        assert filled.wait(5)
        links = sorted(p.name for p in tmp_path.glob(".ckpt-*.tmp"))
        assert links == [f".ckpt-00000000000{seq}.tmp" for seq in (6, 7, 8)]
        assert all(os.readlink(tmp_path / name) == FULL_DEVICE for name in links)
        assert (tmp_path / "ckpt-000000000005.slck").read_bytes() == b"half"
    finally:
        filler.join(5)
        disk.free()
    assert list(tmp_path.glob(".ckpt-*.tmp")) == []
