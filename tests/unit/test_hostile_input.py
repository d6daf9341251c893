"""Issue 15, "Nothing poisons it": each record a hostile producer sent, as a regression test.

Each one once broke the daemon for good (NaN weights checkpointed, classes locked out, a
model built a million features wide, a prediction too large to publish); now each is
refused or survived, and the model stays finite and keeps learning.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import torch

from streamlearn.core.engine import Engine
from streamlearn.core.errors import ModelError, RequestError
from streamlearn.core.experts.expert import NeuralExpert
from streamlearn.core.preprocess import LabelError, LabelIndex
from streamlearn.core.types import Sample
from streamlearn.daemon import Daemon
from streamlearn.metrics import Metrics, ServingMetrics
from streamlearn.serve.board import SnapshotBoard
from streamlearn.serve.core import LearnerView, ServingCore
from streamlearn.settings import ModelSettings, load_settings
from streamlearn.sinks import MemorySink
from streamlearn.sources import MemorySource
from streamlearn.sources.base import AssignmentListener
from tests.support.seqexpert import SequenceCheckExpert


class Source(MemorySource):
    def _bind(self, listener: AssignmentListener) -> Source:
        self._listener = listener
        return self


def make(tmp_path: Path, values: list[bytes], **sections: Any) -> tuple[Daemon, Source, MemorySink]:
    sections = {"model": {"hidden": [8]}, **sections}
    settings = load_settings(
        None,
        checkpoint={"dir": str(tmp_path), "every_samples": 10**9, "every_seconds": 3600},
        **sections,
    )
    source, sink = Source("in", [values]), MemorySink()
    daemon = Daemon(
        settings,
        source_factory=lambda listener: source._bind(listener),
        sink_factory=lambda metrics: sink,
        metrics=Metrics(),
    )
    assert daemon.start()
    return daemon, source, sink


def drain(daemon: Daemon, source: MemorySource, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if source.exhausted() and len(daemon.buffer) == 0 and not daemon.inbox.pending():
            return
        daemon.step()
    raise AssertionError("the daemon did not drain its source")


def good(n: int, start: int = 0, labeled: bool = True) -> list[bytes]:
    out = []
    for i in range(start, start + n):
        sample: dict[str, object] = {"x": [i % 5, (i * 3) % 7, i % 2], "id": f"s{i}"}
        if labeled:
            sample["y"] = i % 2
        out.append(json.dumps(sample).encode())
    return out


def tensors(state: object) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, Mapping):
        return [t for v in state.values() for t in tensors(v)]
    if isinstance(state, list | tuple):
        return [t for v in state for t in tensors(v)]
    return []


def assert_finite(engine: Engine) -> None:
    state = engine.state_dict()
    floats = [t for t in tensors(state) if t.is_floating_point()]
    assert floats and all(bool(torch.isfinite(t).all()) for t in floats)


def counted(daemon: Daemon, name: str, **labels: str) -> float:
    return daemon.metrics.registry.get_sample_value(name, labels) or 0.0


# -- values beyond float32 ------------------------------------------------------------------


def test_a_value_beyond_float32_is_refused_and_the_model_stays_finite(tmp_path: Path) -> None:
    hostile = b'{"x": [1e300, 1, 2], "y": 1}'
    values = [*good(50), hostile, *good(50, 50), *good(5, 100, labeled=False)]
    daemon, source, sink = make(tmp_path, values)
    drain(daemon, source)
    [dead] = sink.dead
    assert (dead.reason, dead.source.offset, dead.value) == ("non_finite", 50, hostile)
    assert daemon.engine.samples_learned == 100
    assert_finite(daemon.engine)
    assert [p.id for p in sink.predicted] == [f"s{i}" for i in range(100, 105)]
    assert all(p.prediction in (0, 1) for p in sink.predicted)
    assert daemon.checkpoint("test")


def test_a_value_beyond_float32_in_a_batch_record_is_refused_alone(tmp_path: Path) -> None:
    batch = {
        "samples": [
            {"x": [1, 2, 3], "y": 0},
            {"x": [1, -1e39, 3], "y": 1},
            {"x": [4, 5, 6], "y": 1},
        ]
    }
    daemon, source, sink = make(tmp_path, [*good(20), json.dumps(batch).encode()])
    drain(daemon, source)
    [dead] = sink.dead
    assert (dead.reason, dead.sample_index) == ("non_finite", 1)
    assert daemon.engine.samples_learned == 22
    assert_finite(daemon.engine)


class InboxLearner:
    """Serving's client to the learner, here handing samples straight to its inbox."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.up = True

    def learn(self, samples: list[Sample]) -> Future[dict[str, int]]:
        future: Future[dict[str, int]] = Future()
        future.set_result({"accepted": len(samples) if self.daemon.inbox.offer(samples) else 0})
        return future

    def adapt_on(self, rows: list[list[float]]) -> None: ...

    def keep_served(self, rows: list[dict[str, Any]]) -> None: ...

    def checkpoint(self) -> Future[dict[str, Any]]:
        raise NotImplementedError

    def forget(self, samples: list[Sample], expert: str | None) -> Future[dict[str, Any]]:
        raise NotImplementedError

    def view(self) -> LearnerView:
        return LearnerView()


