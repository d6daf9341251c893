"""Which batches are adapted on before they are answered after an input shift: only those
routed to an expert whose restart waits, and only their rows from the alarm on."""

from __future__ import annotations

import torch

from streamlearn.core.engine import Engine, StepResult
from streamlearn.core.types import Sample
from tests.unit.test_adapt_shift import BATCH, FEATURES, engine, feed, stream, teach

LABELED = 320  # rows taught before the unlabeled stream (teach: 10 batches of 32)
ALARM = 332  # the alarm row of stream(), counted from the unlabeled stream's start


def taught(**adapt: int) -> Engine:
    e = engine(**adapt)
    teach(e, torch.Generator().manual_seed(0))
    return e


def versions(results: list[StepResult]) -> list[int]:
    return [r.predictions[0].model_version for r in results]


def test_a_stale_flag_on_an_expert_not_routed_to_does_not_turn_later_batches_around() -> None:
    e = taught(batch_size=BATCH, memory=64)
    assert e.adapter is not None
    # A second expert the adapter knows and the selector never routes to (the one active
    # before a pool switch): the alarm flags it too, and no step of its own clears it.
    e.adapter.labeled("1", torch.zeros(1, FEATURES), torch.zeros(1, dtype=torch.long))
    x, _ = stream()
    results = feed(e, x)
    assert [ev.sample - LABELED for r in results for ev in r.shift_events] == [ALARM]
    assert [i for i, r in enumerate(results) if r.adapt.resets] == [11]
    assert e.adapter.experts["1"].shifted and not e.adapter.experts["0"].shifted
    assert e.adapter.switch_pending(["1"]) and not e.adapter.switch_pending(["0"])
    assert {p.expert for r in results for p in r.predictions} == {"0"}
    answered = versions(results)
    # Batch 11 is answered after its restart and step; batch 12 before its own step, as
    # every later one: the stale flag of expert "1" turns none of them around.
    assert (results[10].adapt.steps, results[11].adapt.steps) == (0, 2)
    assert answered[11] == answered[10] + 2
    assert all(results[i].adapt.steps == 1 for i in range(12, len(results)))
    assert answered[12:] == [answered[11] + i for i in range(len(results) - 12)]


def test_rows_before_the_alarm_are_answered_before_the_restart() -> None:
    x, _ = stream()
    batch = x[10 * BATCH : 11 * BATCH]  # rows 320..351: the alarm at 332, 12 rows in
    samples = [Sample(r.tolist(), None, id=f"r{i}") for i, r in enumerate(batch)]
    e = taught()  # a step per 2 rows: the restart happens in the batch of the alarm
    feed(e, x[: 10 * BATCH])
    before = e.version
    result = e.process(samples)
    assert [ev.sample - LABELED for ev in result.shift_events] == [ALARM]
    assert result.adapt.resets == [("0", "input_shift")]
    assert [p.id for p in result.predictions] == [s.id for s in samples]
    # The 12 rows of the old domain are answered before the restart, the 20 after it.
    assert {p.model_version for p in result.predictions[:12]} == {before}
    assert {p.model_version for p in result.predictions[12:]} == {before + result.adapt.steps}
    assert result.adapt.steps == 2  # the restart, and one step on the 20 rows
    # With the old domain's statistics: as an engine answers them that never saw the alarm.
    twin = taught()
    feed(twin, x[: 10 * BATCH])
    old = twin.process(samples[:12])
    assert not old.shift_events
    assert [p.probabilities for p in result.predictions[:12]] == [
        p.probabilities for p in old.predictions
    ]
