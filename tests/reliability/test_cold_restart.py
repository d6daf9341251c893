"""RELIABILITY.md A's recovery bound for a restart that pays its imports: a fresh
``python -m streamlearn run`` after SIGKILL is ready within 10 s."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from streamlearn.app.embedded import EmbeddedBroker
from tests.reliability.conftest import SEQ_MODEL, ReliableDaemon, timestamp
from tests.support.seqproducer import SequenceProducer
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RECOVERY_LIMIT_S = 10.0


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_cold_restart_after_sigkill_is_ready_within_10_s(
    broker: EmbeddedBroker,
    seq_topics: Callable[[int], dict[str, str]],
    reliable_daemon: Callable[..., ReliableDaemon],
) -> None:
    """The kill loop restarts forked daemons, which have their imports done; this restart
    is a new interpreter, as after a crash in production. Recovery: from the process's
    start to daemon_ready (checkpoint restored, broker connected). Its CPU time is
    reported beside it: on a busy machine the wall time is that, stretched.
    """
    topics = seq_topics(2)
    SequenceProducer(broker.bootstrap, topics["input"], keys=4, partitions=2).send(2_000)
    daemon = reliable_daemon(
        topics,
        model=SEQ_MODEL,
        serve={"enabled": False},
        checkpoint={"every_samples": 500, "every_seconds": 3600},
    )
    daemon.start()
    wait_for(
        lambda: (daemon.metric('streamlearn_checkpoints_total{result="ok"}') or 0) >= 1,
        60,
        "a checkpoint",
    )
    daemon.kill()
    daemon.start(cold=True)
    ready = daemon.wait_event("daemon_ready")
    assert daemon.proc is not None
    cpu = cpu_seconds(daemon.proc.pid)
    recovery = timestamp(ready) - daemon.started_at
    assert daemon.event("checkpoint_restored") is not None
    print(
        f"\ncold restart: ready {recovery:.2f} s after the process started, "
        f"{cpu:.2f} CPU s (mostly imports)"
    )
    assert recovery < RECOVERY_LIMIT_S
