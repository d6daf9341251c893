"""Task experts on recurring regimes: the pool against one expert, an oracle and river.

    python benchmarks/experts/run.py [--seeds 0 1 2] [--cycles 2] [--quick] [--workers 2]

Every stream visits its regimes A -> B -> C -> ... -> A -> B -> ... (``--cycles`` times,
boundaries never told to the learner): river's SEA functions, Agrawal functions and
RandomRBF seeds, and Permuted-, Rotated- and Split-Digits from scikit-learn's bundled digits.
In the same run, on the same samples, test-then-train:

- ``pool``: streamlearn's engine with its defaults (drift detection on, the expert pool on),
  fed micro-batches of 32 as the daemon does;
- ``single``: the same engine and network with drift handling off, one expert;
- ``oracle``: one such single expert per true regime, each sample sent to its regime's;
- river's Adaptive Random Forest and Hoeffding Adaptive Tree (defaults, seeded), one sample
  at a time, and a no-change baseline.

Reported per stream, median over seeds: prequential accuracy; median recovery after a
recurrence (samples until the accuracy over the next 200 is within 2 points of the level
the learner had at the end of the regime's previous visit; ``scoring.py``); experts
spawned against true regimes; the selector's routing accuracy (each labeled sample routed
as a served request would be, before it is learned, expert mapped to its majority regime);
samples/s. Results: benchmarks/results/experts.json; the table goes to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
if TYPE_CHECKING:  # mypy knows the folder as a package; the script imports its siblings
    from benchmarks.experts.baselines import RIVER_MODELS, run_river
    from benchmarks.experts.scoring import (
        experts_vs_regimes,
        median_recovery,
        prequential_accuracy,
        recoveries,
    )
    from benchmarks.experts.scoring import routing_accuracy as routing_score
    from benchmarks.experts.streams import STREAMS, Stream, build
else:
    from baselines import RIVER_MODELS, run_river
    from scoring import experts_vs_regimes, median_recovery, prequential_accuracy, recoveries
    from scoring import routing_accuracy as routing_score
    from streams import STREAMS, Stream, build

from streamlearn.core.engine import Engine
from streamlearn.core.types import Sample
from streamlearn.settings import DriftSettings, EngineSettings, ExpertsSettings, ModelSettings

RESULTS = Path(__file__).parents[1] / "results" / "experts.json"
BATCH = 32  # the daemon's default engine.max_batch
MODEL: dict[str, Any] = {}  # model settings overrides (--lr), the same for every engine
EXPERTS: dict[str, Any] = {}  # expert pool overrides (--spawn)


def engine(pool: bool) -> Engine:
    return Engine(
        ModelSettings(**MODEL),
        EngineSettings(max_batch=BATCH),
        DriftSettings(enabled=pool),
        ExpertsSettings(enabled=pool, **EXPERTS),
    )


def samples(stream: Stream, start: int, end: int) -> list[Sample]:
    return [
        Sample(x, int(y))
        for x, y in zip(stream.x[start:end].tolist(), stream.y[start:end].tolist(), strict=True)
    ]


def run_pool(stream: Stream, enabled: bool = True) -> dict[str, Any]:
    """The engine over the stream; with the pool, also where the selector would route."""
    learner = engine(enabled)
    n = len(stream.y)
    correct = np.zeros(n, dtype=bool)
    active = np.zeros(n, dtype=np.int64)
    routed = np.full(n, -1, dtype=np.int64)
    events: list[dict[str, Any]] = []
    began = time.perf_counter()
    routing_s = 0.0
    for start in range(0, n, BATCH):
        end = min(start + BATCH, n)
        if enabled and learner.pool is not None:
            t = time.perf_counter()
            routed[start:end] = [
                int(e) for e in learner.pool.route(_scaled(learner, stream, start, end))
            ]
            routing_s += time.perf_counter() - t
        result = learner.process(samples(stream, start, end))
        assert result.errors is not None
        correct[start:end] = (result.errors == 0).numpy()
        assert learner.pool is not None
        active[start:end] = int(learner.pool.active_id)
        events += [
            {"kind": e.kind, "expert": e.expert, "sample": e.sample} for e in result.pool_events
        ]
    seconds = time.perf_counter() - began - routing_s
    return {
        "correct": correct,
        "active": active,
        "routed": routed,
        "events": events,
        "seconds": seconds,
    }


def _scaled(learner: Engine, stream: Stream, start: int, end: int) -> torch.Tensor:
    x = torch.tensor(stream.x[start:end])
    return learner.scaler.transform(x) if learner.scaler is not None else x


def run_oracle(stream: Stream) -> dict[str, Any]:
    """One single expert per true regime; every batch goes to its regime's expert."""
    learners: dict[int, Engine] = {}
    n = len(stream.y)
    correct = np.zeros(n, dtype=bool)
    began = time.perf_counter()
    for seg_start, seg_end, regime in stream.segments:
        learner = learners.setdefault(regime, engine(False))
        for start in range(seg_start, seg_end, BATCH):
            end = min(start + BATCH, seg_end)
            result = learner.process(samples(stream, start, end))
            assert result.errors is not None
            correct[start:end] = (result.errors == 0).numpy()
    return {"correct": correct, "seconds": time.perf_counter() - began}


