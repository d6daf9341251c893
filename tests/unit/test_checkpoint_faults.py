"""Checkpoints under faults: mid-record crashes, failed saves, rebalances, stale series."""

import itertools
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import pytest

from streamlearn.checkpoint import FileCheckpointStore
from streamlearn.core.engine import StepResult
from streamlearn.core.types import Record, Sample
from streamlearn.daemon import Daemon
from streamlearn.sinks import MemorySink
from streamlearn.sources.base import AssignmentListener
from tests.unit.test_daemon import TP0, TP1, Source, drain, make, records


def counted(daemon: Daemon, name: str, **labels: str) -> float:
    return daemon.metrics.registry.get_sample_value(name, labels) or 0.0


def batch_record(n: int) -> bytes:
    return json.dumps({"samples": [{"x": [i % 7, i % 3], "y": i % 2} for i in range(n)]}).encode()


def test_a_crash_inside_a_batch_record_leaves_the_last_checkpoint_standing(tmp_path: Path) -> None:
    """The shutdown after a crash mid-record must not save the half-learned record."""
    source = Source("in", [records(40), []])
    daemon, _ = make(tmp_path, source)
    daemon.start()
    drain(daemon, source)
    assert daemon.checkpoint("before")
    saved = FileCheckpointStore(tmp_path).files()
    source.logs[TP0].append(Record("in", 0, 40, records(1)[0]))  # learned whole: dirty
    source.logs[TP1].append(Record("in", 1, 0, batch_record(100)))
    steps: list[int] = []
    process = daemon.engine.process

    def crash_on_second_step(samples: Sequence[Sample]) -> StepResult:
        steps.append(len(samples))
        if len(steps) > 2:  # the plain record and the batch record's first step learned
            raise RuntimeError("injected")
        return process(samples)

    # The crash is injected on purpose: the method is replaced on the instance.
    daemon.engine.process = crash_on_second_step  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="injected"):
        drain(daemon, source)
    daemon.shutdown()
    assert steps == [1, 8, 8]  # the plain record, then the batch record's steps (max_batch 8)
    assert FileCheckpointStore(tmp_path).files() == saved
    assert counted(daemon, "streamlearn_checkpoints_total", result="mid_record") == 1
    assert TP1 not in daemon.positions


def test_a_failing_save_backs_off_instead_of_retrying_every_step(tmp_path: Path) -> None:
    source = Source("in", [records(400)])
    daemon, _ = make(tmp_path, source)
    daemon.start()
    drain(daemon, source)  # learned, not saved: every_samples is out of reach
    daemon.settings.checkpoint = daemon.settings.checkpoint.model_copy(
        update={"every_samples": 1, "retry_min_s": 0.3, "retry_max_s": 0.6}
    )
    attempts: list[float] = []

    def disk_full(state: dict[str, Any]) -> Path:
        attempts.append(time.monotonic())
        raise OSError(28, "No space left on device")

    assert daemon.store is not None
    # The full disk is injected on purpose: the method is replaced on the instance.
    daemon.store.save = disk_full  # type: ignore[method-assign]
    daemon.step()  # the first try
    assert len(attempts) == 1
    # Due, but not ready until the backoff passed: a replica asks for no checkpoint round.
    assert daemon.checkpointer.due and not daemon.checkpointer.ready
    while time.monotonic() - attempts[0] < 1.6:
        daemon.step()
    # Tries at about 0, 0.3, 0.9 (0.3 then 0.6, the cap) and 1.5 s: never one per step.
    assert 3 <= len(attempts) <= 4
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert all(gap >= 0.29 for gap in gaps)
    assert counted(daemon, "streamlearn_checkpoints_total", result="failed") == len(attempts)
    assert source.committed_offsets == {}  # never committed ahead of a durable checkpoint
    # The real save is put back (a method assigned on the instance again).
    daemon.store.save = FileCheckpointStore.save.__get__(daemon.store)  # type: ignore[method-assign]
    time.sleep(0.7)
    assert daemon.checkpointer.ready
    daemon.step()
    assert counted(daemon, "streamlearn_checkpoints_total", result="ok") == 1
    assert source.committed_offsets == {TP0: 400}


class CountingSink(MemorySink):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self, timeout_s: float) -> bool:
        self.flushes += 1
        return True


def test_a_revoke_only_moves_bookkeeping_and_the_learner_checkpoints_after(tmp_path: Path) -> None:
    source = Source("in", [records(50), records(30)])
    sink = CountingSink()
    daemon, _ = make(tmp_path, source, sink=sink)
    daemon.start()
    drain(daemon, source)
    daemon.gauges.last_update = 0
    daemon.step()
    lag = {"topic": "in", "partition": "1"}
    assert daemon.metrics.registry.get_sample_value("streamlearn_consumer_lag", lag) == 0

    daemon.on_revoked([TP1])  # on the client's IO thread: no flush, no save
    assert sink.flushes == 0 and FileCheckpointStore(tmp_path).files() == []
    assert daemon.positions == {TP0: 50} and daemon.known == {TP1: 30}
    assert daemon.metrics.registry.get_sample_value("streamlearn_consumer_lag", lag) is None

    daemon.step()  # back on the learner thread
    assert sink.flushes == 1 and len(FileCheckpointStore(tmp_path).files()) == 1
    assert source.committed_offsets == {TP0: 50}  # the partition given up is not committed


