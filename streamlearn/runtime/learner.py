"""The learner's side of the process model: what it publishes, what it answers.

:class:`LearnerHost` wraps a :class:`~streamlearn.daemon.Daemon` (which knows nothing of
processes) with:

- a :class:`~.snapshots.SnapshotWriter` as the daemon's snapshot publisher;
- a :class:`~.ipc.LearnerPort` answering serving processes: ``learn`` (labeled samples into
  the daemon's bounded inbox, all or none), ``rows`` (served rows to adapt on, best effort),
  ``served`` (answered rows with an id, kept for their late label, best effort),
  ``checkpoint`` (answered once the learner loop has saved), ``cancel`` (a checkpoint request
  whose client gave up) and ``metrics`` (the learner registry's exposition);
- a status file (progress, learn queue, drift and pool events) rewritten every
  :data:`STATUS_INTERVAL_S` while something changed.

The requests are answered on IPC threads that only touch the inbox (its own lock) and
read frozen progress values: the learner loop never waits for serving.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from streamlearn.core.logging import get_logger
from streamlearn.core.types import Sample
from streamlearn.daemon import Daemon
from streamlearn.runtime.ipc import LearnerPort, Message, Reply
from streamlearn.runtime.launch import EXIT_CRASHED, EXIT_FAILED, EXIT_REJOIN, EXIT_USAGE
from streamlearn.runtime.paths import RuntimeDir
from streamlearn.runtime.snapshots import SnapshotWriter

log = get_logger(__name__)
# Progress changes every learning step; serving reads it for /v1/status. Four times a second
# is as fresh as a human or a dashboard looks, and costs the learner well under 1%.
STATUS_INTERVAL_S = 0.25


class LearnerHost:
    """Runs a daemon as the service's learner: publishes its snapshots and status, answers IPC.

    IPC requests are answered on their own threads, which only touch the inbox.
    """

    def __init__(self, daemon: Daemon, runtime: RuntimeDir) -> None:
        self.daemon = daemon
        self.runtime = runtime
        # The daemon was made before the runtime directory existed: its publisher is swapped
        # for the writer here, before it runs.
        self.writer = SnapshotWriter(runtime.snapshots, daemon.metrics)
        daemon.snapshots = self.writer
        inbox = daemon.inbox
        daemon.metrics.learn_queue_samples.set_function(lambda: inbox.samples)
        self._checkpoints: dict[tuple[int, int], Future[dict[str, Any]]] = {}
        self._port = LearnerPort(runtime.learner_socket, self._handle)
        self._stop_status = threading.Event()
        self._status_thread = threading.Thread(target=self._status_loop, name="status", daemon=True)
        self._last_status = b""

    def run(self) -> None:
        """Learn until the daemon is stopped; serving reaches it once it has restored (a
        serving process counts a connected learner as ready)."""
        threading.Thread(target=self._open_when_restored, name="ipc-open", daemon=True).start()
        try:
            self.daemon.run()
        finally:
            self._stop_status.set()
            if self._status_thread.is_alive():
                self._status_thread.join(2)
            if self.daemon.restored.is_set():
                self.write_status()
            self._port.close()

    def request_stop(self) -> None:
        self.daemon.request_stop()

    def _open_when_restored(self) -> None:
        while not self.daemon.restored.wait(0.1):
            if self.daemon.stopping:
                return
        self._status_thread.start()
        self._port.start()

    # -- requests from serving processes -------------------------------------------------

    def _handle(self, request: Message, reply: Reply) -> None:
        op, id_ = request.get("op"), request.get("id")
        if op == "learn":
            samples = [Sample(**item) for item in request["samples"]]
            inbox = self.daemon.inbox
            accepted = inbox.offer(samples)
            reply(
                {
                    "id": id_,
                    "accepted": len(samples) if accepted else 0,
                    "queued": inbox.samples,
                    "capacity": inbox.capacity,
                    "full": not accepted,
                }
            )
        elif op == "rows":
            dropped = self.daemon.inbox.offer_rows(request["rows"])
            reply({"id": id_, "dropped": dropped})
        elif op == "served":
            dropped = self.daemon.inbox.offer_served(request["rows"])
            reply({"id": id_, "dropped": dropped})
        elif op == "checkpoint":
            self._checkpoint(request, reply)
        elif op == "forget":
            self._forget(request, reply)
        elif op == "cancel":
            future = self._checkpoints.pop((id(reply), int(request["ref"])), None)
            if future is not None:
                future.cancel()
        elif op == "metrics":
            reply({"id": id_, "text": self.daemon.metrics.exposition().decode()})
        else:
            reply({"id": id_, "error": f"unknown op {op!r}"})

    def _forget(self, request: Message, reply: Reply) -> None:
        samples = [Sample(**item) for item in request["samples"]]
        forgotten = self.daemon.inbox.request_forget(samples, request.get("expert"))
        forgotten.add_done_callback(lambda f: reply({"id": request["id"], "result": f.result()}))

    def _checkpoint(self, request: Message, reply: Reply) -> None:
        key = (id(reply), int(request["id"]))
        future = self.daemon.inbox.request_checkpoint()
        self._checkpoints[key] = future

        def done(f: Future[dict[str, Any]]) -> None:
            self._checkpoints.pop(key, None)
            if not f.cancelled():
                reply({"id": request["id"], "result": f.result()})

        future.add_done_callback(done)

    # -- status ------------------------------------------------------------------------------

    def _status_loop(self) -> None:
        while True:
            try:
                self.write_status()
            except OSError as exc:  # the runtime directory went away: nothing to tell
                log.warning("status_write_failed", error=str(exc))
            if self._stop_status.wait(STATUS_INTERVAL_S):
                return

    def write_status(self) -> None:
        daemon = self.daemon
        status = {
            "pid": os.getpid(),
            "progress": plain_progress(daemon.progress),
            "learn_queue": {"samples": daemon.inbox.samples, "capacity": daemon.inbox.capacity},
            "drift_events": daemon.drift_history.recent(),
            "expert_events": daemon.expert_history.recent(),
        }
        body = json.dumps(status, separators=(",", ":")).encode()
        if body == self._last_status:
            return
        tmp = self.runtime.status.with_suffix(".tmp")
        tmp.write_bytes(body)
        os.replace(tmp, self.runtime.status)
        self._last_status = body


def plain_progress(progress: Any) -> dict[str, Any] | None:
    """The learner's progress as JSON-safe data (NaN, meaning "not yet", becomes null)."""
    if not dataclasses.is_dataclass(progress) or isinstance(progress, type):
        return None
    return {
        k: None if isinstance(v, float) and math.isnan(v) else v
        for k, v in dataclasses.asdict(progress).items()
    }


