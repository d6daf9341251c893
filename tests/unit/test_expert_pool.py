"""The expert pool on seeded streams: reuse on recurrence, spawn on novelty, bounded size."""

import random
from collections.abc import Mapping
from typing import Any

import pytest
import torch

from streamlearn.core.engine import Engine
from streamlearn.core.errors import CheckpointError
from streamlearn.core.experts.expert import NeuralExpert
from streamlearn.core.types import Sample
from streamlearn.settings import ExpertsSettings, ModelSettings
from streamlearn.testing import roundtrip

MODEL = ModelSettings(hidden=[8], learning_rate=0.01)


def regimes(order: str, length: int = 3_000, seed: int = 0) -> list[Sample]:
    """Visits of regimes named by letters: A is y = x0 > 0, B its opposite, C is y = x1 > 0."""
    rng = random.Random(seed)
    rules = {
        "A": lambda x: int(x[0] > 0),
        "B": lambda x: int(x[0] <= 0),
        "C": lambda x: int(x[1] > 0),
    }
    out = []
    for name in order:
        for _ in range(length):
            x = [rng.gauss(0, 1), rng.gauss(0, 1)]
            out.append(Sample(x, rules[name](x), task=name))
    return out


def decisions(
    engine: Engine, samples: list[Sample], batch: int = 32
) -> list[tuple[str, str, str | None, int]]:
    found: list[tuple[str, str, str | None, int]] = []
    for start in range(0, len(samples), batch):
        result = engine.process(samples[start : start + batch])
        found += [(e.kind, e.expert, e.previous, e.sample) for e in result.pool_events]
    return found


def test_a_returning_regime_reuses_its_expert_instead_of_spawning() -> None:
    engine = Engine(MODEL)
    assert decisions(engine, regimes("ABA")) == [
        ("spawn", "1", "0", 3_136),
        ("switch", "0", "1", 6_144),
    ]
    assert engine.pool is not None
    assert sorted(engine.pool.members) == ["0", "1"]
    assert engine.pool.active_id == "0" and engine.pool.members["0"].wins == 2
    assert engine.stats.rolling("correct") > 0.95


def test_a_new_regime_spawns_and_a_full_pool_prunes_its_least_useful_expert() -> None:
    engine = Engine(MODEL, experts=ExpertsSettings(max_experts=2))
    found = decisions(engine, regimes("ABC"))
    assert [kind for kind, *_ in found] == ["spawn", "prune", "spawn"]
    assert found[1][1] == "0"  # idle since the first drift, one win: the least useful
    assert engine.pool is not None and engine.drift is not None
    assert sorted(engine.pool.members) == ["1", "2"] and engine.pool.active_id == "2"
    assert "0" not in engine.drift.detectors  # its detector went with it


def test_merge_hands_the_dropped_experts_pairs_to_its_closest() -> None:
    engine = Engine(MODEL, experts=ExpertsSettings(max_experts=2, when_full="merge"))
    found = decisions(engine, regimes("ABC"))
    assert [kind for kind, *_ in found] == ["spawn", "merge", "spawn"]
    _, _, heir, _ = found[1]
    assert engine.pool is not None and heir is not None
    heir_slot = engine.pool.members[heir].slot
    assert engine.pool.selector.pairs[heir_slot].seen > 3_000  # its own and the merged


def test_a_false_alarm_keeps_the_active_expert() -> None:
    engine = Engine(MODEL)
    samples = regimes("A", length=4_000)
    run_until = 2_000
    decisions(engine, samples[:run_until])
    assert engine.pool is not None
    engine.pool.begin_decision(run_until)  # as if the detector had alarmed on noise
    assert decisions(engine, samples[run_until:]) == [("keep", "0", "0", 2_128)]
    assert list(engine.pool.members) == ["0"]


def test_held_samples_are_learned_after_the_decision_so_none_is_lost() -> None:
    engine = Engine(MODEL)
    data = regimes("AB")
    decisions(engine, data)
    assert engine.pool is not None
    learned = sum(m.samples_learned for m in engine.pool.members.values())
    assert learned == engine.samples_learned == len(data)


def test_the_pool_state_round_trips_through_a_weights_only_load_mid_decision() -> None:
    data = regimes("ABA")
    a = Engine(MODEL)
    decisions(a, data[:3_040])  # past the drift, inside the decision window
    assert a.pool is not None
    assert a.pool.deciding
    b = Engine(MODEL)
    b.load_state_dict(roundtrip(a.state_dict()))
    assert decisions(a, data[3_040:]) == decisions(b, data[3_040:])
    assert b.pool is not None
    for id_, member in a.pool.members.items():
        mine, theirs = member.expert, b.pool.members[id_].expert
        assert isinstance(mine, NeuralExpert) and isinstance(theirs, NeuralExpert)
        other = theirs.module
        for pa, pb in zip(mine.module.parameters(), other.parameters(), strict=True):
            assert torch.equal(pa, pb)


