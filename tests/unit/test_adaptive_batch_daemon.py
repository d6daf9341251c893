"""The daemon sizes its learning step with the backlog: larger only while it is behind."""

from __future__ import annotations

from pathlib import Path

from streamlearn.core.experts.expert import NeuralExpert
from streamlearn.settings import load_settings
from tests.unit.test_daemon import Source, drain, make, records

SHIPPED = load_settings(None)


def learning_rates(daemon_engine: object) -> set[float]:
    pool = daemon_engine.pool  # type: ignore[attr-defined]
    return {
        group["lr"]
        for expert in pool.experts().values()
        if isinstance(expert, NeuralExpert)
        for group in expert.optimizer.param_groups
    }


def test_a_backlog_past_the_budget_grows_the_batch_and_scales_the_step(tmp_path: Path) -> None:
    # 20k samples waiting against a budget of a millisecond: behind from the first steps.
    source = Source("in", [records(20_000)])
    daemon, _ = make(
        tmp_path,
        source,
        engine={"lag_budget_s": 0.001, "max_adaptive_batch": 128, "max_wait_ms": 0},
        kafka={"max_poll_records": 2_000, "max_buffered_samples": 40_000},
    )
    assert daemon.start()
    sizes = set()
    while not source.exhausted() or len(daemon.buffer):
        daemon.step()
        daemon._last_gauges = 0.0  # the lag gauge on every step, as a long run sees it
        sizes.add(daemon.batching.size)
    assert max(sizes) == 128
    assert daemon.engine.samples_learned == 20_000  # nothing lost to a resize
    factor = daemon.batching.step_scale
    assert daemon.engine.step_factor == factor
    assert learning_rates(daemon.engine) == {SHIPPED.model.learning_rate * factor}


def test_a_learner_that_keeps_up_learns_at_max_batch_and_the_configured_step(
    tmp_path: Path,
) -> None:
    source = Source("in", [records(2_000)])
    daemon, _ = make(tmp_path, source)  # the shipped budget: 10 s
    assert daemon.start()
    drain(daemon, source)
    assert daemon.batching.size == SHIPPED.engine.max_batch and daemon.engine.step_factor == 1.0
    assert learning_rates(daemon.engine) == {SHIPPED.model.learning_rate}
