"""The service's children: the learner (a process, or a thread of this one) and the
serving processes, each started, watched and stopped by the supervisor.

Restarts back off from :data:`RESTART_MIN_S` to :data:`RESTART_MAX_S`, doubling while a child
keeps dying within :data:`HEALTHY_S` of its start: a child that crashes at once must not spin
the machine, one that ran for a while comes back quickly.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import multiprocess

from streamlearn.core.logging import get_logger
from streamlearn.runtime.launch import EXIT_CRASHED, settings_document, spawn
from streamlearn.runtime.paths import RuntimeDir
from streamlearn.settings import Settings

if TYPE_CHECKING:  # the supervisor of ``streamlearn run`` never imports torch
    from streamlearn.daemon import Daemon
    from streamlearn.runtime.learner import LearnerHost

log = get_logger(__name__)
RESTART_MIN_S, RESTART_MAX_S, HEALTHY_S = 0.5, 10.0, 30.0
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Backoff:
    """When a child that exited may start again."""

    def __init__(self) -> None:
        self.delay = RESTART_MIN_S
        self.started = time.monotonic()
        self.due: float | None = None

    def exited(self) -> float:
        """The child exited now: the delay before it may start again."""
        now = time.monotonic()
        if now - self.started >= HEALTHY_S:
            self.delay = RESTART_MIN_S
        delay, self.delay = self.delay, min(self.delay * 2, RESTART_MAX_S)
        self.due = now + delay
        return delay

    def ready(self) -> bool:
        if self.due is None or time.monotonic() < self.due:
            return False
        self.due, self.started = None, time.monotonic()
        return True


class Learner(Protocol):
    """The supervisor's handle on the learner, whether it runs as a thread or a process."""

    settings: Settings
    restartable: bool

    def start(self, runtime: RuntimeDir) -> None: ...
    def request_stop(self) -> None: ...
    def exit_code(self) -> int | None: ...  # None while it runs
    def join(self, timeout_s: float) -> int | None: ...
    def kill(self) -> None: ...


class ThreadLearner:
    """The learner in this process (tests, the demo, tools that look inside the daemon)."""

    restartable = False

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.settings = daemon.settings
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self, runtime: RuntimeDir) -> None:
        from streamlearn.runtime.learner import LearnerHost

        host = LearnerHost(self.daemon, runtime)
        self._thread = threading.Thread(target=self._run, args=(host,), name="learner", daemon=True)
        self._thread.start()

    def _run(self, host: LearnerHost) -> None:
        try:
            host.run()
        except BaseException as exc:  # handed to Service.run, which re-raises it
            self.error = exc

    def request_stop(self) -> None:
        self.daemon.request_stop()

    def exit_code(self) -> int | None:
        if self._thread is None or self._thread.is_alive():
            return None
        return EXIT_CRASHED if self.error is not None else 0

    def join(self, timeout_s: float) -> int | None:
        if self._thread is not None:
            self._thread.join(timeout_s)
        return self.exit_code()

    def kill(self) -> None:
        self.daemon.request_stop()  # a thread cannot be killed; it stops at its next step


class ProcessLearner:
    """The learner as its own process: ``streamlearn run``."""

    restartable = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, runtime: RuntimeDir) -> None:
        env = {k: v for k, v in os.environ.items() if k != _MULTIPROC_ENV}
        self.process = spawn(
            "streamlearn.runtime.learner",
            {"settings": settings_document(self.settings), "runtime": str(runtime.root)},
            env=env,
        )
        log.info("learner_started", pid=self.process.pid)

    def request_stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def exit_code(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    def join(self, timeout_s: float) -> int | None:
        if self.process is None:
            return 0
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class ServerPool:
    """``serve.workers`` serving processes on one HTTP socket and one gRPC port."""

    def __init__(
        self,
        settings: Settings,
        runtime: RuntimeDir,
        http_socket: socket.socket,
        grpc_port: int | None,
    ) -> None:
        self.runtime = runtime
        self._launch: dict[str, Any] = {
            "settings": settings_document(settings),
            "runtime": str(runtime.root),
            "http_fd": http_socket.fileno(),
            "grpc_port": grpc_port,
        }
        self._env = {**os.environ, _MULTIPROC_ENV: str(runtime.metrics)}
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * settings.serve.workers
        self._backoff = [Backoff() for _ in self.processes]
        self.restarts = 0

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p is not None and p.poll() is None]

    def start(self) -> None:
        for index in range(len(self.processes)):
            self._start(index)

    def _start(self, index: int) -> None:
        child = spawn(
            "streamlearn.runtime.worker",
            {**self._launch, "index": index},
            pass_fds=[int(self._launch["http_fd"])],
            env=self._env,
        )
        self.processes[index] = child
        log.info("serving_process_started", index=index, pid=child.pid)

    def check(self) -> None:
        """Restart serving processes that died, each after its backoff."""
        for index, child in enumerate(self.processes):
            backoff = self._backoff[index]
            if child is not None and (code := child.poll()) is not None:
                _forget(child.pid, self.runtime)
                delay = backoff.exited()
                log.error(
                    "serving_process_exited",
                    index=index,
                    pid=child.pid,
                    exit_code=code,
                    restart_in_s=delay,
                )
                self.processes[index] = None
            if self.processes[index] is None and backoff.ready():
                self.restarts += 1
                self._start(index)

    def stop(self, timeout_s: float) -> None:
        """SIGTERM every serving process (each drains), SIGKILL what is left after
        ``timeout_s``."""
        alive = [p for p in self.processes if p is not None and p.poll() is None]
        for child in alive:
            child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in alive:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("serving_process_killed", pid=child.pid, after_s=timeout_s)
                child.kill()
                child.wait()
        for gone in self.processes:
            if gone is not None:
                _forget(gone.pid, self.runtime)
        self.processes = [None] * len(self.processes)

    def kill(self) -> None:
        for child in self.processes:
            if child is not None and child.poll() is None:
                child.kill()


def _forget(pid: int, runtime: RuntimeDir) -> None:
    """Drop a dead serving process's live gauges (its counters keep counting in the sums)."""
    multiprocess.mark_process_dead(pid, str(runtime.metrics))  # type: ignore[no-untyped-call]
