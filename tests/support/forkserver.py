"""Daemon processes forked from one that has already imported streamlearn, for chaos tests
that restart the daemon dozens of times.

A cold ``python -m streamlearn run`` spends 6-7 CPU seconds importing (torch, torch._dynamo
which the first optimizer pulls in, river with scikit-learn and SciPy) before the daemon
exists: 30 restarts would cost over three minutes of a 2-core CI machine for imports alone.
The fork server pays that once. Each :meth:`ForkServer.spawn` forks it; the child takes its
own environment, working directory and log file, then runs what ``python -m streamlearn``
runs (``streamlearn.app.cli.main``), so nothing of a daemon exists in it before it starts: it
restores from the disk and the broker like any new process, and dies as one (SIGKILL,
SIGTERM). Only the interpreter's imports are shared.

:class:`ForkedProcess` answers like the ``subprocess.Popen`` the daemon fixtures use:
``pid``, ``poll``, ``wait``, ``send_signal``, ``kill``; its exit code is negative for a
signal, as Popen's is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

_SERVER = r"""
import json, os, signal, sys
import streamlearn.app.cli, streamlearn.daemon, streamlearn.sources.kafka, streamlearn.sinks.kafka
import torch._dynamo  # imported lazily by the first optimizer: 2-5 s
for name in sys.argv[1:]:
    __import__(name)

def reap(signum, frame):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        os.write(1, f"exit {pid} {code}\n".encode())

signal.signal(signal.SIGCHLD, reap)
os.write(1, b"ready\n")
for line in sys.stdin:
    order = json.loads(line)
    pid = os.fork()
    if pid:
        os.write(1, f"pid {pid}\n".encode())
        continue
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    log = os.open(order["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.chdir(order["cwd"])
    os.environ.clear()
    os.environ.update(order["env"])
    code = 1
    try:
        code = streamlearn.app.cli.main(order["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
"""


class ForkedProcess:
    def __init__(self, server: ForkServer, pid: int) -> None:
        self._server = server
        self.pid = pid

    @property
    def returncode(self) -> int | None:
        return self._server.exits.get(self.pid)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._server.changed:
            while self.pid not in self._server.exits:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0)
                self._server.changed.wait(left)
        return self._server.exits[self.pid]

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # never signal a reaped pid: it may be someone else's now
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class ForkServer:
    """One pre-imported interpreter; ``preload`` names more modules for it to import."""

    def __init__(self, root: Path, preload: tuple[str, ...] = ()) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER, *preload],
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        first = self._proc.stdout.readline()
        assert first == b"ready\n", f"the fork server did not start: {first!r}"
        self.exits: dict[int, int] = {}
        self.changed = threading.Condition()
        self._pids: list[int] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="forkserver", daemon=True)
        self._reader.start()
        self.children: list[ForkedProcess] = []

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            kind, pid, *rest = line.decode().split()
            with self.changed:
                if kind == "pid":
                    self._pids.append(int(pid))
                else:
                    self.exits[int(pid)] = int(rest[0])
                self.changed.notify_all()

    def spawn(self, argv: list[str], env: Mapping[str, str], cwd: Path, log: Path) -> ForkedProcess:
        """Fork a child running ``streamlearn <argv>``; its output goes to ``log``."""
        assert self._proc.stdin is not None
        with self._lock:
            with self.changed:
                known = len(self._pids)
            order = {"argv": argv, "env": dict(env), "cwd": str(cwd), "log": str(log)}
            self._proc.stdin.write(json.dumps(order).encode() + b"\n")
            self._proc.stdin.flush()
            with self.changed:
                self.changed.wait_for(lambda: len(self._pids) > known, 30)
                child = ForkedProcess(self, self._pids[known])
        self.children.append(child)
        return child

    def close(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
        self._proc.kill()
        self._proc.wait()