def test_a_value_beyond_float32_posted_to_v1_learn_is_refused_with_422(tmp_path: Path) -> None:
    daemon, source, _ = make(tmp_path, good(40))
    drain(daemon, source)
    assert isinstance(daemon.snapshots, SnapshotBoard)  # the default publisher
    core = ServingCore(daemon.settings, daemon.snapshots, InboxLearner(daemon), ServingMetrics())
    with pytest.raises(RequestError) as refused:
        core.learn([{"x": [1, 2, 3], "y": 0}, {"x": [1e300, 1, 2], "y": 1}])
    assert (refused.value.status, refused.value.reason) == (422, "non_finite")
    assert "samples[1].x[0]" in str(refused.value)
    assert daemon.inbox.samples == 0  # all or none
    assert core.learn([{"x": [1, 2, 3], "y": 0}]).result() == {"accepted": 1}


def test_a_value_beyond_float32_reaching_the_learner_directly_is_dead_lettered(
    tmp_path: Path,
) -> None:
    # Samples from /v1/learn cross to the learner as plain values: the engine checks again.
    daemon, source, sink = make(tmp_path, good(40))
    drain(daemon, source)
    daemon.inbox.offer([Sample([1.0, 2.0, 3.0], 0), Sample([1e300, 1.0, 2.0], 1)])
    drain(daemon, source)
    [dead] = sink.dead
    assert (dead.reason, dead.source.topic, dead.sample_index) == (
        "non_finite",
        "http:/v1/learn",
        1,
    )
    assert daemon.engine.samples_learned == 41
    assert_finite(daemon.engine)


def test_values_at_the_float32_limit_keep_the_statistics_finite() -> None:
    # Finite in float32, but their squares are not: the statistics are float64.
    engine = Engine(ModelSettings(hidden=[8], n_features=3))
    top = 3.4e38
    batches = [
        [Sample([top, -top, float(i)], i % 2), Sample([1.0, 2.0, 3.0], 1 - i % 2)]
        for i in range(10)
    ]
    for batch in batches:
        engine.process(batch)
    assert engine.scaler is not None
    assert engine.scaler.count > 2
    assert_finite(engine)


# -- labels ----------------------------------------------------------------------------------


@pytest.mark.parametrize("label", [10**20, 2**63, -(2**63) - 1, 1e20])
def test_an_integer_label_outside_int64_is_refused(tmp_path: Path, label: float) -> None:
    value = json.dumps({"x": [1, 2, 3], "y": label}).encode()
    daemon, source, sink = make(tmp_path, [*good(10), value])
    drain(daemon, source)
    assert [d.reason for d in sink.dead] == ["bad_label"]
    assert daemon.engine.labels.labels == [0, 1]


def test_a_400_kb_label_is_refused(tmp_path: Path) -> None:
    value = json.dumps({"x": [1, 2, 3], "y": "z" * 400_000}).encode()
    daemon, source, sink = make(tmp_path, [json.dumps({"x": [1, 2, 3], "y": "a"}).encode(), value])
    drain(daemon, source)
    [dead] = sink.dead
    assert dead.reason == "bad_label" and len(dead.detail) < 200
    assert daemon.engine.labels.labels == ["a"]


