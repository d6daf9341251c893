"""What the reliability tests check again and again: checkpoints on disk, committed offsets,
and whether a lineage holds every record exactly once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamlearn.checkpoint.inspect import describe
from tests.integration.conftest import Broker, committed
from tests.support.seqlineage import read_log


def partials(checkpoint_dir: Path) -> list[str]:
    """Leftovers of interrupted checkpoint writes."""
    return sorted(p.name for p in Path(checkpoint_dir).glob("*.tmp"))


def newest(checkpoint_dir: Path) -> dict[str, Any]:
    """The newest valid checkpoint: ``path``, ``offsets`` ("topic/p": next offset), ..."""
    return describe(Path(checkpoint_dir))


def committed_offsets(broker: Broker, group: str, topic: str, partitions: int) -> dict[str, int]:
    """The group's committed offsets, "topic/p": offset, partitions with none left out."""
    found = committed(broker, group, topic, partitions)
    return {f"{topic}/{p}": o for p, o in found.items() if o is not None}


def ahead(committed_: dict[str, int], checkpoint: dict[str, int]) -> dict[str, tuple[int, int]]:
    """Partitions whose committed offset is past the checkpoint's: (committed, checkpoint)."""
    return {
        tp: (o, checkpoint.get(tp, 0)) for tp, o in committed_.items() if o > checkpoint.get(tp, 0)
    }


def lineage_gaps(state: dict[str, Any], expected: dict[int, int]) -> dict[int, Any]:
    """Keys whose spans are not exactly ``[[1, last]]``: what the lineage lost or repeated."""
    spans = {int(k): v for k, v in state["spans"].items()}
    return {k: spans.get(k) for k, last in expected.items() if spans.get(k) != [[1, last]]}


def repeats(log_path: Path) -> dict[tuple[int, int], int]:
    """(key, seq) applied more than once, over every process that wrote the log."""
    seen: dict[tuple[int, int], int] = {}
    for key, seq, _, _ in read_log(log_path):
        seen[(key, seq)] = seen.get((key, seq), 0) + 1
    return {ks: n for ks, n in seen.items() if n > 1}


def steps_not_one(log_path: Path) -> list[tuple[int, int, int, int]]:
    return [row for row in read_log(log_path) if row[2] != 1]


class CommitWatch:
    """The group's committed offsets over time, read from the broker every ``interval``
    seconds: ``history`` is a list of (wall time, {"topic/p": offset})."""

    def __init__(
        self, broker: Broker, group: str, topic: str, partitions: int, interval: float = 0.2
    ) -> None:
        import threading

        from kafka import KafkaConsumer, TopicPartition

        self._consumer = KafkaConsumer(
            bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False
        )
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]
        self.history: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._run, name="commit-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import time

        while not self._stop.is_set():
            began = time.time()
            found = {}
            for tp in self._tps:
                try:
                    offset = self._consumer.committed(tp)
                except Exception:  # a missed reading only weakens the check
                    continue
                if offset is not None:
                    found[f"{tp.topic}/{tp.partition}"] = offset
            self.history.append((began, found))
            self._stop.wait(self._interval)

    def before(self, moment: float) -> dict[str, int]:
        """The newest reading begun before ``moment`` (wall time)."""
        earlier = [found for began, found in self.history if began < moment]
        return earlier[-1] if earlier else {}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close(autocommit=False)
