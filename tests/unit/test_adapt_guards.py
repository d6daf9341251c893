"""The guards: the entropy filter, the collapse checks, periodic resets, and the memory."""

from typing import Any

import numpy as np
import torch

from streamlearn.core.adapt.guards import Guard
from streamlearn.core.adapt.memory import BalancedMemory
from streamlearn.core.engine import Engine
from streamlearn.core.types import Sample
from streamlearn.settings import GuardSettings
from streamlearn.testing import roundtrip
from tests.support.shifted import blobs, learn, miscalibrated
from tests.unit.test_adapt import engine, same, weights

SHIFTED, LABELS = blobs(1, 4000)
SHIFTED = miscalibrated(SHIFTED)


def trained_with(method: str, **adapt: Any) -> Engine:
    learner = engine(method, **adapt)
    learn(learner, *blobs(0, 2000))
    return learner


def adapt_until_reset(learner: Engine, rows: np.ndarray, batch: int = 32) -> tuple[int, str] | None:
    """Feed unlabeled rows; the first reset's (batch index, reason), or None."""
    for i, start in enumerate(range(0, len(rows), batch)):
        result = learner.process([Sample(r, None) for r in rows[start : start + batch].tolist()])
        if result.adapt.resets:
            return i, result.adapt.resets[0][1]
    return None


def test_one_class_for_a_whole_window_is_a_marginal_collapse_and_resets_to_the_anchor() -> None:
    learner = trained_with(
        "tent", learning_rate=0.5, guards={"window": 64, "min_marginal": 0.3, "min_entropy": 0.0}
    )
    x, y = blobs(1, 1000)
    one_class = x[y == 2]  # unshifted: every row is predicted as class 2
    assert adapt_until_reset(learner, one_class) == (1, "marginal")  # the window fills
    assert learner.adapter is not None
    anchor = learner.adapter.experts["0"].anchor
    assert anchor is not None
    assert same(anchor, weights(learner))


def test_entropy_driven_to_zero_is_an_entropy_collapse() -> None:
    learner = trained_with(
        "tent",
        learning_rate=0.5,
        guards={
            "window": 64,
            "min_entropy": 0.05,
            "min_marginal": 0.0,
            "max_entropy": 1.0,
            "guard_set": 0,
        },
    )
    fired = adapt_until_reset(learner, SHIFTED)
    assert fired is not None and fired[1] == "entropy", fired


def test_wrecked_weights_fail_the_guard_set() -> None:
    learner = trained_with(
        "cotta",
        learning_rate=1.0,
        teacher_momentum=0.0,
        restore_probability=0.0,
        guards={
            "min_entropy": 0.0,
            "min_marginal": 0.0,
            "max_entropy": 1.0,
            "guard_every": 1,
            "guard_drop": 0.15,
        },
    )
    fired = adapt_until_reset(learner, SHIFTED)
    assert fired is not None and fired[1] == "guard_set", fired
    assert learner.adapter is not None
    anchor = learner.adapter.experts["0"].anchor
    assert anchor is not None
    assert same(anchor, weights(learner))


def test_periodic_reset() -> None:
    learner = trained_with("norm", guards={"reset_every": 64})
    assert adapt_until_reset(learner, SHIFTED) == (1, "periodic")


def test_uncertain_rows_are_kept_out_of_the_gradient() -> None:
    learner = trained_with("tent", guards={"max_entropy": 1e-9})
    result = learner.process([Sample(r, None) for r in SHIFTED[:32].tolist()])
    assert result.adapt.skipped == 32 and result.adapt.adapted == 0


def test_guard_window_fires_exactly_when_full() -> None:
    guard = Guard(GuardSettings(window=16, min_marginal=0.5), seed=0)
    entropy, one_class = torch.full((8,), 0.5), torch.zeros(8, dtype=torch.long)
    assert guard.observe(entropy, one_class, n_classes=4) is None  # 8 of 16
    assert guard.observe(entropy, one_class, n_classes=4) == "marginal"
    guard.clear()
    assert guard.observe(entropy, one_class, n_classes=4) is None
    mixed = torch.tensor([0, 1, 2, 3] * 2)
    assert guard.observe(entropy, mixed, n_classes=4) is None  # 10 of 16 are class 0: 0.77
    assert guard.observe(torch.zeros(8), mixed, n_classes=4) is None  # mean entropy 0.25
    assert guard.observe(torch.zeros(8), mixed, n_classes=4) == "entropy"


