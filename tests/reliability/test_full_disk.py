"""A full checkpoint disk (issue 15, item 4): learning and serving go on, checkpoints back off,
nothing is committed ahead, and a kill restores the last good checkpoint."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from streamlearn.app.embedded import EmbeddedBroker
from tests.reliability.checks import (
    ahead,
    committed_offsets,
    lineage_gaps,
    newest,
    partials,
    steps_not_one,
)
from tests.reliability.conftest import SEQ_MODEL, ReliableDaemon, timestamp
from tests.support.diskfull import FullDisk
from tests.support.seqlineage import expert_state
from tests.support.seqproducer import SequenceProducer
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 2
RECORDS = 8_000
PRODUCE_SECONDS = 40
RETRY_MIN_S, RETRY_MAX_S = 0.5, 2.0
FAILURES = 6  # 0.5 + 1 + 2 + 2 + 2 s apart: some 7.5 s full


def failures(daemon: ReliableDaemon) -> list[dict[str, Any]]:
    return [e for e in daemon.events() if e.get("event") == "checkpoint_failed"]


def infer(daemon: ReliableDaemon) -> dict[str, Any]:
    response = httpx.post(
        f"http://127.0.0.1:{daemon.http_port}/v2/models/streamlearn/infer",
        json={
            "inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [[0.0, 1.0]]}]
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def ready(daemon: ReliableDaemon) -> bool:
    try:
        return (
            httpx.get(f"http://127.0.0.1:{daemon.http_port}/v2/health/ready", timeout=2).status_code
            == 200
        )
    except httpx.TransportError:
        return False


def assert_backed_off(events: list[dict[str, Any]]) -> None:
    """Consecutive failed attempts at least retry_min_s apart, doubling to retry_max_s."""
    times = [timestamp(e) for e in events]
    for k, (before, after) in enumerate(itertools.pairwise(times)):
        wait = min(RETRY_MIN_S * 2**k, RETRY_MAX_S)
        assert after - before >= wait - 0.05, (k, after - before, wait)


def test_a_full_checkpoint_disk_costs_no_learning_and_no_commit_ahead(
    broker: EmbeddedBroker,
    seq_topics: Callable[[int], dict[str, str]],
    reliable_daemon: Callable[..., ReliableDaemon],
    tmp_path: Path,
) -> None:
    """The checkpoint directory's next file is /dev/full (tests/support/diskfull.py: a real
    ENOSPC from write(), unprivileged) while records keep arriving and checkpoints are due
    every 0.5 s. The daemon keeps learning and serving fresh snapshots, counts each failed
    checkpoint, retries after 0.5, 1, 2, 2 ... s (not on every step), and commits nothing
    past its last durable checkpoint. Killed while the disk is still full, it restores that
    checkpoint and fails on as before; once space returns it checkpoints again; and along
    the restored lineage every record is applied exactly once.
    """
    topics = seq_topics(PARTITIONS)
    topic = topics["input"]
    seq_log = tmp_path / "applied.log"
    producer = SequenceProducer(broker.bootstrap, topic, keys=4, partitions=PARTITIONS)
    daemon = reliable_daemon(
        topics,
        model=SEQ_MODEL,
        checkpoint={
            "every_samples": 200,
            "every_seconds": 0.5,
            "retry_min_s": RETRY_MIN_S,
            "retry_max_s": RETRY_MAX_S,
        },
        serve={"publish_interval_ms": 200},
        env={"SEQ_LOG": str(seq_log)},
        settings={"kafka": {"session_timeout_ms": 3000, "heartbeat_interval_ms": 1000}},
    )
    disk = FullDisk(daemon.checkpoint_dir)
    producer.start(RECORDS, per_second=RECORDS / PRODUCE_SECONDS)
    try:
        daemon.start()
        wait_for(lambda: ready(daemon), 90, "serving ready")
        wait_for(
            lambda: (daemon.metric('streamlearn_checkpoints_total{result="ok"}') or 0) >= 1,
            30,
            "a first checkpoint",
        )

        disk.fill()
        good = newest(daemon.checkpoint_dir)
        ok_before = daemon.metric('streamlearn_checkpoints_total{result="ok"}')
        learned = daemon.metric("streamlearn_samples_learned_total")
        assert learned is not None
        served = int(infer(daemon)["model_version"])  # a string in the v2 protocol
        wait_for(lambda: len(failures(daemon)) >= FAILURES, 30, f"{FAILURES} failed checkpoints")
        first_life = failures(daemon)
        assert all("No space left on device" in e["why"] for e in first_life), first_life[0]
        assert_backed_off(first_life)
        window = timestamp(first_life[-1]) - timestamp(first_life[0])
        metrics = daemon.metrics()
        assert metrics['streamlearn_checkpoints_total{result="failed"}'] >= FAILURES
        assert metrics['streamlearn_checkpoints_total{result="ok"}'] == ok_before
        # Learning and serving go on: more learned, a newer model served.
        assert metrics["streamlearn_samples_learned_total"] > learned
        wait_for(lambda: int(infer(daemon)["model_version"]) > served, 10, "a newer model served")
        # Nothing committed past the last durable checkpoint, which is still the newest.
        assert newest(daemon.checkpoint_dir)["path"] == good["path"]
        found = committed_offsets(broker, daemon.group, topic, PARTITIONS)
        assert not ahead(found, good["offsets"]), (found, good["offsets"])

        daemon.kill()
        assert not ahead(
            committed_offsets(broker, daemon.group, topic, PARTITIONS), good["offsets"]
        )
        daemon.start()
        restored = daemon.wait_event("checkpoint_restored")
        assert (restored["path"], restored["offsets"]) == (good["path"], good["offsets"])
        wait_for(lambda: len(failures(daemon)) >= 2, 30, "failures after the restart")
        assert_backed_off(failures(daemon))

        disk.free()  # space returns
        wait_for(
            lambda: (daemon.metric('streamlearn_checkpoints_total{result="ok"}') or 0) >= 1,
            30,
            "checkpoints again",
        )
        assert newest(daemon.checkpoint_dir)["path"] != good["path"]
        producer.join(timeout=PRODUCE_SECONDS + 30)
        end = {f"{topic}/{p}": RECORDS // PARTITIONS for p in range(PARTITIONS)}
        wait_for(
            lambda: newest(daemon.checkpoint_dir)["offsets"] == end,
            60,
            "everything learned and checkpointed",
        )
        assert daemon.terminate(timeout=30)[0] == 0
    finally:
        disk.free()
        producer.close()

    state = expert_state(daemon.checkpoint_dir)
    assert lineage_gaps(state, producer.expected()) == {} and state["violations"] == []
    assert steps_not_one(seq_log) == []
    assert committed_offsets(broker, daemon.group, topic, PARTITIONS) == end
    assert partials(daemon.checkpoint_dir) == []
    print(
        f"\nfull disk: {len(first_life)} checkpoint attempts in {window:.1f} s full "
        f"(retry {RETRY_MIN_S} s doubling to {RETRY_MAX_S} s), learning and serving "
        f"went on, nothing committed ahead, the kill restored the last good checkpoint"
    )
