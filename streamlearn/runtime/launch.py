"""Starting a child process of the service: no pickling, settings on standard input.

A child is ``python -m <module>`` with a JSON launch document on its standard input (the
settings with their secrets, the runtime directory, inherited file descriptors), in its own
session so a terminal's Ctrl-C reaches only the supervisor, which stops the children in
order. A child also asks the kernel for SIGKILL when its parent dies (Linux): a supervisor
killed with SIGKILL takes the whole service down with it, as a killed container would, and
leaves no orphan serving stale answers, holding the ports, or checkpointing beside the
learner of the next start.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from streamlearn.settings import Settings

_PR_SET_PDEATHSIG = 1
# Exit codes of the learner process. The supervisor stops the service on a deliberate
# failure (bad settings, a checkpoint from other settings: a restart would fail the same
# way) and restarts the learner on anything else (a bug, SIGKILL, out of memory).
EXIT_FAILED, EXIT_USAGE, EXIT_CRASHED = 1, 2, 70
# A scale-out replica's generation of its group ended (a peer lost, left or joined): the
# learner starts again and joins the next (docs/scaling.md). sysexits' EX_TEMPFAIL.
EXIT_REJOIN = 75


def settings_document(settings: Settings) -> dict[str, Any]:
    """The settings as plain JSON data, secrets included (they travel over a pipe only)."""
    document: dict[str, Any] = json.loads(
        json.dumps(settings.model_dump(mode="python"), default=_plain)
    )
    return document


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot send {type(value).__name__} to a child process")


def spawn(
    module: str,
    launch: Mapping[str, Any],
    pass_fds: Sequence[int] = (),
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(
        [sys.executable, "-m", module],
        stdin=subprocess.PIPE,
        pass_fds=tuple(pass_fds),
        env=dict(env) if env is not None else None,
        start_new_session=True,
    )
    assert child.stdin is not None
    try:
        child.stdin.write(json.dumps(launch).encode())
        child.stdin.close()
    except BrokenPipeError:
        pass  # it died at once; the supervisor sees its exit code
    return child


def read_launch() -> dict[str, Any]:
    launch: dict[str, Any] = json.loads(sys.stdin.buffer.read())
    return launch


def watch_parent() -> None:
    """SIGKILL this process when its parent dies (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)


def limit_torch_threads(threads: int) -> None:
    """``threads`` intra-op threads for this process's torch (0: leave torch's default)."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def exit_now(code: int) -> None:
    """End a child process at once, skipping the interpreter's teardown.

    By the time a child's main returns, everything durable is done (checkpoint fsynced,
    consumer and producer closed, sockets shut). What is left is torch's finalizers, which
    measured 3-5 s on 2 busy cores: SIGTERM to exit must stay well inside a grace period.
    """
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
