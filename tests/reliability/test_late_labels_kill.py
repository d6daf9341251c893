"""Issue 21: late labels across kill -9 restarts. Samples now, their labels up to 3 s
later (two in five up to 2 s before their sample, 5% never), two partitions per topic, 10
SIGKILLs: along the restored lineage every label joins its sample and is learned exactly
once, and what stays in the store is exactly the never-labeled samples."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streamlearn.app.embedded import EmbeddedBroker, create_topics
from streamlearn.checkpoint.store import FileCheckpointStore
from tests.reliability.checks import newest, partials
from tests.reliability.conftest import SEQ_MODEL, ReliableDaemon
from tests.support.killloop import restart, run_to_end, start_and_checkpoint
from tests.support.lateproducer import LateLabelProducer
from tests.support.seqlineage import expert_state

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

PARTITIONS = 2
KEYS = 8
SAMPLES = 4_000
KILLS = 10


def test_kills_neither_lose_nor_double_a_join(
    broker: EmbeddedBroker,
    seq_topics: Callable[[int], dict[str, str]],
    reliable_daemon: Callable[..., ReliableDaemon],
    tmp_path: Path,
) -> None:
    topics = seq_topics(PARTITIONS)
    labels_topic = topics["input"].replace("in-", "labels-")
    create_topics(broker.bootstrap, {labels_topic: PARTITIONS})
    producer = LateLabelProducer(
        broker.bootstrap,
        topics["input"],
        labels_topic,
        keys=KEYS,
        partitions=PARTITIONS,
        samples=SAMPLES,
        per_second=120,
        # Two labels in five come first, by up to 2 s: checkpoints hold labels waiting too.
        delay_s=(-2.0, 3.0),
    )
    daemon = reliable_daemon(
        topics,
        model=SEQ_MODEL,
        serve={"enabled": False},
        warm=True,
        checkpoint={"every_samples": 200, "every_seconds": 3600},
        env={"CKPT_WRITE_DELAY_S": "0.1"},
        settings={
            "kafka": {
                "labels_topic": labels_topic,
                "session_timeout_ms": 1500,
                "heartbeat_interval_ms": 500,
            },
            "labels": {"enabled": True, "ttl_s": 3600},
            "drift": {"enabled": False},
            "experts": {"enabled": False},
        },
    )
    rng = random.Random(2110)
    producer.start()
    try:
        start_and_checkpoint(daemon)
        restored: list[dict[str, Any]] = []
        for kill in range(KILLS):
            if kill:
                restored.append(restart(daemon, kill)[1])
            time.sleep(rng.uniform(0.5, 3.0))
            daemon.kill()
        producer.join(timeout=120)
        run_to_end(daemon, lag_series=2 * PARTITIONS)  # both topics' partitions
    finally:
        producer.close()

    # Every labeled sample was joined and learned once along the lineage: each key's seqs
    # 1..last in one span, no step other than 1, the sum of its labels.
    state = expert_state(daemon.checkpoint_dir)
    assert state["violations"] == []
    assert {int(k): v for k, v in state["spans"].items()} == {
        k: [[1, last]] for k, last in producer.last_seq.items()
    }
    assert {int(k): v for k, v in state["total"].items()} == {
        k: last * (last + 1) / 2 for k, last in producer.last_seq.items()
    }
    # What waits is exactly the never-labeled samples; no label waits for a sample.
    loaded = FileCheckpointStore(daemon.checkpoint_dir).load_latest()
    assert loaded is not None
    store = loaded.state["labels"]["store"]
    assert sorted(store["pending"]["ids"]) == sorted(producer.decoys)
    assert store["waiting"]["ids"] == []
    final = newest(daemon.checkpoint_dir)["offsets"]
    assert sum(v for k, v in final.items() if k.startswith(labels_topic)) == SAMPLES - len(
        producer.decoys
    )
    assert partials(daemon.checkpoint_dir) == []
    # The kills landed while joins were half made: restarts restored samples waiting for
    # their label (and, as the interleaving fell, labels waiting for their sample).
    assert any(r["pending_samples"] > 0 for r in restored)
    assert any(r["waiting_labels"] > 0 for r in restored)
    waiting = sum(r["waiting_labels"] > 0 for r in restored)
    print(
        f"\nrestores with samples pending: {sum(r['pending_samples'] > 0 for r in restored)}"
        f"/{len(restored)}, with early labels waiting: {waiting}/{len(restored)} "
        f"(max {max(r['waiting_labels'] for r in restored)})"
    )
    print(
        f"\nlate labels kill loop: {KILLS} kills, {SAMPLES} samples, "
        f"{SAMPLES - len(producer.decoys)} labels joined once each, "
        f"{len(producer.decoys)} never labeled, kept pending"
    )
