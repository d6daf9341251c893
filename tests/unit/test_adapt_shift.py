"""What test-time adaptation does when the input rows change domain, at the exact switch."""

from __future__ import annotations

import io
from typing import Any

import torch

from streamlearn.core.engine import Engine, StepResult
from streamlearn.core.models import batch_norms
from streamlearn.core.types import Sample
from streamlearn.settings import (
    AdaptSettings,
    DriftSettings,
    EngineSettings,
    ExpertsSettings,
    ModelSettings,
)

FEATURES = 8
BATCH = 32


def engine(**adapt: Any) -> Engine:
    settings = {"method": "norm", "batch_size": 2, "memory": 0} | adapt
    return Engine(
        ModelSettings(hidden=[16], norm="batch", standardize=False, max_classes=2, seed=0),
        EngineSettings(max_batch=BATCH),
        DriftSettings(enabled=False, input_shift={}),
        ExpertsSettings(enabled=False),
        AdaptSettings(**settings),
    )


def rows(generator: torch.Generator, n: int, gain: float = 1.0) -> torch.Tensor:
    """Source rows, or a miscalibrated sensor's: every feature at ``gain`` times the
    spread and shifted by as much."""
    return torch.randn(n, FEATURES, generator=generator) * gain + (gain - 1.0)


def teach(e: Engine, generator: torch.Generator) -> None:
    for _ in range(10):
        x = rows(generator, BATCH)
        e.process([Sample(r.tolist(), int(r[0] > 0)) for r in x])


def feed(e: Engine, x: torch.Tensor) -> list[StepResult]:
    return [
        e.process([Sample(r.tolist(), None) for r in x[start : start + BATCH]])
        for start in range(0, len(x), BATCH)
    ]


def first_norm(e: Engine) -> torch.nn.BatchNorm1d:
    assert e.pool is not None and e.pool.active_expert.module is not None
    layer = batch_norms(e.pool.active_expert.module)[0]
    assert isinstance(layer, torch.nn.BatchNorm1d)
    return layer


def running_mean(e: Engine) -> torch.Tensor:
    mean = first_norm(e).running_mean
    assert mean is not None
    return mean


def first_linear(e: Engine) -> torch.nn.Linear:
    assert e.pool is not None and e.pool.active_expert.module is not None
    return next(m for m in e.pool.active_expert.module.modules() if isinstance(m, torch.nn.Linear))


def stream(seed: int = 0) -> tuple[torch.Tensor, int]:
    """Unlabeled rows of the source domain, then a switch to another at row 320."""
    generator = torch.Generator().manual_seed(seed + 1)
    return torch.cat([rows(generator, 320), rows(generator, 320, gain=4.0)]), 320


def test_at_the_alarm_adaptation_restarts_on_the_new_domain_rows_only() -> None:
    generator = torch.Generator().manual_seed(0)
    e = engine()
    teach(e, generator)
    x, switch = stream()
    results = feed(e, x)
    events = [event for r in results for event in r.shift_events]
    # Labeled rows seen before (320) put the stream position of the unlabeled rows after.
    assert [(ev.kind, ev.detector, ev.expert) for ev in events] == [
        ("input_shift", "input_shift", "*")
    ]
    alarm = events[0].sample - 320
    assert switch <= alarm < switch + 16  # every feature moved: caught at once
    batch = alarm // BATCH
    assert results[batch].adapt.resets == [("0", "input_shift")]
    assert all(not r.adapt.resets for i, r in enumerate(results) if i != batch)
    # Batch norm's statistics right after that step: the rows from the alarm to the end of
    # its batch alone (momentum 1 on the first step after the restart, then the method's
    # own step on the same rows), nothing of the old domain.
    replay = engine()
    teach(replay, torch.Generator().manual_seed(0))
    feed(replay, x[: (batch + 1) * BATCH])
    new_rows = x[alarm : (batch + 1) * BATCH]
    with torch.no_grad():
        expected = first_linear(replay)(new_rows).mean(dim=0)
    torch.testing.assert_close(running_mean(replay), expected)
    # One row earlier (an old-domain row) would have been another mean.
    with torch.no_grad():
        earlier = first_linear(replay)(x[alarm - 1 : (batch + 1) * BATCH]).mean(dim=0)
    assert not torch.allclose(running_mean(replay), earlier)


