"""Two replicas of ``streamlearn run`` in one consumer group on the embedded broker learn one
model: after the stream, a sync round leaves them serving identical answers (real HTTP)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from streamlearn.app.embedded import EmbeddedBroker, free_port
from streamlearn.streams.synthetic import take
from tests.integration.conftest import DaemonProcess, fresh_topics, send
from tests.support.waiting import wait_for

INFER = "/v2/models/streamlearn/infer"
RECORDS = 3_000
ROWS = [[0.1 * i] * 9 for i in range(8)]  # agrawal has 9 features


def _answers(daemon: DaemonProcess) -> Any:
    body = {"inputs": [{"name": "input", "shape": [8, 9], "datatype": "FP32", "data": ROWS}]}
    try:
        response = httpx.post(f"http://127.0.0.1:{daemon.http_port}{INFER}", json=body, timeout=5)
    except httpx.TransportError:
        return None
    return response.json()["outputs"] if response.status_code == 200 else None


def _learned(daemon: DaemonProcess) -> float:
    return daemon.metric("streamlearn_samples_learned_total") or 0.0


def _own_scores(daemon: DaemonProcess) -> bool:
    metrics = daemon.metrics()
    scored = metrics.get('streamlearn_predictions_total{kind="prequential"}')
    accuracy = metrics.get('streamlearn_prequential_accuracy{window="cumulative"}')
    correct = metrics.get("streamlearn_prequential_correct_total")
    if scored is None or accuracy is None or correct is None or scored != _learned(daemon):
        return False
    return 0 < correct <= scored and abs(accuracy * scored - correct) < 1e-6 * scored


def test_two_replicas_learn_every_record_once_and_answer_alike_after_a_sync(
    tmp_path: Path, broker: EmbeddedBroker
) -> None:
    topics = fresh_topics(broker.bootstrap, input_partitions=4)
    samples = take("agrawal", RECORDS)
    send(
        broker,
        topics["input"],
        [json.dumps(s).encode() for s in samples],
        partitions=[i % 4 for i in range(RECORDS)],
    )
    port = free_port()
    replicas: list[DaemonProcess] = []
    try:
        for rank in range(2):
            workdir = tmp_path / f"replica{rank}"
            workdir.mkdir()
            # torchrun's variables: what the StatefulSet and Compose files set.
            env = {
                "RANK": str(rank),
                "WORLD_SIZE": "2",
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "STREAMLEARN_SYNC__ENABLED": "true",
                "STREAMLEARN_SYNC__EVERY_STEPS": "10",
                "STREAMLEARN_SYNC__EVERY_SECONDS": "1",
            }
            replica = DaemonProcess(workdir, broker, topics, "g-replicas", env=env)
            replicas.append(replica)
        # Each waits at the rendezvous for the other: start them together.
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(DaemonProcess.start, replicas))
        wait_for(lambda: sum(_learned(r) for r in replicas) >= RECORDS, 240, "every record learned")
        # Every record once over the group: the partitions are split, none learned twice.
        assert sum(_learned(r) for r in replicas) == RECORDS
        assert all(_learned(r) > 0 for r in replicas), "both replicas hold partitions"
        # The last round (due by sync.every_seconds once learning stopped) makes them equal.
        wait_for(
            lambda: (a := _answers(replicas[0])) is not None and a == _answers(replicas[1]),
            180,  # a bound, not a target: 60 s ran out once under a load of 8 on 2 cores
            "identical answers from both replicas",
        )
        versions = [r.metric("streamlearn_served_model_version") for r in replicas]
        assert versions[0] == versions[1], versions
        rounds = [lambda r=r: r.metric("streamlearn_sync_rounds_total") or 0 for r in replicas]
        wait_for(lambda: rounds[0]() == rounds[1]() >= 1, 30, "the same rounds on both")
        # Each replica's accuracy gauge is its own (a round loads the template's engine
        # state): times its prequential count, it is its own count of right answers.
        wait_for(lambda: all(_own_scores(r) for r in replicas), 30, "each replica's own scores")
        for replica in replicas:
            assert replica.proc is not None and replica.proc.poll() is None, replica.log_text()
    finally:
        for replica in replicas:
            replica.stop()


def test_a_replica_stopped_while_it_waits_for_its_group_stops_without_being_killed(
    tmp_path: Path, broker: EmbeddedBroker
) -> None:
    """SIGTERM while the learner joins: rank 0's store is not up (nothing listens on its
    port), so torch's store connect blocks in C++, where a Python signal handler runs only
    once it returns (``sync.timeout_s``, 120 s). A learner that has not restored has nothing
    to save: it ends on the signal, and the service stops without killing it (before, the
    supervisor waited 60 s and then killed it; in a pod, the grace period ran out first)."""
    topics = fresh_topics(broker.bootstrap, input_partitions=2)
    env = {
        "RANK": "1",
        "WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "STREAMLEARN_SYNC__ENABLED": "true",
    }
    workdir = tmp_path / "replica1"
    workdir.mkdir()
    replica = DaemonProcess(workdir, broker, topics, "g-waiting", env=env)
    try:
        replica.start(wait_for_metrics=False)  # they answer once the learner restored
        wait_for(lambda: "sync_replica_settings" in replica.log_text(), 60, "the learner built")
        # A bound against a hang, not a target: the supervisor kills a learner after 60 s.
        code, _ = replica.terminate(timeout=90)
        log = replica.log_text()
        assert code == 0, log
        assert "learner_killed" not in log, log
        assert "sync_joined" not in log, "the group cannot form without rank 0"
    finally:
        replica.stop()
