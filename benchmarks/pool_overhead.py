"""What a pool of experts costs the learning step: one expert against a pool holding 2, 4, 8.

    python benchmarks/pool_overhead.py [--runs 3] [--batches 400] [--sizes 1 2 4 8]
        [--out benchmarks/results/pool_overhead.json] [--before OLDER.json]

The engine is built at the shipped defaults (``load_settings()``: config/default.yaml's
values; drift detection and the pool on, ``max_experts`` 8) and fed labeled micro-batches
of ``engine.max_batch`` in-process. A pool holds N experts honestly: the stream visits N
regimes in turn (10 features, 4 classes; each regime has its own input mean and its own
label rule), 2,000 samples a visit, and the drift detector and the pool do the rest: a
regime change alarms, the pool decides on its window and spawns. The build-up stops once
the pool holds N experts and its last decision is closed; a regime that raised no alarm
within its visit gets one more visit (counted in the JSON as ``visits``). Then the stream
stays in the active expert's regime: a warm-up, then ``--batches`` timed batches.

Throughput is labeled samples per wall-clock second over the timed batches (CPU seconds
too, which a busy shared machine disturbs less); the median over ``--runs`` runs, the pool
sizes interleaved within each run so that all see the same machine load. A second pass
times the parts of each step with ``time.process_time`` around the engine's and the
pool's methods (inclusive CPU times, microseconds per step): where the time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from streamlearn.core.drift.monitor import DriftMonitor
from streamlearn.core.engine import Engine
from streamlearn.core.experts.band import LossBand
from streamlearn.core.experts.expert import NeuralExpert
from streamlearn.core.experts.member import Member
from streamlearn.core.experts.pool import ExpertPool
from streamlearn.core.experts.replay import Reservoir
from streamlearn.core.experts.selector import Selector
from streamlearn.core.prequential import PrequentialStats
from streamlearn.core.types import Sample
from streamlearn.settings import Settings, load_settings

RESULTS = Path(__file__).resolve().parent / "results" / "pool_overhead.json"
FEATURES = 10  # as the profile in PERFORMANCE.md: a 10-feature, 4-class recurring stream
CLASSES = 4
# Distances in input standard deviations: regime means this far apart let the selector tell
# regimes apart (as it must to route) and leave every expert lost on another's inputs; class
# centers this far from their regime's mean make each regime learnable within a visit, so
# its expert's loss band is narrow and the next regime's change is clear.
REGIME_SPREAD = 6.0
CLASS_SPREAD = 3.0
VISIT = 2_000  # samples per regime visit: the detector's warm-up and refractory (500 each) fit
WARMUP_BATCHES = 50  # untimed batches in the measured regime: first calls, caches, the band
MAX_VISITS = 40  # a build-up that has not reached N experts by then is reported, not looped


@dataclass(frozen=True, slots=True)
class Regime:
    """Inputs around the regime's mean, one cluster per class."""

    mean: torch.Tensor  # [FEATURES]
    centers: torch.Tensor  # [CLASSES, FEATURES], around the mean


def regimes(n: int, seed: int) -> list[Regime]:
    generator = torch.Generator().manual_seed(seed)

    def directions(k: int) -> torch.Tensor:
        d = torch.randn(k, FEATURES, generator=generator)
        return d / d.pow(2).sum(dim=1, keepdim=True).sqrt()

    return [
        Regime(REGIME_SPREAD * directions(1)[0], CLASS_SPREAD * directions(CLASSES))
        for _ in range(n)
    ]


def batches(
    regime: Regime, count: int, size: int, generator: torch.Generator
) -> list[list[Sample]]:
    y = torch.randint(CLASSES, (count * size,), generator=generator)
    x = regime.mean + regime.centers[y] + torch.randn(count * size, FEATURES, generator=generator)
    rows, labels = x.tolist(), y.tolist()
    return [
        [Sample(rows[i], labels[i]) for i in range(start, start + size)]
        for start in range(0, count * size, size)
    ]