def test_without_a_reaction_the_old_statistics_linger() -> None:
    x, switch = stream()
    means = {}
    for on_shift in ("restart", "none"):
        e = engine(on_shift=on_shift)
        teach(e, torch.Generator().manual_seed(0))
        feed(e, x[: switch + 64])
        with torch.no_grad():
            target = first_linear(e)(x[switch : switch + 64]).mean(dim=0)
        means[on_shift] = float((running_mean(e) - target).abs().max())
    assert means["restart"] < 0.5 * means["none"]


def test_cotta_restart_puts_the_teacher_back_to_its_anchor_before_adapting() -> None:
    e = engine(method="cotta", batch_size=32, memory=64, augmentations=1)
    teach(e, torch.Generator().manual_seed(0))
    x, switch = stream()
    results = feed(e, x[:switch])
    assert e.adapter is not None
    state = e.adapter.experts["0"]
    assert state.anchor is not None
    weights = {k: v.clone() for k, v in state.anchor.items() if "running" not in k}
    e.adapter.shifted()
    assert state.shifted and state.pending == []
    assert e.pool is not None and e.pool.active_expert.module is not None
    module = e.pool.active_expert.module
    e.adapter._restart("0", state, module, results[0].adapt)
    for name, value in module.state_dict().items():
        if name in weights:
            torch.testing.assert_close(value, weights[name])
    assert state.memory.rows() is None or state.memory.rows().shape[0] == 0
    assert state.rewarm == 0


def test_the_engine_checkpoints_the_detector_and_resumes_identically() -> None:
    generator = torch.Generator().manual_seed(0)
    first = engine()
    teach(first, generator)
    x, switch = stream()
    feed(first, x[: switch - 64])
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    second = engine()
    second.load_state_dict(torch.load(buffer, weights_only=True))
    rest = x[switch - 64 :]
    a = [(ev.sample, ev.kind) for r in feed(first, rest) for ev in r.shift_events]
    b = [(ev.sample, ev.kind) for r in feed(second, rest) for ev in r.shift_events]
    assert a == b and len(a) == 1
    torch.testing.assert_close(running_mean(first), running_mean(second))


def test_watching_unlabeled_rows_only_leaves_the_labeled_ones_out() -> None:
    e = Engine(
        ModelSettings(hidden=[16], norm="batch", max_classes=2, seed=0),
        EngineSettings(max_batch=BATCH),
        DriftSettings(enabled=False, input_shift={"rows": "unlabeled"}),
        ExpertsSettings(enabled=False),
        AdaptSettings(method="norm"),
    )
    teach(e, torch.Generator().manual_seed(0))
    assert e.input_watch is not None and e.input_watch.rows_seen == 0
    feed(e, stream()[0][:64])
    assert e.input_watch.rows_seen == 64


def test_a_disabled_detector_raises_no_event_and_restarts_only_where_statistics_misfit() -> None:
    e = Engine(
        ModelSettings(hidden=[16], norm="batch", max_classes=2, seed=0),
        EngineSettings(max_batch=BATCH),
        DriftSettings(enabled=False, input_shift={"enabled": False}),
        ExpertsSettings(enabled=False),
        AdaptSettings(method="norm", batch_size=2, memory=0),
    )
    teach(e, torch.Generator().manual_seed(0))
    x, switch = stream()
    results = feed(e, x)
    assert e.input_watch is None
    assert not any(r.shift_events for r in results)
    # No alarm, but the source statistics put the 4x rows far off scale: the first step on
    # them restarts (adapt.on_shift; test_adapt_shift_exact.py), no other.
    restarted = [(i, r.adapt.resets) for i, r in enumerate(results) if r.adapt.resets]
    assert restarted == [(switch // BATCH, [("0", "input_shift")])]