def main() -> int:
    """``python -m streamlearn.runtime.learner``: the learner process of ``streamlearn run``."""
    from streamlearn.core.errors import SettingsError, StreamlearnError
    from streamlearn.core.logging import configure_logging
    from streamlearn.daemon import kafka_daemon
    from streamlearn.runtime.launch import limit_torch_threads, read_launch, watch_parent
    from streamlearn.settings import Settings
    from streamlearn.sync.group import GroupLostError

    launch = read_launch()
    watch_parent()
    try:
        settings = Settings.model_validate(launch["settings"])
    except ValueError as exc:
        log.error("learner_settings_invalid", error=str(exc))
        return EXIT_USAGE
    configure_logging(settings.log.level, settings.log.format)
    limit_torch_threads(settings.engine.torch_threads)
    if settings.engine.nice:
        os.nice(settings.engine.nice)  # serving first where both want the CPU
    _end_on_signals()
    try:
        daemon = kafka_daemon(settings)
        host = LearnerHost(daemon, RuntimeDir(Path(launch["runtime"])))
        daemon.on_restored = lambda: _stop_on_signals(host)
        host.run()
    except SettingsError as exc:
        _print_error(str(exc))
        return EXIT_USAGE
    except StreamlearnError as exc:
        _print_error(str(exc))
        return EXIT_FAILED
    except GroupLostError as exc:
        log.warning("learner_rejoining", reason=str(exc))
        return EXIT_REJOIN
    except Exception:
        log.exception("learner_crashed")
        return EXIT_CRASHED
    return 0


def _end_on_signals() -> None:
    """Until the daemon restored, SIGTERM and SIGINT end the learner at once: it has learned
    nothing and not reached the broker, so a stop has nothing to save, and joining a sync
    group blocks in torch's C++ (connecting to rank 0's store, waiting for the group to
    form) where a Python handler runs only once the call returns, up to ``sync.timeout_s``
    later: past the supervisor's wait, and past a pod's grace period."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop_on_signals(host: LearnerHost) -> None:
    """From the restore on, a signal asks for the graceful stop: learn what is queued,
    checkpoint, commit."""
    import signal

    def handler(signum: int, frame: object) -> None:
        log.info("learner_stop_requested", signal=signal.Signals(signum).name)
        host.request_stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _print_error(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False)


if __name__ == "__main__":
    from streamlearn.runtime.launch import exit_now

    exit_now(main())
