"""The selector's own cadence and the pair memory behind it (issue 16, pool overhead).

The selector steps once per ``batch`` new pairs, never with one expert; the routes it is
scored on are scored together but exactly as if each batch were scored when it came; its
pairs live in one tensor and a checkpoint taken mid-cadence continues identically.
"""

import torch

from streamlearn.core.experts.replay import PairMemory, Reservoir
from streamlearn.core.experts.selector import Selector
from streamlearn.settings import SelectorSettings
from streamlearn.testing import roundtrip

CPU = torch.device("cpu")


def reference_reservoir(capacity: int, seed: int, batches: list[torch.Tensor]) -> torch.Tensor:
    """Algorithm R as first written here (positions, draws and winners as tensors): what a
    reservoir must keep, however it is computed."""
    rng = torch.Generator().manual_seed(seed)
    kept = torch.zeros(capacity, batches[0].shape[1])
    seen = 0
    for x in batches:
        positions = torch.arange(seen, seen + x.shape[0])
        draws = (torch.rand(x.shape[0], generator=rng) * (positions + 1)).long()
        slots = torch.where(positions < capacity, positions, draws).tolist()
        winners = {slot: row for row, slot in enumerate(slots) if slot < capacity}
        if winners:
            kept[torch.tensor(list(winners))] = x[torch.tensor(list(winners.values()))]
        seen += x.shape[0]
    return kept[: min(seen, capacity)]


def test_a_reservoir_keeps_what_algorithm_r_keeps_however_the_rows_are_batched() -> None:
    generator = torch.Generator().manual_seed(0)
    for capacity, sizes in ((50, [7, 13, 32, 1, 40] * 20), (40, [40, 1, 39, 64]), (3, [5, 1])):
        batches = [torch.randn(n, 3, generator=generator) for n in sizes]
        reservoir = Reservoir(capacity, seed=4)
        for x in batches:
            reservoir.add(x, torch.zeros(x.shape[0], dtype=torch.long))
        held = reservoir.rows()
        assert held is not None
        assert torch.equal(held[0], reference_reservoir(capacity, 4, batches))


def clusters(slot: int, n: int, generator: torch.Generator) -> torch.Tensor:
    x = torch.randn(n, 4, generator=generator)
    x[:, 0] += 3.0 * slot
    return x


def test_the_selector_steps_once_per_batch_of_new_pairs_and_never_with_one_expert() -> None:
    settings = SelectorSettings(batch=64, pairs_per_expert=96)
    selector = Selector(settings, 4, max_experts=4, device=CPU, seed=0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(10):  # one expert: nothing to route between, nothing to learn
        x = clusters(0, 32, generator)
        selector.observe(x, x, 0, alive=[0])
    assert selector.steps == 0 and selector.pairs[0].seen == 320
    for _ in range(2):  # a new expert, its pairs filling: a step every learning step
        x = clusters(1, 32, generator)
        selector.observe(x, x, 1, alive=[0, 1])
    assert selector.steps == 2
    for _ in range(20):  # then one step per 64 new pairs: every other batch of 32
        x = clusters(1, 32, generator)
        selector.observe(x, x, 1, alive=[0, 1])
    assert selector.steps == 12
    x = clusters(1, 640, generator)
    selector.observe(x, x, 1, alive=[0, 1])  # a big batch takes one step and leaves no debt
    assert selector.steps == 13
    x = clusters(1, 32, generator)
    selector.observe(x, x, 1, alive=[0, 1])
    assert selector.steps == 14 and selector.fresh < 64


def test_routes_are_scored_as_if_each_batch_were_scored_when_it_came() -> None:
    selector = Selector(SelectorSettings(), 4, max_experts=4, device=CPU, seed=0)
    generator = torch.Generator().manual_seed(1)
    hits = scored = 0
    every: list[bool] = []
    for step in range(300):
        slot = (step // 25) % 3  # regimes in turn, so some routes miss
        alive = [0, 1, 2]
        x = clusters(slot, 16, generator)
        if selector.trained:  # what the network routes now, before it learns anything more
            with torch.inference_mode():
                chosen = selector.net(x)[:, alive].argmax(dim=1)
            hit = torch.tensor(alive)[chosen] == slot
            hits, scored = hits + int(hit.sum()), scored + hit.numel()
            every += hit.tolist()
        selector.observe(x, x, slot, alive)
    rolling, cumulative = selector.accuracy
    assert selector.scored == scored > 4_000 and selector.hits == hits
    assert cumulative == hits / scored and 0.5 < cumulative < 1.0
    assert abs(rolling - sum(every[-1_000:]) / 1_000) < 1e-9  # the latest 1,000 routes


def test_a_checkpoint_taken_mid_cadence_continues_identically() -> None:
    generator = torch.Generator().manual_seed(2)
    stream = [(clusters(k % 3, 24, generator), k % 3) for k in range(90)]
    settings = SelectorSettings(pairs_per_expert=50)  # full soon: the cadence is the batch's
    a = Selector(settings, 4, max_experts=4, device=CPU, seed=0)
    for x, slot in stream[:61]:  # mid-cadence, with routes not yet scored
        a.observe(x, x, slot, [0, 1, 2])
    assert 0 < a.fresh < 64 and a._unscored
    b = Selector(settings, 4, max_experts=4, device=CPU, seed=9)
    b.load_state_dict(roundtrip(a.state_dict()))
    for x, slot in stream[61:]:
        a.observe(x, x, slot, [0, 1, 2])
        b.observe(x, x, slot, [0, 1, 2])
    assert a.steps == b.steps and a.accuracy == b.accuracy
    for pa, pb in zip(a.net.parameters(), b.net.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_pair_memory_draws_each_experts_share_from_its_own_pairs() -> None:
    memory = PairMemory(capacity=20, seed=0, max_slots=8)
    for slot in (0, 1, 5):  # slot 5 grows the tensor past its first size
        memory.add(slot, torch.full((30, 2), float(slot)))
    generator = torch.Generator().manual_seed(0)
    x, y = memory.draw([0, 1, 5], 10, generator)
    assert y.tolist() == [0] * 10 + [1] * 10 + [5] * 10
    assert torch.equal(x[:, 0], y.float())  # every row drawn from its own expert's pairs
    memory.move(5, 1)
    memory.forget(0)
    assert sorted(memory.reservoirs) == [1] and memory.reservoirs[1].seen == 50
    x, y = memory.draw([1], 40, generator)
    assert set(x[:, 0].tolist()) == {1.0, 5.0} and set(y.tolist()) == {1}
    restored = PairMemory(capacity=20, seed=0, max_slots=8)
    restored.load_state_dict(roundtrip(memory.state_dict()))
    again = torch.Generator().manual_seed(3)
    assert torch.equal(
        restored.draw([1], 16, again)[0], memory.draw([1], 16, torch.Generator().manual_seed(3))[0]
    )


def test_pair_memory_restored_with_an_empty_reservoir_keeps_its_pairs_in_the_stack() -> None:
    memory = PairMemory(capacity=20, seed=0, max_slots=4)
    memory.load_state_dict(roundtrip({"2": Reservoir(20, seed=3).state_dict()}))
    memory.add(2, torch.full((5, 2), 2.0))
    x, y = memory.draw([2], 4, torch.Generator().manual_seed(0))
    assert x[:, 0].tolist() == [2.0] * 4
    memory.add(0, torch.zeros(5, 2))  # a second slot joins the same stack
    x, y = memory.draw([0, 2], 8, torch.Generator().manual_seed(0))
    assert torch.equal(x[:, 0], y.float())