def test_int_and_string_labels_do_not_mix(tmp_path: Path) -> None:
    values = [json.dumps({"x": [1, 2, 3], "y": y}).encode() for y in (1, "1", 2, "cat")]
    daemon, source, sink = make(tmp_path, values)
    drain(daemon, source)
    assert daemon.engine.labels.labels == [1, 2]
    assert [(d.reason, d.source.offset) for d in sink.dead] == [("bad_label", 1), ("bad_label", 3)]
    assert "this model's classes are integers; got the string '1'" in sink.dead[0].detail


def test_string_labels_refuse_integers() -> None:
    engine = Engine(ModelSettings(hidden=[], n_features=1))
    result = engine.process([Sample([0.0], "a"), Sample([1.0], 7), Sample([2.0], True)])
    assert [(r.index, r.reason) for r in result.rejections] == [(1, "bad_label"), (2, "bad_label")]
    assert "this model's classes are strings; got the integer 7" in result.rejections[0].detail
    assert engine.labels.labels == ["a"]


def test_junk_labels_cannot_lock_out_real_classes(tmp_path: Path) -> None:
    real = [
        json.dumps({"x": [i % 3, 1, 2], "y": label}).encode()
        for i in range(30)
        for label in ("a", "b")
    ]
    junk = [json.dumps({"x": [1, 2, 3], "y": f"junk{i}"}).encode() for i in range(64)]
    late = [json.dumps({"x": [2, 2, 2], "y": "c"}).encode()] * 5
    ask = [json.dumps({"x": [2, 2, 2], "id": "q"}).encode()]
    daemon, source, sink = make(
        tmp_path,
        real + junk + late + ask,
        model={"hidden": [8], "max_classes": 4},
        engine={"max_batch": 4},
    )
    drain(daemon, source)
    labels = daemon.engine.labels
    assert labels.labels == ["a", "b", "c", "junk61"]  # a and b were learned 30 times each
    assert labels.counts == [30, 30, 5, 1]
    # Two slots are open to junk. In each batch of four junk labels two take them over and
    # two are refused: a slot used in a batch is never handed over within it (the rows
    # before would be learned as the new class).
    refused = [json.loads(d.value)["y"] for d in sink.dead]
    assert refused == [f"junk{i}" for i in range(64) if i % 4 >= 2]
    assert {d.reason for d in sink.dead} == {"too_many_classes"}
    assert counted(daemon, "streamlearn_classes_recycled_total") == 15 * 2 + 1
    [prediction] = sink.predicted
    assert prediction.probabilities is not None
    assert list(prediction.probabilities) == ["a", "b", "c", "junk61"]


def test_a_full_model_without_recycling_refuses_new_labels() -> None:
    engine = Engine(ModelSettings(hidden=[], n_features=1, max_classes=2, rare_class_samples=0))
    engine.process([Sample([0.0], "a"), Sample([1.0], "b")])
    result = engine.process([Sample([2.0], "c")])
    assert [(r.index, r.reason) for r in result.rejections] == [(0, "too_many_classes")]


def test_a_recycled_slot_answers_with_its_new_label() -> None:
    engine = Engine(ModelSettings(hidden=[], n_features=1, max_classes=3))
    engine.process([Sample([0.0], "a")] * 4 + [Sample([1.0], "b")] * 4 + [Sample([2.0], "j")])
    result = engine.process([Sample([2.0], "c")])
    [recycled] = result.recycled
    assert (recycled.index, recycled.old, recycled.old_count, recycled.new) == (2, "j", 1, "c")
    assert engine.labels.labels == ["a", "b", "c"]
    [prediction] = engine.process([Sample([2.0])]).predictions
    assert prediction.probabilities is not None
    assert set(prediction.probabilities) == {"a", "b", "c"}


def test_the_least_learned_slot_is_recycled_the_oldest_first() -> None:
    index = LabelIndex(capacity=4, rare=3)
    for label in ["a", "a", "a", "b", "c", "c", "d"]:
        index.new_batch()
        index.encode(label)
    index.new_batch()
    assert index.encode("e") == 1  # b and d were learned once; b longer ago
    assert index.encode("f") == 3  # d; e's slot was used in this batch
    assert index.labels == ["a", "e", "c", "f"]
    assert [(r.index, r.old, r.new) for r in index.take_recycled()] == [
        (1, "b", "e"),
        (3, "d", "f"),
    ]


