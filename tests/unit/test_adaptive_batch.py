"""Adaptive micro-batching: base size while keeping up, doubling behind, halving back."""

from __future__ import annotations

import math

from streamlearn.daemon.batching import AdaptiveBatch


def learn_steps(batch: AdaptiveBatch, steps: int, rate: float, backlog: int) -> list[int]:
    """Sizes after each of ``steps`` steps learned at ``rate`` samples/s."""
    sizes = []
    for _ in range(steps):
        batch.observe(batch.size, batch.size / rate)
        sizes.append(batch.resize(backlog))
    return sizes


def test_a_learner_that_keeps_up_stays_at_the_base_size_and_step() -> None:
    batch = AdaptiveBatch(base=32, ceiling=512, budget_s=10.0)
    # 10k samples/s, 50k waiting: 5 s to clear, inside the 10 s budget.
    assert set(learn_steps(batch, 100, rate=10_000, backlog=50_000)) == {32}
    assert batch.step_scale == 1.0


def test_a_learner_behind_doubles_every_settle_period_up_to_the_ceiling() -> None:
    batch = AdaptiveBatch(base=32, ceiling=256, budget_s=10.0)
    sizes = learn_steps(batch, 40, rate=10_000, backlog=1_000_000)  # 100 s to clear
    # No change before 10 steps at a size (the rate must be measured there first).
    assert sizes[:9] == [32] * 9
    assert sizes[9] == 64 and sizes[19] == 128 and sizes[29] == 256 and sizes[39] == 256
    assert batch.step_scale == math.sqrt(256 / 32)


def test_it_shrinks_back_once_the_backlog_clears_in_a_quarter_of_the_budget() -> None:
    batch = AdaptiveBatch(base=32, ceiling=256, budget_s=10.0)
    learn_steps(batch, 30, rate=10_000, backlog=1_000_000)
    assert batch.size == 256
    # 3 s to clear: inside the budget, above a quarter of it: the size holds.
    assert set(learn_steps(batch, 20, rate=10_000, backlog=30_000)) == {256}
    # 1 s to clear: halves every settle period down to the base.
    sizes = learn_steps(batch, 40, rate=10_000, backlog=10_000)
    assert sizes[9] == 128 and sizes[19] == 64 and sizes[29] == 32 and sizes[39] == 32


def test_a_zero_budget_or_a_ceiling_at_the_base_turns_it_off() -> None:
    for batch in (AdaptiveBatch(32, 512, 0.0), AdaptiveBatch(32, 32, 10.0)):
        assert not batch.enabled
        assert set(learn_steps(batch, 30, rate=1_000, backlog=10**9)) == {32}


def test_the_rate_is_a_moving_average_a_slow_step_moves_little() -> None:
    batch = AdaptiveBatch(base=32, ceiling=512, budget_s=10.0)
    batch.observe(32, 0.0032)  # 10k/s
    batch.observe(32, 0.032)  # one step ten times slower
    assert batch.rate is not None and 8_000 < batch.rate < 8_500


def test_a_checkpoint_never_carries_a_scaled_step_into_a_learner_at_another_scale() -> None:
    import torch

    from streamlearn.core.experts.expert import NeuralExpert, build_expert
    from streamlearn.core.models.settings import ModelSettings

    def make() -> NeuralExpert:
        expert = build_expert(
            ModelSettings(hidden=[4], learning_rate=1e-3), 3, torch.device("cpu"), 0
        )
        assert isinstance(expert, NeuralExpert)
        return expert

    scaled = make()
    scaled.scale_step(4.0)
    assert [g["lr"] for g in scaled.optimizer.param_groups] == [4e-3]
    restored = make()  # a restart: factor 1 until the daemon grows the batch again
    restored.load_state_dict(scaled.state_dict())
    assert [g["lr"] for g in restored.optimizer.param_groups] == [1e-3]


def test_reset_goes_back_to_the_base_size_at_once() -> None:
    batch = AdaptiveBatch(base=32, ceiling=256, budget_s=10.0)
    learn_steps(batch, 30, rate=10_000, backlog=1_000_000)
    assert batch.size == 256
    assert batch.reset() == 32 and batch.step_scale == 1.0
