"""The reaction to an input shift pinned on seeded streams: the exact alarm rows, the exact
batch that restarts, and which batch-norm statistics the entropy choice keeps."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from streamlearn.core.adapt.adapter import Adapter, AdaptReport, _Expertise
from streamlearn.core.adapt.base import norm_statistics
from streamlearn.core.drift.input_shift import InputShiftDetector
from streamlearn.core.engine import Engine
from streamlearn.settings import (
    AdaptSettings,
    DriftSettings,
    EngineSettings,
    ExpertsSettings,
    ModelSettings,
)
from tests.unit.test_adapt_shift import BATCH, FEATURES, engine, feed, rows, stream, teach
from tests.unit.test_input_shift import shift_delay, stable

LABELED = 320  # rows taught before the unlabeled stream (teach: 10 batches of 32)


def test_the_detector_alarms_at_the_same_rows_on_a_seeded_stream() -> None:
    # A 1-sd mean change in a tenth of 64 features: the rows from the change to the alarm.
    assert [shift_delay(seed, "mean") for seed in range(5)] == [44, 45, 40, 46, 38]
    # Away by 2 sd in every feature at row 600 and back at row 1,200: 14 rows late each.
    rng = np.random.default_rng(3)
    detector = InputShiftDetector(arl0=1e6)
    a, b, back = stable(rng, 600), stable(rng, 600) + 2.0, stable(rng, 600)
    assert detector.update_many(np.concatenate([a, b, back])) == [614, 1214]


def test_the_engine_restarts_in_the_batch_of_the_alarm_and_in_no_other() -> None:
    e = engine()
    teach(e, torch.Generator().manual_seed(0))
    x, switch = stream()
    results = feed(e, x)
    alarms = [ev.sample - LABELED for r in results for ev in r.shift_events]
    assert switch == 320 and alarms == [332]
    restarted = [i for i, r in enumerate(results) if r.adapt.resets]
    assert restarted == [332 // BATCH] == [10]
    assert results[10].adapt.resets == [("0", "input_shift")]
    # The rows of that batch before the alarm (320..331) are not adapted on: 20 of 32 are.
    assert results[10].adapt.adapted == 20
    assert results[9].adapt.adapted == results[11].adapt.adapted == BATCH


def trained(seed: int, **adapt: Any) -> Engine:
    """A CoTTA-adapted engine that answers its 2-class task confidently (80 labeled
    batches)."""
    e = engine(method="cotta", batch_size=32, memory=64, augmentations=1, **adapt)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(8):
        teach(e, generator)
    return e


def expertise(e: Engine) -> tuple[Adapter, _Expertise, torch.nn.Module]:
    assert e.adapter is not None and e.pool is not None
    module = e.pool.active_expert.module
    assert module is not None
    return e.adapter, e.adapter.experts["0"], module


def test_one_class_of_the_source_domain_after_a_wider_one_keeps_the_anchor_statistics() -> None:
    e = trained(0)
    generator = torch.Generator().manual_seed(1)
    feed(e, rows(generator, 320))
    feed(e, torch.randn(640, FEATURES, generator=generator) * 3)  # served: 3x the spread
    source = rows(generator, 256)
    one_class = source[source[:, 0] > 0][:32]  # class 1 only: its own statistics fit nothing
    adapter, state, module = expertise(e)
    assert adapter._best_statistics(state, module, one_class, 2) == "anchor"
    # In the engine's step: the anchor's statistics are served again, no restart.
    assert state.anchor is not None
    anchored = norm_statistics(state.anchor, module)
    served = {k: v.clone() for k, v in norm_statistics(module.state_dict(), module).items()}
    adapter.shifted()
    report = AdaptReport()
    adapter.offer("0", module, one_class, 2, report)
    assert report.resets == [] and report.steps == 1
    running = norm_statistics(module.state_dict(), module)
    # One step (momentum 0.1) on from the anchor's statistics, far from the served ones.
    for name in ("1.running_mean", "1.running_var"):
        from_anchor = float((running[name] - anchored[name]).norm())
        from_served = float((running[name] - served[name]).norm())
        assert 0 < from_anchor < 0.5 * from_served, name


def test_one_class_of_the_adapted_domain_keeps_the_served_statistics() -> None:
    e = trained(0)
    generator = torch.Generator().manual_seed(1)
    feed(e, rows(generator, 320))
    feed(e, rows(generator, 640, gain=4.0))  # served: adapted to the 4x domain
    shifted = rows(generator, 256, gain=4.0)
    one_class = shifted[shifted[:, 0] > 3][:32]
    adapter, state, module = expertise(e)
    before = {k: v.clone() for k, v in norm_statistics(module.state_dict(), module).items()}
    assert adapter._best_statistics(state, module, one_class, 2) == "serving"
    # Weighing the candidates leaves the served statistics as they were (the batch count
    # moves: the rows' own statistics are a batch seen).
    for name in ("1.running_mean", "1.running_var"):
        torch.testing.assert_close(module.state_dict()[name], before[name])


def test_source_weight_moves_the_statistics_that_share_back_to_the_anchors() -> None:
    x = stream()[0][:BATCH]  # one batch of the source domain: one step each
    running = {}
    for weight in (0.0, 0.5):
        e = engine(source_weight=weight, source_gate=False)
        teach(e, torch.Generator().manual_seed(0))
        _, state, module = expertise(e)
        feed(e, x)
        running[weight] = {k: v.clone() for k, v in module.state_dict().items() if "running" in k}
    assert state.anchor is not None
    for name, value in running[0.5].items():
        expected = torch.lerp(running[0.0][name], state.anchor[name], 0.5)
        torch.testing.assert_close(value, expected)
        assert not torch.allclose(value, running[0.0][name])


def test_the_gate_pulls_on_the_source_domain_and_not_on_one_the_anchor_misreads() -> None:
    e = trained(0, source_weight=0.1, source_gate=True)
    generator = torch.Generator().manual_seed(1)
    feed(e, rows(generator, 320))
    feed(e, rows(generator, 640, gain=4.0))  # served: adapted to the 4x domain
    adapter, state, module = expertise(e)
    source, shifted = rows(generator, 32), rows(generator, 32, gain=4.0)

    def surer(x: torch.Tensor) -> bool:
        entropy = adapter._predictions(module, x, 2)[0]
        return adapter._anchor_surer(state, module, x, entropy, 2)

    # The anchor's statistics blow the 4x rows up (off scale: answers confidently wrong),
    # so no pull there; back on the source domain they answer more surely than the 4x ones.
    assert adapter._anchor_entropy(state, module, shifted, 2) is None
    assert not surer(shifted)
    assert surer(source)


def running_stats(e: Engine) -> torch.Tensor:
    _, _, module = expertise(e)
    return torch.cat([v.flatten() for k, v in module.state_dict().items() if "running_" in k])


def test_the_batch_that_restarts_is_adapted_on_before_it_is_answered() -> None:
    e = engine(batch_size=BATCH, memory=64)
    teach(e, torch.Generator().manual_seed(0))
    x, _ = stream()
    results = feed(e, x)
    alarms = [ev.sample - LABELED for r in results for ev in r.shift_events]
    assert alarms == [332]
    # 20 rows of batch 10 follow the alarm: they wait; batch 11 brings the step's 32.
    assert [i for i, r in enumerate(results) if r.adapt.resets] == [11]
    answered = [r.predictions[0].model_version for r in results]
    assert {p.model_version for p in results[11].predictions} == {answered[11]}
    # Batch 11 is answered after its restart and step (2 versions on from batch 10's
    # answers; batch 10 took no step), every other batch before its own step.
    assert (results[10].adapt.steps, results[11].adapt.steps) == (0, 2)
    assert answered[11] == answered[10] + 2
    assert answered[12] == answered[11]
    assert answered[13] == answered[12] + results[12].adapt.steps == answered[12] + 1


def test_right_after_a_reset_the_gate_does_not_pull() -> None:
    e = trained(0, source_weight=0.1, source_gate=True)
    generator = torch.Generator().manual_seed(1)
    feed(e, rows(generator, 320))
    feed(e, rows(generator, 640, gain=4.0))
    adapter, state, module = expertise(e)
    source = rows(generator, 32)

    def surer() -> bool:
        entropy = adapter._predictions(module, source, 2)[0]
        return adapter._anchor_surer(state, module, source, entropy, 2)

    assert surer()  # adapted to the 4x domain: the anchor's answer the source rows surer
    adapter._reset(state, module)  # served statistics are the anchor's: a tie, no pull
    assert not surer()


def unwatched(**adapt: Any) -> Engine:
    """Norm adaptation, one step per 32 rows, the input-shift detector off."""
    return Engine(
        ModelSettings(hidden=[16], norm="batch", standardize=False, max_classes=2, seed=0),
        EngineSettings(max_batch=BATCH),
        DriftSettings(enabled=False, input_shift={"enabled": False}),
        ExpertsSettings(enabled=False),
        AdaptSettings(**({"method": "norm", "batch_size": BATCH, "memory": 0} | adapt)),
    )


def test_served_statistics_that_blow_the_rows_up_restart_without_an_alarm() -> None:
    restarts = {}
    for on_shift in ("restart", "none"):
        e = unwatched(on_shift=on_shift)
        teach(e, torch.Generator().manual_seed(0))
        x, switch = stream()  # 4x the spread from row 320: 16x the variance
        results = feed(e, x)
        assert all(not r.shift_events for r in results)  # no detector
        restarts[on_shift] = [(i, r.adapt.resets) for i, r in enumerate(results) if r.adapt.resets]
    # The first step on the new domain's rows, and no other: from then on the served
    # statistics are the new domain's own.
    assert switch // BATCH == 10
    assert restarts["restart"] == [(10, [("0", "input_shift")])]
    assert restarts["none"] == []
