"""The learner loop on an in-memory source and sink (the Kafka path is in integration/)."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from streamlearn.checkpoint import FileCheckpointStore
from streamlearn.checkpoint.inspect import describe
from streamlearn.core.types import TopicPartition
from streamlearn.daemon import Daemon
from streamlearn.metrics import Metrics
from streamlearn.settings import load_settings
from streamlearn.sinks import MemorySink
from streamlearn.sources import MemorySource
from streamlearn.sources.base import AssignmentListener

TP0, TP1 = TopicPartition("in", 0), TopicPartition("in", 1)


def records(n: int, start: int = 0) -> list[bytes]:
    return [json.dumps({"x": [i % 7, i % 3], "y": i % 2}).encode() for i in range(start, start + n)]


def make(
    tmp_path: Path, source: Source, sink: MemorySink | None = None, **sections: Any
) -> tuple[Daemon, MemorySink]:
    sections = {"model": {"hidden": [4]}, **sections}
    settings = load_settings(
        None,
        checkpoint={"dir": str(tmp_path), "every_samples": 10**9, "every_seconds": 3600},
        **sections,
    )
    sink = sink or MemorySink()
    daemon = Daemon(
        settings,
        source_factory=lambda listener: source._bind(listener),
        sink_factory=lambda metrics: sink,
        metrics=Metrics(),
    )
    return daemon, sink


class Source(MemorySource):
    def _bind(self, listener: AssignmentListener) -> Source:
        self._listener = listener
        return self


def drain(daemon: Daemon, source: MemorySource, timeout_s: float = 60.0) -> None:
    # A bound against a hang, not a time target: the first step alone can take seconds on
    # a loaded machine (torch's lazy imports).
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if source.exhausted() and len(daemon.buffer) == 0:
            return
        daemon.step()
    raise AssertionError("the daemon did not drain its source")


def test_pauses_on_backlog_keeps_polling_and_learns_everything(tmp_path: Path) -> None:
    source = Source("in", [records(300), records(200)])
    pauses: list[int] = []
    daemon, _ = make(tmp_path, source, kafka={"max_buffered_samples": 50, "max_poll_records": 100})
    original = source.pause

    def pause() -> None:
        pauses.append(1)
        original()

    source.pause = pause  # type: ignore[method-assign]  # counts the pauses: wrapped on purpose
    assert daemon.start()
    drain(daemon, source)
    assert pauses, "a backlog above max_buffered_samples must pause the input"
    assert not source.paused
    assert daemon.engine.samples_learned == 500
    assert daemon.positions == {TP0: 300, TP1: 200}


def test_restart_resumes_at_the_checkpoint_offsets(tmp_path: Path) -> None:
    first_source = Source("in", [records(100), records(60)])
    first, _ = make(tmp_path, first_source)
    first.start()
    drain(first, first_source)
    assert first.checkpoint("test")
    assert first_source.committed_offsets == {TP0: 100, TP1: 60}

    second_source = Source("in", [records(150), records(60)])  # 50 new records on partition 0
    second, _ = make(tmp_path, second_source)
    second.start()
    assert second.engine.samples_learned == 160
    drain(second, second_source)
    assert second.engine.samples_learned == 210
    assert second.positions == {TP0: 150, TP1: 60}


def test_samples_the_engine_refuses_are_dead_lettered_with_their_origin(tmp_path: Path) -> None:
    values = [json.dumps({"x": [1, 2], "y": label}).encode() for label in ("a", "b", "c")]
    source = Source("in", [values])
    daemon, sink = make(tmp_path, source, model={"hidden": [4], "max_classes": 2})
    daemon.start()
    drain(daemon, source)
    [dead] = sink.dead
    assert (dead.reason, dead.source.offset) == ("too_many_classes", 2)
    assert json.loads(dead.value)["y"] == "c"
    assert daemon.positions == {TP0: 3}


class StuckSink(MemorySink):
    def flush(self, timeout_s: float) -> bool:
        return False


def test_checkpoint_is_deferred_while_outputs_have_not_landed(tmp_path: Path) -> None:
    source = Source("in", [records(40)])
    daemon, _ = make(tmp_path, source, sink=StuckSink())
    daemon.start()
    drain(daemon, source)
    assert not daemon.checkpoint("test")
    assert FileCheckpointStore(tmp_path).files() == []
    assert source.committed_offsets == {}
    value = daemon.metrics.registry.get_sample_value(
        "streamlearn_checkpoints_total", {"result": "outputs_pending"}
    )
    assert value == 1


def test_shutdown_writes_a_checkpoint_and_commits_its_offsets(tmp_path: Path) -> None:
    source = Source("in", [records(70)])
    daemon, _ = make(tmp_path, source)
    daemon.start()
    drain(daemon, source)
    daemon.shutdown()
    loaded = FileCheckpointStore(tmp_path).load_latest()
    assert loaded is not None
    assert loaded.state["offsets"] == [["in", 0, 70]]
    assert source.committed_offsets == {TP0: 70}


def test_a_drift_is_counted_logged_kept_and_published_to_the_events_topic(tmp_path: Path) -> None:
    rng = random.Random(0)
    flipped = []
    for i in range(4_000):
        x = [rng.gauss(0, 1), rng.gauss(0, 1)]
        y = int(x[0] > 0)
        flipped.append(json.dumps({"x": x, "y": 1 - y if i >= 3_000 else y}).encode())
    source = Source("in", [flipped])
    # A busy machine would grow the batch under this backlog (adaptive batching) and move
    # the decision's batch boundary; the test is about the events, so the batch stays put.
    daemon, sink = make(
        tmp_path, source, model={"hidden": [8], "learning_rate": 0.01}, engine={"lag_budget_s": 0}
    )
    assert daemon.start()
    drain(daemon, source, timeout_s=30)
    published = [payload for kind, payload in sink.events if kind == "drift"]
    # Where a micro-batch ends depends on how polls and the clock cut the backlog, so the
    # exact sample is incidental: the drift is caught within 100 samples of the flip.
    [drift] = [p["sample"] for p in published]
    assert 3_000 <= drift <= 3_100
    assert published[0]["detector"] == "cusum" and published[0]["expert"] == "0"
    counted = daemon.metrics.registry.get_sample_value(
        "streamlearn_drift_events_total", {"detector": "cusum", "expert": "0"}
    )
    assert counted == 1
    assert [e["sample"] for e in daemon.drift_history.recent(kind="drift")] == [drift]
    daemon._last_gauges = 0.0
    daemon._maybe_update_gauges()
    assert (daemon.progress.drifts, daemon.progress.last_drift_sample) == (1, drift)
    statistic = daemon.metrics.registry.get_sample_value(
        "streamlearn_drift_statistic", {"detector": "cusum", "expert": "0"}
    )
    assert statistic == 0.0  # back in its refractory period after the drift
    # The flipped regime is new: the pool spawned an expert for it, and said so.
    (spawn,) = [payload for kind, payload in sink.events if kind == "expert_spawn"]
    assert (spawn["expert"], spawn["previous"]) == ("1", "0")
    # Decided once the 128-sample window after the drift is full, at a batch boundary.
    assert drift + 128 <= spawn["sample"] <= drift + 128 + 64
    assert "kind" not in spawn and set(spawn["scores"]) == {"0"}
    assert (
        daemon.metrics.registry.get_sample_value(
            "streamlearn_expert_events_total", {"kind": "spawn"}
        )
        == 1
    )
    assert (daemon.progress.active_expert, daemon.progress.experts) == ("1", 2)
    assert daemon.progress.spawns == 1 and daemon.progress.switches == 0
    assert daemon.metrics.registry.get_sample_value("streamlearn_experts_alive") == 2


def labeled_noise(rng: random.Random, n: int) -> list[bytes]:
    """Labeled rows whose labels alternate, whatever the features: a source to adapt from."""
    return [
        json.dumps({"x": [rng.gauss(0, 1), rng.gauss(0, 1)], "y": i % 2}).encode() for i in range(n)
    ]


def test_an_input_shift_in_unlabeled_rows_is_counted_logged_kept_and_published(
    tmp_path: Path,
) -> None:
    rng = random.Random(0)
    labeled = labeled_noise(rng, 512)
    # No label ever comes for the moved rows: only the input detector can see the move.
    unlabeled = [
        json.dumps({"x": [4 * rng.gauss(0, 1) + 3, 4 * rng.gauss(0, 1) + 3]}).encode()
        for i in range(256)
    ]
    source = Source("in", [labeled + unlabeled])
    daemon, sink = make(
        tmp_path,
        source,
        model={"hidden": [8], "norm": "batch", "learning_rate": 0.01},
        adapt={"method": "norm"},
    )
    assert daemon.start()
    drain(daemon, source)
    published = [payload for kind, payload in sink.events if kind == "input_shift"]
    [row] = [p["sample"] for p in published]
    assert 512 <= row < 512 + 64  # rows watched before the alarm: labeled ones included
    assert (published[0]["detector"], published[0]["expert"]) == ("input_shift", "*")
    assert [e["sample"] for e in daemon.drift_history.recent(kind="input_shift")] == [row]
    metric = daemon.metrics.registry.get_sample_value
    assert metric("streamlearn_input_shift_events_total") == 1
    assert metric("streamlearn_drift_events_total", {"detector": "cusum", "expert": "0"}) is None
    assert metric("streamlearn_tta_resets_total", {"reason": "input_shift"}) == 1
    daemon._last_gauges = 0.0
    daemon._maybe_update_gauges()
    assert metric("streamlearn_input_shift_statistic") == 0.0  # warming up on the new rows


def test_unlabeled_samples_are_answered_then_adapted_on_and_a_reset_is_published(
    tmp_path: Path,
) -> None:
    rng = random.Random(0)
    labeled = labeled_noise(rng, 512)
    # One unlabeled run of a single region: every row is answered alike, a marginal collapse.
    unlabeled = [
        json.dumps({"x": [3 + rng.gauss(0, 0.1), 3.0], "id": f"u{i}"}).encode() for i in range(128)
    ]
    source = Source("in", [labeled + unlabeled])
    daemon, sink = make(
        tmp_path,
        source,
        model={"hidden": [8], "norm": "batch", "learning_rate": 0.01},
        # The guards alone: the run is an input shift too (the test above has that part),
        # far off the statistics' scale, which on_shift restart would react to.
        adapt={"method": "norm", "on_shift": "none", "guards": {"window": 64}},
        drift={"input_shift": {"enabled": False}},
    )
    assert daemon.start()
    drain(daemon, source)
    assert len(sink.predicted) == 128
    metric = daemon.metrics.registry.get_sample_value
    assert metric("streamlearn_tta_adapted_samples_total") == 128
    assert metric("streamlearn_tta_skipped_samples_total") == 0
    assert metric("streamlearn_tta_resets_total", {"reason": "marginal"}) == 2
    assert metric("streamlearn_tta_prediction_entropy") is not None
    resets = [payload for kind, payload in sink.events if kind == "tta_reset"]
    assert [(r["expert"], r["reason"]) for r in resets] == [("0", "marginal")] * 2
    daemon._last_gauges = 0.0
    daemon._maybe_update_gauges()
    assert (daemon.progress.adapted, daemon.progress.adapt_resets) == (128, 2)
    assert daemon.checkpoint("test")
    adapt = describe(tmp_path)["adapt"]  # the last reset came with the last batch
    assert adapt == {
        "method": "norm",
        "experts": {"0": {"anchored": True, "rows_waiting": 0, "adapted_since_anchor": 0}},
    }
