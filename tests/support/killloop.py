"""The kill -9 loop's scaffolding, shared by the exactly-once tests (RELIABILITY.md A and
the late-label kill test): wait for the first checkpoint, restart after a kill and find the
restored checkpoint, run to the end and check that the daemon caught up and exits cleanly.
"""

from __future__ import annotations

from typing import Any, Protocol

from tests.support.waiting import wait_for


class Killable(Protocol):
    """What the loop uses of a daemon (tests/reliability/conftest.py's ReliableDaemon)."""

    def start(self, cold: bool = False) -> Any: ...

    def kill(self) -> None: ...

    def terminate(self, timeout: float = 15.0) -> tuple[int, float]: ...

    def metric(self, name: str) -> float | None: ...

    def metrics(self) -> dict[str, float]: ...

    def event(self, name: str, start: int | None = None) -> dict[str, Any] | None: ...

    def wait_event(self, name: str, timeout: float = 30.0) -> dict[str, Any]: ...


def caught_up(daemon: Killable, lag_series: int) -> bool:
    """Every one of the ``lag_series`` partitions consumed (all topics read) has no lag, and
    nothing waits in the input buffer."""
    metrics = daemon.metrics()
    lags = [v for k, v in metrics.items() if k.startswith("streamlearn_consumer_lag{")]
    return (
        len(lags) == lag_series
        and sum(lags) == 0
        and metrics.get("streamlearn_buffered_samples") == 0
    )


def start_and_checkpoint(daemon: Killable) -> None:
    """The first start; every restart must find a checkpoint, so the first kill waits for
    one."""
    daemon.start()
    daemon.wait_event("daemon_ready")
    wait_for(
        lambda: (daemon.metric('streamlearn_checkpoints_total{result="ok"}') or 0) >= 1,
        60,
        "the first checkpoint",
    )


def restart(daemon: Killable, what: object = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """Start after a kill: its ``daemon_ready`` and ``checkpoint_restored`` events."""
    daemon.start()
    ready = daemon.wait_event("daemon_ready")
    restored = daemon.event("checkpoint_restored")
    assert restored is not None, f"restart {what} found no valid checkpoint"
    return ready, restored


def run_to_end(daemon: Killable, lag_series: int, timeout_s: float = 120.0) -> dict[str, Any]:
    """Start once more, learn everything there is, stop cleanly: the ``daemon_ready``."""
    daemon.start()
    ready = daemon.wait_event("daemon_ready")
    wait_for(lambda: caught_up(daemon, lag_series), timeout_s, "the daemon caught up")
    code, _ = daemon.terminate()
    assert code == 0
    return ready