def test_a_slot_used_in_the_batch_is_not_recycled_within_it() -> None:
    index = LabelIndex(capacity=2, rare=3)
    index.new_batch()
    assert [index.encode(label) for label in ("a", "b")] == [0, 1]
    with pytest.raises(LabelError, match="max_classes"):
        index.encode("c")


def test_label_counts_survive_a_checkpoint_and_old_ones_are_never_recycled() -> None:
    index = LabelIndex(capacity=2, rare=3)
    index.encode("a")
    index.encode("b")
    state = index.state_dict()
    assert state["counts"] == [1, 1]
    restored = LabelIndex(capacity=2, rare=3)
    restored.load_state_dict(state)
    restored.new_batch()
    assert restored.encode("c") == 0
    old = LabelIndex(capacity=2, rare=3)
    old.load_state_dict({"capacity": 2, "labels": ["a", "b"]})  # written before counts
    old.new_batch()
    with pytest.raises(LabelError, match="max_classes"):
        old.encode("c")
    assert old.encode("a") == 0


# -- width and ids ---------------------------------------------------------------------------


def test_a_huge_first_record_does_not_fix_the_width(tmp_path: Path) -> None:
    huge = json.dumps({"x": [0] * 500_000, "y": 0}).replace(" ", "").encode()
    assert len(huge) < 1_048_576
    daemon, source, sink = make(tmp_path, [huge, *good(20)])
    drain(daemon, source)
    [dead] = sink.dead
    assert (dead.reason, dead.source.offset) == ("feature_count", 0)
    assert "model.max_features=10000" in dead.detail
    assert daemon.engine.n_features == 3
    assert daemon.engine.samples_learned == 20


def test_the_engine_never_builds_wider_than_max_features() -> None:
    engine = Engine(ModelSettings(hidden=[4], max_features=100))
    result = engine.process([Sample([0.0] * 500, 1), Sample([1.0, 2.0], 0)])
    assert engine.n_features == 2
    assert [(r.index, r.reason) for r in result.rejections] == [(0, "feature_count")]
    alone = Engine(ModelSettings(hidden=[4], max_features=100))
    assert [r.reason for r in alone.process([Sample([0.0] * 500, 1)]).rejections] == [
        "feature_count"
    ]
    assert alone.n_features is None and alone.pool is None
    with pytest.raises(ModelError, match="max_features"):
        alone._build(500)


def test_a_long_id_is_refused(tmp_path: Path) -> None:
    long_id = json.dumps({"x": [1, 2, 3], "id": "i" * 700_000}).encode()
    daemon, source, sink = make(tmp_path, [*good(20), long_id, *good(1, 20, labeled=False)])
    drain(daemon, source)
    [dead] = sink.dead
    assert (dead.reason, dead.source.offset) == ("bad_id", 20)
    assert [p.id for p in sink.predicted] == ["s20"]


# -- the step guard --------------------------------------------------------------------------


def test_rows_whose_loss_is_not_finite_are_refused_and_the_rest_learned() -> None:
    engine = Engine(ModelSettings(standardize=False, n_features=3))
    result = engine.process(
        [Sample([1.0, 2.0, 3.0], 0), Sample([3e38, 3e38, -3e38], 1), Sample([0.5, 0.1, 0.2], 1)]
    )
    assert [(r.index, r.reason) for r in result.rejections] == [(1, "non_finite")]
    assert result.labeled == 2 and engine.samples_learned == 2
    assert_finite(engine)


def neural(engine: Engine) -> NeuralExpert:
    """The engine's expert, a built-in network (every test here but the last builds one)."""
    expert = engine.expert
    assert isinstance(expert, NeuralExpert)
    return expert


def expert_weights(engine: Engine) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in neural(engine).module.state_dict().items()}


def test_a_non_finite_gradient_skips_the_step_and_is_counted(tmp_path: Path) -> None:
    daemon, source, _ = make(tmp_path, good(16), engine={"max_batch": 16})
    drain(daemon, source)
    module = neural(daemon.engine).module
    before = expert_weights(daemon.engine)
    # Tensor.register_hook has no annotations in torch: the weight is reached through Any.
    weight: Any = next(module.parameters())
    hook = weight.register_hook(lambda g: torch.full_like(g, float("nan")))
    daemon.inbox.offer([Sample([1.0, 2.0, 3.0], 0)] * 8)
    drain(daemon, source)
    hook.remove()
    after = expert_weights(daemon.engine)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert counted(daemon, "streamlearn_steps_skipped_total", reason="gradient") == 1
    assert_finite(daemon.engine)