def score(stream: Stream, run: dict[str, Any]) -> dict[str, Any]:
    correct = run["correct"]
    forward = recoveries(correct, stream.segments)
    trailing = recoveries(correct, stream.segments, mode="trailing")
    out: dict[str, Any] = {
        "accuracy": prequential_accuracy(correct),
        "recovery": median_recovery(forward),
        "recovery_trailing": median_recovery(trailing),
        "unrecovered": sum(not r.recovered for r in forward),
        "samples_per_s": len(correct) / run["seconds"],
    }
    if "routed" in run:
        recurring = np.zeros(len(correct), dtype=bool)
        for start, end, regime in stream.segments:
            recurring[start:end] = regime in {r for s, e, r in stream.segments if e <= start}
        fit = experts_vs_regimes(run["active"], stream.regime)
        out.update(
            experts=fit["experts"],
            regimes=fit["regimes"],
            purity=fit["purity"],
            routing=routing_score(run["routed"], stream.regime),
            routing_recurring=routing_score(run["routed"], stream.regime, recurring),
            decisions=_count_kinds(run["events"]),
        )
    return out


def _count_kinds(events: list[dict[str, Any]]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for event in events:
        kinds[event["kind"]] = kinds.get(event["kind"], 0) + 1
    return kinds


def one(
    name: str,
    seed: int,
    cycles: int,
    segment: int,
    batch: int,
    model: dict[str, Any],
    experts: dict[str, Any],
    river: bool,
) -> dict[str, Any]:
    """Every learner on one stream and seed (runs in a worker process)."""
    global BATCH
    BATCH = batch
    MODEL.update(model)
    EXPERTS.update(experts)
    torch.set_num_threads(1)
    stream = build(name, cycles, segment, seed)
    runs: dict[str, dict[str, Any]] = {
        "pool": run_pool(stream),
        "single": run_pool(stream, enabled=False),
        "oracle": run_oracle(stream),
    }
    for model_name in RIVER_MODELS if river else ():
        baseline = run_river(model_name, stream, seed)
        runs[model_name] = {"correct": baseline.correct, "seconds": baseline.seconds}
    return {
        "stream": name,
        "seed": seed,
        "samples": len(stream.y),
        "learners": {learner: score(stream, run) for learner, run in runs.items()},
    }


def summarize(results: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Median over seeds of every numeric figure, per stream and learner."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for name in dict.fromkeys(r["stream"] for r in results):
        runs = [r for r in results if r["stream"] == name]
        table[name] = {}
        for learner in runs[0]["learners"]:
            figures = [r["learners"][learner] for r in runs]
            table[name][learner] = {
                key: statistics.median(f[key] for f in figures)
                for key, value in figures[0].items()
                if isinstance(value, int | float)
            }
    return table


def targets(table: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """The issue's targets, checked on the medians."""
    ratio = {
        name: row["single"]["recovery"] / max(row["pool"]["recovery"], 1.0)
        for name, row in table.items()
    }
    best_river = {
        name: max(row[m]["accuracy"] for m in ("arf", "hat"))
        for name, row in table.items()
        if "arf" in row
    }
    return {
        "recovery_vs_single": ratio,
        "recovery_5x_faster": {n: r >= 5 for n, r in ratio.items()},
        "routing_permuted_digits": table.get("permuted_digits", {}).get("pool", {}).get("routing"),
        "above_single": {
            n: row["pool"]["accuracy"] > row["single"]["accuracy"] for n, row in table.items()
        },
        "at_or_above_river_best": {
            n: table[n]["pool"]["accuracy"] >= best for n, best in best_river.items()
        },
    }


def print_table(table: dict[str, dict[str, dict[str, float]]]) -> None:
    print(
        f"{'stream':17} {'learner':7} {'accuracy':>8} {'recovery':>8} {'experts':>7} "
        f"{'routing':>7} {'samples/s':>9}"
    )
    for name, row in table.items():
        for learner, f in row.items():
            experts = f"{f['experts']:.0f}/{f['regimes']:.0f}" if "experts" in f else ""
            routing = f"{f['routing']:.3f}" if "routing" in f else ""
            print(
                f"{name:17} {learner:7} {f['accuracy']:8.3f} {f['recovery']:8.0f} "
                f"{experts:>7} {routing:>7} {f['samples_per_s']:9.0f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", nargs="+", default=list(STREAMS), choices=list(STREAMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--cycles", type=int, default=3, help="visits of every regime")
    parser.add_argument("--segment", type=int, default=2_000, help="samples per visit")
    parser.add_argument("--workers", type=int, default=2, help="processes running streams")
    parser.add_argument("--quick", action="store_true", help="one seed, 1,000-sample visits")
    # Smaller steps and a higher rate than the daemon's defaults (32, 0.001): a network
    # learning a regime in a few thousand samples needs more than 60 updates to do it.
    parser.add_argument("--batch", type=int, default=8, help="samples per learning step")
    parser.add_argument("--lr", type=float, default=0.003, help="the experts' learning rate")
    parser.add_argument(
        "--spawn",
        choices=["fresh", "warm_start"],
        default=ExpertsSettings().spawn,
        help="how the pool spawns experts",
    )
    parser.add_argument("--no-river", action="store_true", help="skip river's learners")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.segment = [0], 1_000
    jobs = [(name, seed) for seed in args.seeds for name in args.streams]
    results = []
    began = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [
            pool.submit(
                one,
                name,
                seed,
                args.cycles,
                args.segment,
                args.batch,
                {"learning_rate": args.lr},
                {"spawn": args.spawn},
                not args.no_river,
            )
            for name, seed in jobs
        ]
        for done, future in enumerate(futures, 1):
            results.append(future.result())
            print(
                f"[{done}/{len(jobs)}] {results[-1]['stream']} seed {results[-1]['seed']} "
                f"({time.perf_counter() - began:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    table = summarize(results)
    print_table(table)
    report = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cycles": args.cycles,
        "segment": args.segment,
        "seeds": args.seeds,
        "batch": args.batch,
        "learning_rate": args.lr,
        "spawn": args.spawn,
        "seconds": time.perf_counter() - began,
        "table": table,
        "targets": targets(table),
        "runs": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=float) + "\n")
    print(json.dumps(report["targets"], indent=1))


if __name__ == "__main__":
    main()
