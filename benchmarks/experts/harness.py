"""streamlearn's engine on a benchmark stream, at the shipped settings or labeled overrides.

Settings come from ``config/default.yaml`` through ``streamlearn.settings.load_settings``,
as the daemon reads them (``shipped.py``; environment variables STREAMLEARN_* apply too,
so a clean environment is part of a defaults run). The engine is built as the daemon builds it
(model, engine, drift, experts and adapt sections) and fed micro-batches of
``engine.max_batch``, as the daemon feeds it under load. Nothing else is overridden unless a
configuration says so, by dotted keys: ``{"model.learning_rate": 0.003}``.

Three learners per configuration, test-then-train on the same samples:

- ``pool``: the engine as configured (drift detection on, the expert pool on);
- ``single``: the same settings with ``drift.enabled`` and ``experts.enabled`` off: one
  expert, no drift handling;
- ``oracle``: one ``single`` engine per true regime, each sample sent to its regime's.

Each run gives per-sample ``errors``: 1/0 wrong/right for a classifier, the absolute error
for a regressor, the prediction made before the sample was learned.
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:  # mypy knows the folder as a package; the scripts import their siblings
    from benchmarks.experts.scoring import (
        experts_vs_regimes,
        median_recovery,
        recoveries,
        routing_accuracy,
    )
    from benchmarks.experts.streams import Stream
else:
    from scoring import experts_vs_regimes, median_recovery, recoveries, routing_accuracy
    from streams import Stream

from streamlearn.core.engine import Engine
from streamlearn.core.types import Sample
from streamlearn.settings import Settings


def build_engine(settings: Settings, pool: bool) -> Engine:
    """The engine as the daemon builds it; ``pool=False``: drift handling and pool off."""
    drift, experts = settings.drift, settings.experts
    if not pool:
        drift = drift.model_copy(update={"enabled": False})
        experts = experts.model_copy(update={"enabled": False})
    return Engine(settings.model, settings.engine, drift, experts, settings.adapt)


def samples(stream: Stream, start: int, end: int) -> list[Sample]:
    cast = int if stream.task == "classification" else float
    return [
        Sample(x, cast(y))
        for x, y in zip(stream.x[start:end].tolist(), stream.y[start:end].tolist(), strict=True)
    ]


def run_pool(stream: Stream, settings: Settings, enabled: bool = True) -> dict[str, Any]:
    """The engine over the stream; with the pool, also where the selector would route."""
    learner = build_engine(settings, enabled)
    batch = settings.engine.max_batch
    n = len(stream.y)
    errors = np.zeros(n, dtype=np.float64)
    active = np.zeros(n, dtype=np.int64)
    routed = np.full(n, -1, dtype=np.int64)
    events: list[dict[str, Any]] = []
    drifts: list[int] = []
    began = time.perf_counter()
    routing_s = 0.0
    for start in range(0, n, batch):
        end = min(start + batch, n)
        if enabled and learner.pool is not None:
            t = time.perf_counter()
            routed[start:end] = [
                int(e) for e in learner.pool.route(_scaled(learner, stream, start, end))
            ]
            routing_s += time.perf_counter() - t
        result = learner.process(samples(stream, start, end))
        assert result.errors is not None and learner.pool is not None
        errors[start:end] = result.errors.double().numpy()
        active[start:end] = int(learner.pool.active_id)
        events += [
            {"kind": e.kind, "expert": e.expert, "sample": e.sample} for e in result.pool_events
        ]
        drifts += [e.sample for e in result.drift_events if e.kind == "drift"]
    return {
        "errors": errors,
        "active": active,
        "routed": routed,
        "events": events,
        "drifts": drifts,
        "seconds": time.perf_counter() - began - routing_s,
    }


def _scaled(learner: Engine, stream: Stream, start: int, end: int) -> torch.Tensor:
    x = torch.tensor(stream.x[start:end])
    return learner.scaler.transform(x) if learner.scaler is not None else x


def run_oracle(stream: Stream, settings: Settings) -> dict[str, Any]:
    """One single expert per true regime; every batch goes to its regime's expert."""
    learners: dict[int, Engine] = {}
    batch = settings.engine.max_batch
    errors = np.zeros(len(stream.y), dtype=np.float64)
    began = time.perf_counter()
    for seg_start, seg_end, regime in stream.segments:
        learner = learners.setdefault(regime, build_engine(settings, False))
        for start in range(seg_start, seg_end, batch):
            end = min(start + batch, seg_end)
            result = learner.process(samples(stream, start, end))
            assert result.errors is not None
            errors[start:end] = result.errors.double().numpy()
    return {"errors": errors, "seconds": time.perf_counter() - began}


def score(stream: Stream, run: dict[str, Any]) -> dict[str, Any]:
    """Prequential accuracy and recovery (classification) or MAE and RMSE (regression);
    for a pool run also how its experts line up with the regimes."""
    errors = np.asarray(run["errors"], dtype=np.float64)
    out: dict[str, Any] = {"samples_per_s": len(errors) / max(run["seconds"], 1e-9)}
    if stream.task == "classification":
        correct = errors == 0
        forward = recoveries(correct, stream.segments)
        out.update(
            accuracy=float(correct.mean()),
            recovery=median_recovery(forward),
            recovery_trailing=median_recovery(
                recoveries(correct, stream.segments, mode="trailing")
            ),
            unrecovered=sum(not r.recovered for r in forward),
        )
    else:
        out.update(mae=float(errors.mean()), rmse=float(np.sqrt((errors**2).mean())))
    if "routed" in run:
        recurring = np.zeros(len(errors), dtype=bool)
        for start, end, regime in stream.segments:
            recurring[start:end] = regime in {r for s, e, r in stream.segments if e <= start}
        fit = experts_vs_regimes(run["active"], stream.regime)
        out.update(
            experts=fit["experts"],
            regimes=fit["regimes"],
            purity=fit["purity"],
            routing=routing_accuracy(run["routed"], stream.regime),
            routing_recurring=routing_accuracy(run["routed"], stream.regime, recurring),
            decisions=_count_kinds(run["events"]),
            drifts=len(run["drifts"]),
        )
    return out


def _count_kinds(events: list[dict[str, Any]]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for event in events:
        kinds[event["kind"]] = kinds.get(event["kind"], 0) + 1
    return kinds


def headline(stream_task: str) -> tuple[str, bool]:
    """The figure a stream is judged by, and whether higher is better."""
    return ("accuracy", True) if stream_task == "classification" else ("mae", False)


def median_table(results: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Median over seeds of every numeric figure, per stream and learner."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for name in dict.fromkeys(r["stream"] for r in results):
        runs = [r for r in results if r["stream"] == name]
        table[name] = {}
        for learner in runs[0]["learners"]:
            figures = [r["learners"][learner] for r in runs if learner in r["learners"]]
            table[name][learner] = {
                key: statistics.median(f[key] for f in figures)
                for key, value in figures[0].items()
                if isinstance(value, int | float)
            }
    return table