def test_a_learning_rate_of_1e30_is_undone_every_step_and_never_checkpointed(
    tmp_path: Path,
) -> None:
    daemon, source, _ = make(
        tmp_path,
        good(64),
        engine={"max_batch": 16},
        model={"hidden": [8], "n_features": 3, "optimizer": "sgd", "learning_rate": 1e30},
    )
    initial = expert_weights(daemon.engine)
    drain(daemon, source)
    after = expert_weights(daemon.engine)
    assert all(torch.equal(initial[k], after[k]) for k in initial)
    assert counted(daemon, "streamlearn_steps_skipped_total", reason="weights") == 4
    assert_finite(daemon.engine)
    assert daemon.checkpoint("test")


def test_weights_go_back_to_the_last_good_copy_not_the_first() -> None:
    from streamlearn.core.experts.guard import GOOD_EVERY

    engine = Engine(ModelSettings(hidden=[8], n_features=3))
    batch = [Sample([float(i % 3), 1.0, float(i % 2)], i % 2) for i in range(8)]
    for _ in range(GOOD_EVERY):
        engine.process(batch)
    good_copy = expert_weights(engine)  # the guard refreshed its copy after this step
    engine.process(batch)
    expert = neural(engine)
    step = expert.optimizer.step

    def poisoned_step(*args: Any, **kwargs: Any) -> None:
        step(*args, **kwargs)
        with torch.no_grad():
            next(expert.module.parameters())[0, 0] = float("inf")

    # The fault is injected on purpose: a plain function over the optimizer's own method.
    expert.optimizer.step = poisoned_step  # type: ignore[method-assign, assignment]
    result = engine.process(batch)
    assert result.steps_skipped == {"weights": 1}
    restored = expert_weights(engine)
    assert all(torch.equal(good_copy[k], restored[k]) for k in good_copy)
    expert.optimizer.step = step  # type: ignore[method-assign]  # the real step is put back
    engine.process(batch)
    assert_finite(engine)


def test_a_non_finite_loss_skips_the_step() -> None:
    engine = Engine(ModelSettings(hidden=[8], n_features=3))
    engine.process([Sample([1.0, 2.0, 3.0], 0), Sample([0.0, 1.0, 0.0], 1)])
    expert = neural(engine)
    before = expert_weights(engine)
    expert.learn(torch.tensor([[float("nan"), 0.0, 0.0]]), torch.tensor([0]))
    assert expert.skipped == "loss"
    after = expert_weights(engine)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_skipped_step_leaves_batch_norm_statistics_finite() -> None:
    engine = Engine(ModelSettings(hidden=[8], n_features=3, norm="batch"))
    built = expert_weights(engine)  # the good copy until GOOD_EVERY steps have passed
    batch = [Sample([float(i % 3), 1.0, float(i % 2)], i % 2) for i in range(8)]
    engine.process(batch)
    expert = neural(engine)
    x = torch.tensor([[float("nan"), 0.0, 0.0], [1.0, 2.0, 3.0], [0.0, 1.0, 0.0]])
    expert.learn(x, torch.tensor([0, 1, 0]))  # the forward pass moves the running mean
    assert expert.skipped == "loss"
    after = expert_weights(engine)
    assert any("running_mean" in k for k in after)
    assert all(torch.equal(built[k], after[k]) for k in built)
    assert_finite(engine)


def test_a_user_expert_keeps_working_under_the_guard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEQ_LOG", str(tmp_path / "seq.log"))
    values = [json.dumps({"x": [1, i + 1], "y": 1.0}).encode() for i in range(20)]
    daemon, source, sink = make(
        tmp_path,
        [*values, b'{"x": [1, 1e300], "y": 1}'],
        model={
            "task": "regression",
            "standardize": False,
            "factory": "tests.support.seqexpert:build",
        },
        experts={"enabled": False},
    )
    drain(daemon, source)
    assert [d.reason for d in sink.dead] == ["non_finite"]
    assert isinstance(daemon.engine.expert, SequenceCheckExpert)
    assert daemon.engine.expert.last_seq == {1: 20}