def test_unlabeled_samples_are_routed_to_the_expert_of_their_regime() -> None:
    engine = Engine(MODEL)
    # Two regimes whose inputs differ: the selector can tell them apart, the labels cannot.
    rng = random.Random(1)

    def visit(shift: float, flip: bool) -> list[Sample]:
        out: list[Sample] = []
        for _ in range(3_000):
            x = [rng.gauss(shift, 1), rng.gauss(0, 1)]
            out.append(Sample(x, int((x[0] > shift) != flip)))
        return out

    decisions(engine, visit(-4, False) + visit(4, True))
    assert engine.pool is not None
    assert sorted(engine.pool.members) == ["0", "1"]
    probes = [Sample([rng.gauss(-4, 1), rng.gauss(0, 1)]) for _ in range(100)]
    probes += [Sample([rng.gauss(4, 1), rng.gauss(0, 1)]) for _ in range(100)]
    experts = [p.expert for p in engine.process(probes).predictions]
    assert experts[:100].count("0") >= 95 and experts[100:].count("1") >= 95


def test_with_the_pool_off_a_drift_changes_nothing_but_is_reported() -> None:
    engine = Engine(MODEL, experts=ExpertsSettings(enabled=False))
    assert decisions(engine, regimes("ABA")) == []
    assert engine.pool is not None
    assert list(engine.pool.members) == ["0"]


def test_a_checkpoint_from_before_the_pool_restores_as_expert_zero() -> None:
    a = Engine(MODEL)
    decisions(a, regimes("A", length=500))
    old = a.state_dict()
    old["expert"] = old.pop("pool")["members"]["0"]["expert"]  # the layout before the pool
    b = Engine(MODEL)
    b.load_state_dict(roundtrip(old))
    probe = regimes("A", length=64, seed=5)
    for s in probe:
        s.y = None
    assert [p.prediction for p in a.process(probe).predictions] == [
        p.prediction for p in b.process(probe).predictions
    ]
    assert b.pool is not None
    assert list(b.pool.members) == ["0"]


def test_every_held_batch_reports_one_loss_per_sample_from_the_leader() -> None:
    engine = Engine(MODEL)
    data = regimes("ABA")
    for start in range(0, len(data), 32):
        result = engine.process(data[start : start + 32])
        assert result.losses is not None
        assert result.losses.numel() == result.labeled
    assert engine.stats.count == len(data) and engine.stats.cumulative("correct") <= 1


def test_a_checkpoint_from_a_bigger_pool_is_refused_with_the_settings_it_needs() -> None:
    a = Engine(MODEL)
    decisions(a, regimes("AB"))
    for experts in (ExpertsSettings(enabled=False), ExpertsSettings(selector={"hidden": [8]})):
        with pytest.raises(CheckpointError, match="does not fit the expert pool settings"):
            Engine(MODEL, experts=experts).load_state_dict(roundtrip(a.state_dict()))


def test_hold_returns_the_losses_of_the_expert_leading_after_the_batch() -> None:
    from streamlearn.core.experts.pool import ExpertPool

    class Constant:  # predicts its seed; the scripted loss function does the rest
        module = None
        skipped = None

        def __init__(self, seed: int) -> None:
            self.seed = seed

        def predict(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((x.shape[0],), float(self.seed))

        def learn(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return torch.zeros(x.shape[0])

        def state_dict(self) -> dict[str, Any]:
            return {}

        def load_state_dict(self, state: Mapping[str, Any]) -> None:
            pass

    # Per expert and batch, the loss of every sample: the lead changes hands in batch 3.
    script = {0: [0.5, 0.125, 0.0], 1: [0.55125, 0.0, 0.125]}

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.full((y.shape[0],), script[int(out[0])].pop(0))

    pool = ExpertPool(ExpertsSettings(), Constant, loss_fn, 2, torch.device("cpu"), seed=0)
    pool._add(pool._new_member(0), 0)
    pool.begin_decision(0)
    x, y = torch.zeros(32, 2), torch.zeros(32)
    held = [pool.hold(x, x, x, y) for _ in range(3)]
    assert [h.tolist() for h in held] == [[0.5] * 32, [0.0] * 32, [0.0] * 32]
    assert pool.leader().id == "0"