def test_memory_keeps_classes_balanced_on_a_sorted_stream() -> None:
    memory = BalancedMemory(capacity=6)
    memory.add(torch.arange(6.0)[:, None], torch.tensor([0, 0, 0, 0, 1, 1]))
    # Class 2 is new: it replaces the oldest row of the class furthest over its quota of
    # 2 (class 0, row 0.0).
    memory.add(torch.tensor([[6.0]]), torch.tensor([2]))
    # Class 0 is still over its quota (3 rows): a 0 replaces the oldest 0 (row 1.0).
    memory.add(torch.tensor([[7.0]]), torch.tensor([0]))
    assert sorted(memory.rows().squeeze(1).tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    for value in (8.0, 9.0, 10.0):  # a long run of class 2 cannot take the memory over
        memory.add(torch.tensor([[value]]), torch.tensor([2]))
    assert sorted(memory.labels) == [0, 0, 1, 1, 2, 2]


def test_memory_quotas_follow_the_labels_shares() -> None:
    memory = BalancedMemory(capacity=10)
    shares = [0.8, 0.2]
    memory.add(torch.zeros(10, 1), torch.tensor([0] * 5 + [1] * 5), shares)
    memory.add(torch.ones(6, 1), torch.zeros(6, dtype=torch.long), shares)
    assert sorted(memory.labels) == [0] * 8 + [1] * 2  # 80/20, as labeled


def test_guards_keep_counting_when_labels_arrive_between_unlabeled_batches() -> None:
    learner = trained_with("norm", guards={"reset_every": 128})
    x, y = blobs(5, 1000)
    resets: list[list[tuple[str, str]]] = []
    for start in range(0, 1000, 32):
        learn(learner, x[start : start + 8], y[start : start + 8])  # moves the anchor
        rows = SHIFTED[start : start + 32].tolist()
        resets.append(learner.process([Sample(r, None) for r in rows]).adapt.resets)
        if resets[-1]:
            break
    assert resets == [[], [], [], [("0", "periodic")]]  # 4 x 32 rows
    assert learner.adapter is not None
    assert len(learner.adapter.experts["0"].memory) == 0  # the rows that led here are gone


def test_an_imbalanced_stream_is_no_marginal_collapse() -> None:
    x, y = blobs(0, 12_000)
    keep = (y == 0) | ((y == 1) & (np.arange(len(y)) % 19 == 0))  # class 1 is 5% of rows
    x, y = x[keep], y[keep]
    learner = engine("norm", guards={"window": 512})
    learn(learner, x[:1000], y[:1000])
    # Against equal shares this fires at the first full window (batch 15); against the
    # labels learned, not at all. The memory keeps the labels' proportions too: the rare
    # class is still answered as often as it comes.
    assert adapt_until_reset(learner, x[1000:]) is None
    assert learner.adapter is not None
    memory = learner.adapter.experts["0"].memory
    assert memory.labels.count(1) == 4  # its share of the labels (7%) of 64 rows, not half


def test_a_guard_set_of_one_row_is_no_guard_set_yet() -> None:
    learner = engine("cotta")
    learn(learner, *blobs(0, 1))  # batch norm learns one row with its statistics frozen
    result = learner.process([Sample(r, None) for r in SHIFTED[:32].tolist()])
    # The statistics never saw a batch and put the shifted rows off scale: the step restarts
    # first (adapt.on_shift), then adapts; the guard set takes no part in either.
    assert result.adapt.resets == [("0", "input_shift")]
    assert result.adapt.steps == 2
    assert learner.adapter is not None
    assert learner.adapter.experts["0"].guard.anchor_accuracy is None


def test_memory_restores_its_newest_rows_into_a_smaller_capacity() -> None:
    memory = BalancedMemory(capacity=6)
    memory.add(torch.arange(6.0)[:, None], torch.tensor([0, 1, 2, 0, 1, 2]))
    smaller = BalancedMemory(capacity=4)
    smaller.load_state_dict(roundtrip(memory.state_dict()), torch.device("cpu"))
    assert smaller.rows().squeeze(1).tolist() == [2.0, 3.0, 4.0, 5.0]
    assert smaller.labels == [2, 0, 1, 2]


def test_a_changed_window_starts_empty_after_a_restore() -> None:
    guard = Guard(GuardSettings(window=16), seed=0)
    guard.observe(torch.zeros(16), torch.zeros(16, dtype=torch.long), n_classes=4)
    wider = Guard(GuardSettings(window=32), seed=0)
    wider.load_state_dict(roundtrip(guard.state_dict()))
    assert wider.observe(torch.zeros(16), torch.zeros(16, dtype=torch.long), 4) is None