def build_engine(settings: Settings) -> Engine:
    return Engine(settings.model, settings.engine, settings.drift, settings.experts, settings.adapt)


def grow(engine: Engine, experts: int, stream: list[Regime], size: int, seed: int) -> int:
    """Visit the regimes in turn until the pool holds ``experts`` and decides nothing; the
    number of visits it took."""
    generator = torch.Generator().manual_seed(seed)
    per_visit = VISIT // size
    visits = 0
    while visits < MAX_VISITS:
        regime = stream[visits % len(stream)]
        for batch in batches(regime, per_visit, size, generator):
            engine.process(batch)
        visits += 1
        pool = engine.pool  # built with the first sample
        if pool is not None and len(pool.members) >= experts and not pool.deciding:
            break
    return visits


@dataclass(slots=True)
class Pool:
    """One engine grown to its pool size, and the batches it is timed on."""

    size: int
    engine: Engine
    visits: int
    timed: list[list[Sample]]
    wall: float = 0.0
    cpu: float = 0.0
    decisions: int = 0

    @property
    def experts(self) -> int:
        return len(self.engine.pool.members) if self.engine.pool is not None else 0


def prepare(settings: Settings, size: int, steps: int, seed: int) -> Pool:
    """A fresh engine grown to ``size`` experts and warmed up in its active expert's regime
    (the stream stays where the pool now is); ``steps`` batches of that regime to time."""
    batch = settings.engine.max_batch
    engine = build_engine(settings)
    stream = regimes(size, seed)
    visits = grow(engine, size, stream, batch, seed)
    regime = stream[(visits - 1) % len(stream)]
    generator = torch.Generator().manual_seed(seed + 1)
    for samples in batches(regime, WARMUP_BATCHES, batch, generator):
        engine.process(samples)
    return Pool(size, engine, visits, batches(regime, steps, batch, generator))


def interleaved(pools: list[Pool], chunk: int, between: Callable[[Pool], None]) -> None:
    """Every pool learns its timed batches, ``chunk`` at a time in turn (the order rotating
    each round), so that all see the same machine load; ``between`` runs before each chunk."""
    steps = len(pools[0].timed)
    for round_, start in enumerate(range(0, steps, chunk)):
        for k in range(len(pools)):
            pool = pools[(k + round_) % len(pools)]
            between(pool)
            wall, cpu = time.perf_counter(), time.process_time()
            for samples in pool.timed[start : start + chunk]:
                pool.decisions += len(pool.engine.process(samples).pool_events)
            pool.wall += time.perf_counter() - wall
            pool.cpu += time.process_time() - cpu


# -- where the time goes ---------------------------------------------------------------------

# The parts timed, by (owner, method): the engine's step, its routing and answering, the
# pool's step and its parts (the expert's own learning, the member's bookkeeping, the
# selector), the drift monitor and the prequential scores. A part a version of the code
# does not have is left out.
PARTS: tuple[tuple[type, str], ...] = (
    (Engine, "process"),
    (ExpertPool, "answerers"),
    (Engine, "_routed_outputs"),
    (ExpertPool, "credit"),
    (ExpertPool, "step"),
    (NeuralExpert, "learn"),
    (Member, "learned"),
    (LossBand, "update"),
    (Selector, "observe"),
    (Selector, "_score"),
    (Selector, "_flush_scores"),
    (Selector, "_train_step"),
    (Reservoir, "add"),
    (DriftMonitor, "observe"),
    (PrequentialStats, "update"),
)


