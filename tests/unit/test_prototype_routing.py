"""Class prototypes per expert: nearest-mean routing below the selector's threshold, and the
shortlist of experts a decision window runs through their networks."""

import math

import torch
from torch import nn

from streamlearn.core.engine import Engine
from streamlearn.core.experts.prototypes import InputPrototypes, nearest
from streamlearn.core.experts.selector import route
from streamlearn.settings import ExpertsSettings
from streamlearn.testing import roundtrip
from tests.unit.test_expert_pool import MODEL, decisions, regimes


def two_regimes() -> dict[str, InputPrototypes]:
    """A: class 1 at (2, 0), class 0 at (-2, 0); B: class 1 at (0, 2), class 0 at (0, -2)."""
    a, b = InputPrototypes(2, 3), InputPrototypes(2, 3)
    a.update(torch.tensor([[2.0, 0.0], [-2.0, 0.0]]), torch.tensor([1, 0]))
    b.update(torch.tensor([[0.0, 2.0], [0.0, -2.0]]), torch.tensor([1, 0]))
    return {"a": a, "b": b}


def test_nearest_names_the_expert_with_the_closest_class_mean() -> None:
    weights = {id_: p.weights() for id_, p in two_regimes().items()}
    rows = torch.tensor([[1.9, 0.1], [0.2, -1.5], [-2.5, 0.3], [0.1, 3.0]])
    assert nearest(weights, rows) == ["a", "b", "a", "b"]


def test_the_prototype_loss_is_lowest_for_the_regime_that_labels_like_the_rows() -> None:
    protos = two_regimes()
    rows, labels = torch.tensor([[1.5, 0.5], [-1.5, -0.5]]), torch.tensor([1, 0])  # A's rule
    a, b = (float(protos[e].losses(rows, labels).mean()) for e in "ab")
    assert a < 0.01 < b
    # a class the expert never saw costs at most LOGIT_SPAN + log(classes), not thousands
    assert float(protos["a"].losses(rows[:1], torch.tensor([2]))[0]) <= 30.0 + math.log(3)


def test_unsure_rows_go_to_the_nearest_prototype_instead_of_the_fallback() -> None:
    net = nn.Linear(2, 2)  # zero weights: 50/50 on both slots, below any threshold > 0.5
    nn.init.zeros_(net.weight)
    nn.init.zeros_(net.bias)
    weights = {id_: p.weights() for id_, p in two_regimes().items()}
    rows = torch.tensor([[2.0, 0.0], [0.0, -2.0]])
    ids = {0: "a", 1: "b"}
    assert route(net, rows, ids, "b", 0.7) == ["b", "b"]
    assert route(net, rows, ids, "b", 0.7, lambda x: nearest(weights, x)) == ["a", "b"]
    assert route(net, rows, ids, "b", 0.5, lambda x: nearest(weights, x)) == ["a", "a"]  # sure


def test_a_shortlisted_decision_runs_only_the_active_expert_and_the_nearest_others() -> None:
    engine = Engine(MODEL, experts=ExpertsSettings(prototypes={"shortlist": 1}))
    samples = regimes("ABCA")
    found = []
    for start in range(0, len(samples), 32):
        found += engine.process(samples[start : start + 32]).pool_events
    # The same decisions as scoring every expert (test_expert_pool's streams): A came back.
    assert [(e.kind, e.expert, e.previous, e.sample) for e in found] == [
        ("spawn", "1", "0", 3_136),
        ("spawn", "2", "1", 6_144),
        ("switch", "0", "2", 9_152),
    ]
    # The last window ran C's expert (active) and A's (the shortlist of one): B labels A's
    # rows the opposite way, its prototype loss is the highest, its network never ran.
    scores = found[-1].scores
    assert scores["1"] == math.inf
    assert scores["0"] < 0.2 < scores["2"] < math.inf


def test_prototypes_learn_with_their_expert_and_survive_a_checkpoint() -> None:
    engine = Engine(MODEL, experts=ExpertsSettings(prototypes={"fallback": True}))
    decisions(engine, regimes("AB"))
    pool = engine.pool
    assert pool is not None and sorted(pool.members) == ["0", "1"]
    a, b = (pool.members[e].prototypes for e in "01")
    assert a is not None and b is not None
    # B labels as A does the other way round: a class's mean of x0 sits on opposite sides
    # (class indices in order of first appearance: the first label seen was 1, index 0)
    assert float(a.weights()[0, 0]) > 0.5 and float(b.weights()[0, 0]) < -0.5
    assert float(a.weights()[0, 1]) < -0.5 and float(b.weights()[0, 1]) > 0.5
    restored = Engine(MODEL, experts=ExpertsSettings(prototypes={"fallback": True}))
    decisions(restored, regimes("A", length=64))
    assert restored.pool is not None
    restored.pool.load_state_dict(roundtrip(pool.state_dict()))
    again = restored.pool.members["1"].prototypes
    assert again is not None and torch.equal(again.weights(), b.weights())
    router = pool.frozen_router()
    assert router is not None and router.prototypes is not None
    assert sorted(router.prototypes) == ["0", "1"]
    assert math.isfinite(float(router.prototypes["0"].sum()))
