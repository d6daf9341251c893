"""The selector and the replay memory on their own: seeded, with exact expectations."""

import pytest
import torch

from streamlearn.core.experts.replay import ReplayBuffer, Reservoir
from streamlearn.core.experts.selector import Selector
from streamlearn.settings import ReplaySettings, SelectorSettings
from streamlearn.testing import roundtrip


def test_a_reservoir_keeps_a_uniform_sample_of_everything_offered() -> None:
    reservoir = Reservoir(200, seed=0)
    for start in range(0, 20_000, 32):
        rows = torch.arange(start, min(start + 32, 20_000)).float().unsqueeze(1)
        reservoir.add(rows, rows.squeeze(1).long())
    kept = reservoir.rows()
    assert kept is not None
    held = kept[0].squeeze(1)
    assert reservoir.size == 200 and reservoir.seen == 20_000
    assert torch.unique(held).numel() == 200  # what Tensor.unique calls (that one is untyped)
    # Uniform over 0..19999: mean 10000, sd of the mean of 200 about 408.
    assert abs(float(held.mean()) - 10_000) < 1_300
    assert int((held < 10_000).sum()) in range(80, 121)  # not just the latest rows


def test_a_reservoir_round_trips_and_continues_identically() -> None:
    a = Reservoir(50, seed=1)
    a.add(torch.randn(80, 3), torch.arange(80))
    b = Reservoir(50, seed=99)
    b.load_state_dict(roundtrip(a.state_dict()), torch.device("cpu"))
    more = torch.randn(40, 3), torch.arange(80, 120)
    a.add(*more)
    b.add(*more)
    a_rows, b_rows = a.rows(), b.rows()
    assert a_rows is not None and b_rows is not None
    assert torch.equal(a_rows[0], b_rows[0]) and torch.equal(a.sample(10)[1], b.sample(10)[1])


def test_class_balanced_replay_gives_a_rare_class_its_share() -> None:
    y = torch.tensor([0] * 950 + [1] * 50)[torch.randperm(1_000)]
    x = torch.randn(1_000, 2)
    buffer = ReplayBuffer(ReplaySettings(capacity=100, class_balanced=True), seed=0)
    buffer.add(x, y)
    held = {k: r.size for k, r in buffer.reservoirs.items()}
    assert held == {0: 50, 1: 50}
    assert len(buffer) == 100
    plain = ReplayBuffer(ReplaySettings(capacity=100), seed=0)
    plain.add(x, y)
    plain_rows = plain.reservoirs[0].rows()
    assert plain_rows is not None
    assert int((plain_rows[1] == 1).sum()) < 15  # about 5 of 100


def two_clusters(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 4, generator=generator)
    slot = torch.randint(0, 2, (n,), generator=generator)
    x[:, 0] += torch.where(slot == 1, 3.0, -3.0)
    return x, slot


def test_the_selector_routes_a_clear_two_regime_input() -> None:
    generator = torch.Generator().manual_seed(0)
    selector = Selector(SelectorSettings(), 4, max_experts=4, device=torch.device("cpu"), seed=0)
    for _ in range(300):
        x, slot = two_clusters(32, generator)
        for s in (0, 1):
            rows = x[slot == s]
            selector.observe(rows, rows, s, alive=[0, 1])
    x, slot = two_clusters(1_000, generator)
    routed = selector.route(x, {0: "a", 1: "b"}, fallback="a")
    expected = ["b" if s else "a" for s in slot.tolist()]
    assert sum(r == e for r, e in zip(routed, expected, strict=True)) >= 990
    rolling, cumulative = selector.accuracy
    assert rolling > 0.99 and cumulative > 0.9


def test_an_unsure_selector_falls_back_to_the_active_expert() -> None:
    settings = SelectorSettings(threshold=1.0)  # nothing is ever that sure
    selector = Selector(settings, 4, max_experts=2, device=torch.device("cpu"), seed=0)
    generator = torch.Generator().manual_seed(0)
    x, slot = two_clusters(64, generator)
    selector.observe(x[slot == 0], x[slot == 0], 0, alive=[0, 1])
    selector.observe(x[slot == 1], x[slot == 1], 1, alive=[0, 1])
    assert selector.route(x, {0: "a", 1: "b"}, fallback="b") == ["b"] * 64


def test_a_forgotten_slot_loses_its_pairs() -> None:
    selector = Selector(SelectorSettings(), 4, max_experts=3, device=torch.device("cpu"), seed=0)
    x = torch.randn(10, 4)
    selector.observe(x, x, 0, alive=[0, 1])
    selector.observe(x, x, 1, alive=[0, 1])
    selector.move(1, 2)
    assert sorted(selector.pairs) == [0, 2] and selector.pairs[2].seen == 10
    selector.forget(0)
    assert sorted(selector.pairs) == [2]


@pytest.mark.parametrize("ratio,extra", [(0.0, 0), (0.5, 16), (1.0, 32)])
def test_replay_mixes_old_samples_into_each_step(ratio: float, extra: int) -> None:
    from streamlearn.core.engine import Engine
    from streamlearn.core.types import Sample
    from streamlearn.settings import ExpertsSettings, ModelSettings

    engine = Engine(
        ModelSettings(hidden=[4]), experts=ExpertsSettings(replay=ReplaySettings(ratio=ratio))
    )
    batches = [[Sample([float(i), 1.0], i % 2) for i in range(32)] for _ in range(3)]
    engine.process(batches[0])
    assert engine.pool is not None
    member = engine.pool.active
    sizes: list[int] = []
    learn = member.expert.learn

    def counted(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        sizes.append(x.shape[0])
        return learn(x, y)

    # Counts the rows: the method is wrapped on the instance on purpose.
    member.expert.learn = counted  # type: ignore[method-assign]
    engine.process(batches[1])
    assert sizes == [32 + extra]
    assert len(member.replay) == (64 if ratio else 0)
