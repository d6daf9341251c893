"""A checkpoint directory whose disk is full, without root: ``/dev/full`` in place of the
file the next checkpoint writes.

The checkpoint store writes ``.ckpt-<seq>.tmp`` (seq = newest complete file's + 1), then
renames it. With that name a symbolic link to ``/dev/full``, ``open`` succeeds and the
write fails with ENOSPC, "No space left on device", exactly as on a full volume, and only
for the checkpoint directory (snapshots in /dev/shm, logs and everything else still
write, as they would beside a full checkpoint volume). Links for the next few seqs stand
in case a checkpoint lands between reading the directory and making them; a checkpoint
already being written as the disk fills lands first; and a keeper thread puts back any
link that a restart's cleanup of stray ``.tmp`` files removes, so the disk stays full until
:meth:`free`. Works for any user, root included (a read-only directory
does not stop root; a small tmpfs needs root; RLIMIT_FSIZE would also fail the daemon's
other files).
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

_COMPLETE = re.compile(r"^ckpt-(\d{12})\.slck$")
FULL_DEVICE = "/dev/full"


class FullDisk:
    def __init__(self, directory: Path, ahead: int = 3) -> None:
        assert os.path.exists(FULL_DEVICE), f"{FULL_DEVICE} is missing on this machine"
        self.directory = Path(directory)
        self.ahead = ahead
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def newest_seq(self) -> int:
        found = [
            int(m.group(1)) for p in self.directory.iterdir() if (m := _COMPLETE.match(p.name))
        ]
        return max(found, default=0)

    def _links(self) -> list[Path]:
        first = self.newest_seq() + 1
        return [
            self.directory / f".ckpt-{seq:012d}.tmp" for seq in range(first, first + self.ahead)
        ]

    def _linked(self) -> bool:
        """Link the next seqs' names; False while a checkpoint being written holds one (its
        ``.tmp`` is a real file: it is let land, never unlinked under its writer, which
        would then rename the link into place as a complete checkpoint)."""
        for link in self._links():
            if link.is_symlink():
                continue
            try:
                os.symlink(FULL_DEVICE, link)
            except FileExistsError:
                return False
        return True

    def _keep(self) -> None:
        while not self._stop.wait(0.01):
            self._linked()

    def fill(self, timeout_s: float = 10.0) -> FullDisk:
        """The disk is full from the return on: a checkpoint being written meanwhile lands
        first, so the newest complete file stays the newest until :meth:`free`."""
        deadline = time.monotonic() + timeout_s
        while not self._linked():
            assert time.monotonic() < deadline, f"a checkpoint write held on for {timeout_s} s"
            time.sleep(0.005)
        self._stop.clear()
        self._thread = threading.Thread(target=self._keep, name="full-disk", daemon=True)
        self._thread.start()
        return self

    def free(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for path in self.directory.glob(".ckpt-*.tmp"):
            if path.is_symlink():
                path.unlink()