@contextmanager
def timing(sink: list[dict[str, float]]) -> Iterator[None]:
    """Wrap every part in ``PARTS``; inclusive seconds accumulate in ``sink[0]`` (which the
    caller points at the pool being timed)."""
    originals = [
        (owner, name, owner.__dict__[name]) for owner, name in PARTS if name in owner.__dict__
    ]

    def wrap(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.process_time()  # CPU time: another process's turn is not counted
            try:
                return fn(*args, **kwargs)
            finally:
                totals = sink[0]
                totals[label] = totals.get(label, 0.0) + time.process_time() - began

        return timed

    for owner, name, fn in originals:
        setattr(owner, name, wrap(f"{owner.__name__}.{name}", fn))
    try:
        yield
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)


def breakdown(
    settings: Settings, sizes: list[int], steps: int, chunk: int, seed: int
) -> dict[str, dict[str, float]]:
    """Microseconds per learning step in each part, inclusive, per pool size."""
    pools = [prepare(settings, n, steps, seed) for n in sizes]
    totals: dict[int, dict[str, float]] = {n: {} for n in sizes}
    sink: list[dict[str, float]] = [{}]

    def point(pool: Pool) -> None:
        sink[0] = totals[pool.size]

    with timing(sink):
        interleaved(pools, chunk, point)
    return {
        str(n): {part: round(seconds / steps * 1e6, 1) for part, seconds in parts.items()}
        for n, parts in totals.items()
    }


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batches", type=int, default=400, help="timed batches per pool")
    parser.add_argument("--chunk", type=int, default=20, help="batches per pool in turn")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--before",
        type=Path,
        help="this benchmark's JSON from older code (its throughput and parts are kept)",
    )
    args = parser.parse_args()
    settings = load_settings()
    torch.set_num_threads(settings.engine.torch_threads or torch.get_num_threads())
    began, load_before = time.perf_counter(), os.getloadavg()
    runs: dict[int, list[Pool]] = {n: [] for n in args.sizes}
    for run in range(args.runs):
        pools = [prepare(settings, n, args.batches, args.seed + run) for n in args.sizes]
        interleaved(pools, args.chunk, lambda pool: None)
        for pool in pools:
            runs[pool.size].append(pool)
            n = len(pool.timed) * settings.engine.max_batch
            print(
                f"run {run}, {pool.experts} experts: {n / pool.wall:,.0f} samples/s "
                f"({n / pool.cpu:,.0f} per CPU second)",
                flush=True,
            )
    samples = args.batches * settings.engine.max_batch
    base = median([samples / p.wall for p in runs[args.sizes[0]]])
    base_cpu = median([samples / p.cpu for p in runs[args.sizes[0]]])
    table = {}
    for n, pools in runs.items():
        wall = median([samples / p.wall for p in pools])
        cpu = median([samples / p.cpu for p in pools])
        table[str(n)] = {
            "samples_per_s": round(wall),
            "share_of_one_expert": round(wall / base, 3),
            "cpu_samples_per_s": round(cpu),
            "cpu_share_of_one_expert": round(cpu / base_cpu, 3),
            "runs": [round(samples / p.wall) for p in pools],
            "cpu_runs": [round(samples / p.cpu) for p in pools],
            "experts_alive": [p.experts for p in pools],
            "visits": [p.visits for p in pools],
            "decisions_while_timed": [p.decisions for p in pools],
        }
        print(f"{n} experts: {wall:,.0f} samples/s ({wall / base:.0%} of one expert)")
    parts = breakdown(settings, args.sizes, args.batches, args.chunk, args.seed)
    for size, timed_parts in parts.items():
        print(f"\n{size} experts, us per step: " + json.dumps(timed_parts))
    report = {
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "settings": "load_settings(): the shipped defaults, nothing overridden",
        "max_batch": settings.engine.max_batch,
        "batches": args.batches,
        "chunk": args.chunk,
        "runs": args.runs,
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "seconds": round(time.perf_counter() - began, 1),
        "throughput": table,
        "us_per_step": parts,
    }
    if args.before is not None:
        before = json.loads(args.before.read_text(encoding="utf-8"))
        report["before"] = {k: before[k] for k in ("throughput", "us_per_step", "seconds")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