def resumed_offset(tmp_path: Path, commit_metadata: str, group_offset: int) -> int:
    """Where partition 0 resumes when the group committed ``group_offset`` under
    ``commit_metadata`` after this lineage checkpointed offset 40."""
    first = Source("in", [records(40)])
    daemon, _ = make(tmp_path, first)
    daemon.start()
    drain(daemon, first)
    assert daemon.checkpoint("test")
    lineage = daemon.checkpointer.lineage
    daemon.shutdown()

    again = Source("in", [records(100)])
    again.commit({TP0: group_offset}, lineage if commit_metadata == "ours" else "other")
    restarted, _ = make(tmp_path, again)
    restarted.start()
    assert restarted.checkpointer.lineage == lineage
    drain(restarted, again)
    return restarted.engine.samples_learned - daemon.engine.samples_learned


def test_a_partition_another_member_learned_further_resumes_at_its_commit(tmp_path: Path) -> None:
    assert resumed_offset(tmp_path, "other", 70) == 30  # 70..99 only: 40..69 are the other's


def test_the_lineages_own_commit_ahead_of_its_checkpoint_is_ignored(tmp_path: Path) -> None:
    # The newest checkpoint was lost: what it held is learned again, from 40.
    assert resumed_offset(tmp_path, "ours", 70) == 60


def learned_from_an_unread_partition(tmp_path: Path, commit_metadata: str) -> int:
    """Samples learned from partition 1 after a restart, when the restored checkpoint never
    read it (it was empty then) and the group committed offset 20 of its 30 records under
    ``commit_metadata``."""
    first = Source("in", [records(40), []])
    daemon, _ = make(tmp_path, first)
    daemon.start()
    drain(daemon, first)
    assert daemon.checkpoint("test")
    assert TP1 not in daemon.known and TP1 not in daemon.positions
    lineage = daemon.checkpointer.lineage
    daemon.shutdown()

    again = Source("in", [records(40), records(30)])
    again.commit({TP1: 20}, lineage if commit_metadata == "ours" else "other")
    restarted, _ = make(tmp_path, again)
    restarted.start()
    drain(restarted, again)
    assert restarted.positions == {TP0: 40, TP1: 30}
    return restarted.engine.samples_learned - daemon.engine.samples_learned


def test_an_unread_partition_the_lineage_committed_later_starts_from_its_beginning(
    tmp_path: Path,
) -> None:
    # The commit came from a newer checkpoint that was lost: the restored model learned none
    # of partition 1, so resuming at the commit would lose records 0..19 for good.
    assert learned_from_an_unread_partition(tmp_path, "ours") == 30


def test_an_unread_partition_another_lineage_committed_starts_at_its_commit(
    tmp_path: Path,
) -> None:
    assert learned_from_an_unread_partition(tmp_path, "other") == 10


def test_a_pruned_expert_leaves_no_series_behind(tmp_path: Path) -> None:
    source = Source("in", [records(10)])
    daemon, _ = make(tmp_path, source)
    m = daemon.metrics
    m.expert_active.labels(expert="3").set(0)
    m.expert_loss.labels(expert="3").set(0.5)
    m.drift_events.labels(detector="cusum", expert="3").inc()
    m.drift_statistic.labels(detector="cusum", expert="3").set(0.2)
    m.expert_active.labels(expert="4").set(1)
    m.forget_expert("3")
    text = m.exposition().decode()
    assert 'expert="3"' not in text
    assert 'streamlearn_expert_active{expert="4"} 1.0' in text


def test_lifecycle_lines_say_what_happened(tmp_path: Path) -> None:
    """A cold start warns; a shutdown that cannot save says so; a stop before the broker was
    reached still ends with daemon_stopped."""
    from structlog.testing import capture_logs

    source = Source("in", [records(40)])
    daemon, _ = make(tmp_path, source, sink=StuckSink())
    with capture_logs() as logs:
        daemon.start()
        drain(daemon, source)
        daemon.shutdown()
    levels = {line["event"]: line["log_level"] for line in logs}
    assert levels["checkpoint_none"] == "warning"
    assert levels["checkpoint_skipped"] == "warning"
    assert levels["daemon_stopped"] == "info"

    never, _ = make(tmp_path / "never", Source("in", [records(1)]))
    never._source_factory = unreachable
    with capture_logs() as logs:
        never.run()
    assert [line["event"] for line in logs][-1] == "daemon_stopped"


class StuckSink(MemorySink):
    def flush(self, timeout_s: float) -> bool:
        return False


def unreachable(daemon: AssignmentListener) -> NoReturn:
    """The broker is down, and SIGTERM arrives meanwhile."""
    assert isinstance(daemon, Daemon)  # the daemon is the listener its source factory is given
    from kafka.errors import KafkaTimeoutError

    daemon.request_stop()
    raise KafkaTimeoutError("Unable to bootstrap from ['127.0.0.1:1']")
