"""An output-side outage: the predictions topic is missing while unlabeled input flows
(issue 15, item 4)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import fresh_topics, read_topic
from tests.reliability.checks import committed_offsets, lineage_gaps, newest
from tests.reliability.conftest import SEQ_MODEL, ReliableDaemon
from tests.support.kafkaproxy import ProxiedBroker
from tests.support.seqlineage import expert_state, read_log
from tests.support.seqproducer import SequenceProducer
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_PENDING = 50
MAX_BATCH = 32  # engine.max_batch of the daemon fixture
PARTITIONS = 2
BEFORE = 200  # labeled records before the outage matters: checkpointed
DURING = 600  # every other one unlabeled: 300 predictions to publish


class Sampler:
    """Reads a daemon's metrics every 0.1 s; ``peak(name)`` is the highest value seen."""

    def __init__(self, daemon: ReliableDaemon) -> None:
        self.daemon = daemon
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for name, value in self.daemon.metrics().items():
                self.seen[name] = max(value, self.seen.get(name, value))

    def peak(self, name: str) -> float | None:
        return self.seen.get(name)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def test_a_missing_predictions_topic_pauses_input_and_defers_checkpoints(
    reliable_daemon: Callable[..., ReliableDaemon], tmp_path: Path
) -> None:
    """tansu creates topics on first use, so the topic cannot just be missing: the broker
    here sits behind a proxy (tests/support/kafkaproxy.py) that answers every Metadata
    request for the predictions topic UNKNOWN_TOPIC_OR_PARTITION, as Kafka does for a
    topic that does not exist without auto-creation; revealing it is its creation as far
    as any client can tell. No send ever reaches it while it is hidden.

    200 labeled records are learned and checkpointed; then 600 more, every other one
    unlabeled, arrive while the topic is missing. The daemon must stay up, keep at most
    kafka.max_pending_outputs (50) outputs waiting, pause its input once they are full,
    and defer every checkpoint (none may cover a record whose prediction did not land).
    It is killed there (the waiting outputs die with it) and restarted. Once the topic
    appears, every prediction lands exactly once, checkpoints resume, and the lineage
    learned every labeled record once.

    The bound, as docs/operations.md ("Outputs that cannot land") states it: the learning
    step under way when max_pending_outputs is reached still queues its outputs, so at most
    engine.max_batch predictions past it (no events or dead letters here).
    """
    with ProxiedBroker() as broker:
        topics = fresh_topics(broker.bootstrap, PARTITIONS)
        assert broker.proxy is not None
        broker.proxy.hide(topics["predictions"])
        seq_log = tmp_path / "applied.log"
        daemon = reliable_daemon(
            topics,
            broker=broker,
            model=SEQ_MODEL,
            serve={"enabled": False},
            checkpoint={
                "every_samples": 100,
                "every_seconds": 1,
                "retry_min_s": 0.5,
                "retry_max_s": 2.0,
            },
            env={"SEQ_LOG": str(seq_log)},
            settings={
                "kafka": {
                    "max_pending_outputs": MAX_PENDING,
                    "flush_timeout_s": 1.0,
                    "session_timeout_ms": 3000,
                    "heartbeat_interval_ms": 1000,
                }
            },
        )
        producer = SequenceProducer(
            broker.bootstrap, topics["input"], keys=4, partitions=PARTITIONS
        )
        try:
            producer.send(BEFORE)
            daemon.start()
            wait_for(
                lambda: (
                    newest_offsets(daemon)
                    == {f"{topics['input']}/{p}": BEFORE // PARTITIONS for p in range(PARTITIONS)}
                ),
                60,
                "the labeled records checkpointed",
            )
            before = newest(daemon.checkpoint_dir)["offsets"]

            producer.unlabeled_every = 2
            producer.send(DURING)
            sampler = Sampler(daemon)
            try:
                wait_for(
                    lambda: (
                        daemon.metric("streamlearn_partitions_paused") == 1
                        and (daemon.metric("streamlearn_outputs_pending") or 0) >= MAX_PENDING
                    ),
                    60,
                    "input paused with the pending outputs full",
                )
                wait_for(
                    lambda: (
                        (
                            daemon.metric('streamlearn_checkpoints_total{result="outputs_pending"}')
                            or 0
                        )
                        >= 2
                    ),
                    30,
                    "checkpoints deferred",
                )
                assert daemon.alive()
                # No checkpoint past an output that did not land: none landed.
                assert newest(daemon.checkpoint_dir)["offsets"] == before
                assert (
                    committed_offsets(broker, daemon.group, topics["input"], PARTITIONS) == before
                )
            finally:
                sampler.close()
            deferred = daemon.event("checkpoint_deferred")
            assert deferred is not None

            daemon.kill()  # the outputs waiting in memory die with it
            daemon.start()
            # start() returns once the metrics endpoint answers: the learner may still be
            # restoring (seconds on a loaded machine).
            restored = daemon.wait_event("checkpoint_restored")
            assert restored["offsets"] == before
            wait_for(
                lambda: daemon.metric("streamlearn_partitions_paused") == 1,
                60,
                "input paused again after the restart",
            )
            broker.proxy.reveal(topics["predictions"])  # the topic appears

            wait_for(
                lambda: (
                    daemon.metric("streamlearn_outputs_pending") == 0
                    and daemon.metric("streamlearn_partitions_paused") == 0
                ),
                60,
                "the outputs landed and input resumed",
            )
            end = {
                f"{topics['input']}/{p}": (BEFORE + DURING) // PARTITIONS for p in range(PARTITIONS)
            }
            wait_for(lambda: newest_offsets(daemon) == end, 60, "checkpoints resumed")
            ids = sorted(producer.unlabeled_ids)
            landed = [
                json.loads(r.value)["id"]
                for r in read_topic(broker, topics["predictions"], len(ids) + 1, timeout=10)
            ]
            assert daemon.terminate()[0] == 0
        finally:
            producer.close()
            daemon.stop()

        # Every prediction exactly once: none lost with the killed process (no checkpoint
        # covered them), none twice.
        assert sorted(landed) == ids
        state = expert_state(daemon.checkpoint_dir)
        assert lineage_gaps(state, producer.expected()) == {} and state["violations"] == []
        assert {row[2] for row in read_log(seq_log)} == {1}
        assert committed_offsets(broker, daemon.group, topics["input"], PARTITIONS) == end
        peak = sampler.peak("streamlearn_outputs_pending")
        print(
            f"\noutput outage: {len(ids)} predictions held back, at most {peak:.0f} "
            f"pending (max_pending_outputs {MAX_PENDING}, max_batch {MAX_BATCH}), each "
            f"landed once after the topic appeared"
        )
        # Last, so that the checks above have their say first.
        assert peak is not None and peak <= MAX_PENDING + MAX_BATCH, "pending past the bound"


def newest_offsets(daemon: ReliableDaemon) -> dict[str, int] | None:
    try:
        offsets: dict[str, int] = newest(daemon.checkpoint_dir)["offsets"]
        return offsets
    except Exception:  # none yet, or a file pruned while read
        return None
