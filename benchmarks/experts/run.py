"""Task experts on recurring regimes, at the shipped defaults: the pool against one expert,
an oracle and river.

    python benchmarks/experts/run.py [--seeds 0 1 2] [--cycles 3] [--quick]
        [--streams sea agrawal ...] [--variant LABEL:key=value,key=value ...]
        [--pool-only LABEL ...]

Every stream visits its regimes A -> B -> C -> ... -> A -> B -> ... (``--cycles`` times,
boundaries never told to the learner); ``streams.py`` describes them: river's SEA,
Agrawal, RandomRBF, Hyperplane, LED, Waveform, Sine and STAGGER concepts, Agrawal
functions 0-9 on raw scales, a mixed-scales stream, Friedman regression, and Permuted-,
Rotated- and Split-Digits from scikit-learn's bundled digits. In the same run, on the same
samples, test-then-train (``harness.py``):

- ``pool``: streamlearn's engine at the shipped defaults, read from config/default.yaml by
  ``load_settings`` (drift detection on, the expert pool on, Adam at the configured rate),
  fed micro-batches of ``engine.max_batch`` as the daemon is under load. Nothing is
  overridden but ``model.task`` (regression for Friedman);
- ``single``: the same settings with drift handling off, one expert;
- ``oracle``: one such single expert per true regime, each sample sent to its regime's;
- ``--variant LABEL:key=value,...`` adds the same three at those settings as labeled rows
  (``pool@LABEL`` ...), e.g. ``--variant lr3e-3:model.learning_rate=0.003``;
  ``--pool-only LABEL`` runs that variant's pool alone (its targets then compare it with
  the shipped ``single`` and ``oracle``);
- river's Adaptive Random Forest (10 trees) and Hoeffding Adaptive Tree (defaults,
  seeded), one sample at a time, and a no-change baseline; for Friedman river's ARF and HAT
  regressors, a standardized linear regression and the running mean.

river's runs are deterministic for their seed: they are kept on disk by a hash of the
stream's samples (``baselines.cached_river``; ``--no-river-cache`` recomputes them).

Reported per stream, median over seeds: prequential accuracy (MAE and RMSE for
regression); median recovery after a recurrence (samples until the accuracy over the next
200 is within 2 points of the level the learner had at the end of the regime's previous
visit; ``scoring.py``); experts spawned against true regimes; the selector's routing
accuracy; samples/s. The targets: the pool at or above river's ARF and the single expert on
every stream (per seed too), and the gap to the oracle. Results:
benchmarks/results/experts.json; the table goes to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
if TYPE_CHECKING:  # mypy knows the folder as a package; the script imports its siblings
    from benchmarks.experts.baselines import CACHE, cached_river, models_for
    from benchmarks.experts.harness import headline, median_table, run_oracle, run_pool, score
    from benchmarks.experts.shipped import Overrides, parse_overrides, provenance, settings_for
    from benchmarks.experts.streams import STREAMS, build
else:
    from baselines import CACHE, cached_river, models_for
    from harness import headline, median_table, run_oracle, run_pool, score
    from shipped import Overrides, parse_overrides, provenance, settings_for
    from streams import STREAMS, build

RESULTS = Path(__file__).parents[1] / "results" / "experts.json"
Config = tuple[str, Overrides]  # ("defaults", {}) or (label, dotted overrides)


def learner_name(base: str, label: str) -> str:
    return base if label == "defaults" else f"{base}@{label}"


def one(
    name: str,
    seed: int,
    cycles: int,
    segment: int,
    configs: list[Config],
    river: bool,
    cache: bool,
    pool_only: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Every learner on one stream and seed (variants in ``pool_only``: their pool alone)."""
    torch.set_num_threads(1)
    stream = build(name, cycles, segment, seed)
    runs: dict[str, dict[str, Any]] = {}
    for label, overrides in configs:
        settings = settings_for(overrides, stream.task)
        runs[learner_name("pool", label)] = run_pool(stream, settings)
        if label not in pool_only:
            runs[learner_name("single", label)] = run_pool(stream, settings, enabled=False)
            runs[learner_name("oracle", label)] = run_oracle(stream, settings)
    for model_name in models_for(stream) if river else ():
        baseline = cached_river(model_name, stream, seed, CACHE if cache else None)
        runs[model_name] = {"errors": baseline.errors, "seconds": baseline.seconds}
    return {
        "stream": name,
        "seed": seed,
        "task": stream.task,
        "samples": len(stream.y),
        "learners": {learner: score(stream, run) for learner, run in runs.items()},
        "drifts": runs["pool"]["drifts"],
    }


def targets(results: list[dict[str, Any]], configs: list[Config]) -> dict[str, Any]:
    """The issue's targets for every configuration: the pool at or above river's ARF and
    the single expert (medians over seeds, and on how many seeds), the oracle's gap."""
    table = median_table(results)
    out: dict[str, Any] = {}
    for label, _ in configs:
        pool, single, oracle = (learner_name(b, label) for b in ("pool", "single", "oracle"))
        if single not in next(iter(table.values())):  # a pool-only variant: its own
            single, oracle = "single", "oracle"
        rows: dict[str, Any] = {}
        for name, row in table.items():
            task = next(r["task"] for r in results if r["stream"] == name)
            key, higher = headline(task)
            sign = 1.0 if higher else -1.0
            seeds = [r for r in results if r["stream"] == name]

            def beats(
                a: str, b: str, figures: dict[str, Any], key: str = key, sign: float = sign
            ) -> bool:
                return bool(sign * (figures[a][key] - figures[b][key]) >= 0)

            entry: dict[str, Any] = {
                "figure": key,
                "pool": row[pool][key],
                "single": row[single][key],
                "oracle": row[oracle][key],
                "oracle_gap": sign * (row[oracle][key] - row[pool][key]),
                "ge_single": beats(pool, single, row),
                "ge_single_seeds": sum(beats(pool, single, r["learners"]) for r in seeds),
                "seeds": len(seeds),
            }
            if "arf" in row:
                entry.update(
                    arf=row["arf"][key],
                    ge_arf=beats(pool, "arf", row),
                    ge_arf_seeds=sum(beats(pool, "arf", r["learners"]) for r in seeds),
                )
            rows[name] = entry
        out[label] = {
            "streams": rows,
            "all_ge_arf": all(r.get("ge_arf", True) for r in rows.values()),
            "all_ge_single": all(r["ge_single"] for r in rows.values()),
        }
    return out


def print_table(table: dict[str, dict[str, dict[str, float]]]) -> None:
    print(
        f"{'stream':16} {'learner':18} {'acc|MAE':>8} {'recovery':>8} {'experts':>7} "
        f"{'routing':>7} {'drifts':>6} {'samples/s':>9}"
    )
    for name, row in table.items():
        for learner, f in row.items():
            figure = f["accuracy"] if "accuracy" in f else f["mae"]
            recovery = f"{f['recovery']:.0f}" if "recovery" in f else ""
            experts = f"{f['experts']:.0f}/{f['regimes']:.0f}" if "experts" in f else ""
            routing = f"{f['routing']:.3f}" if "routing" in f else ""
            drifts = f"{f['drifts']:.0f}" if "drifts" in f else ""
            print(
                f"{name:16} {learner:18} {figure:8.3f} {recovery:>8} {experts:>7} "
                f"{routing:>7} {drifts:>6} {f['samples_per_s']:9.0f}"
            )


def print_targets(report: dict[str, Any]) -> None:
    for label, target in report.items():
        print(
            f"\n[{label}] pool >= ARF on all: {target['all_ge_arf']}, "
            f">= single on all: {target['all_ge_single']}"
        )
        print(f"{'stream':16} {'pool':>7} {'single':>7} {'arf':>7} {'oracle':>7} {'gap':>7} seeds")
        for name, r in target["streams"].items():
            arf = f"{r['arf']:7.3f}" if "arf" in r else " " * 7
            print(
                f"{name:16} {r['pool']:7.3f} {r['single']:7.3f} {arf} {r['oracle']:7.3f} "
                f"{r['oracle_gap']:7.3f} >=arf {r.get('ge_arf_seeds', '-')}/{r['seeds']} "
                f">=single {r['ge_single_seeds']}/{r['seeds']}"
            )


def parse_variant(text: str) -> Config:
    label, sep, rest = text.partition(":")
    if not sep or not label or label == "defaults":
        raise argparse.ArgumentTypeError(f"expected LABEL:key=value,..., got {text!r}")
    return label, parse_overrides([item for item in rest.split(",") if item])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", nargs="+", default=list(STREAMS), choices=list(STREAMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--cycles", type=int, default=3, help="visits of every regime")
    parser.add_argument("--segment", type=int, default=2_000, help="samples per visit")
    parser.add_argument("--workers", type=int, default=1, help="processes running streams")
    parser.add_argument("--quick", action="store_true", help="one seed, 1,000-sample visits")
    parser.add_argument(
        "--variant",
        type=parse_variant,
        action="append",
        default=[],
        help="a labeled second configuration: LABEL:key=value,key=value",
    )
    parser.add_argument(
        "--pool-only", nargs="*", default=[], help="variant labels run without single, oracle"
    )
    parser.add_argument("--no-river", action="store_true", help="skip river's learners")
    parser.add_argument("--no-river-cache", action="store_true", help="recompute river's runs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.segment = [0], 1_000
    configs: list[Config] = [("defaults", {}), *args.variant]
    jobs = [(name, seed) for seed in args.seeds for name in args.streams]
    call = (
        args.cycles,
        args.segment,
        configs,
        not args.no_river,
        not args.no_river_cache,
        frozenset(args.pool_only),
    )
    results: list[dict[str, Any]] = []
    began = time.perf_counter()

    settings = settings_for()

    def report() -> dict[str, Any]:
        return {
            "machine": platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "library": provenance(),
            "cycles": args.cycles,
            "segment": args.segment,
            "seeds": args.seeds,
            "defaults": {
                "model.optimizer": settings.model.optimizer,
                "model.learning_rate": settings.model.learning_rate,
                "engine.max_batch": settings.engine.max_batch,
                "drift": settings.drift.model_dump(mode="json"),
                "experts.spawn": settings.experts.spawn,
            },
            "variants": {label: overrides for label, overrides in configs},
            "pool_only": args.pool_only,
            "complete": len(results) == len(jobs),
            "seconds": time.perf_counter() - began,
            "table": median_table(results),
            "targets": targets(results, configs),
            "runs": results,
        }

    def done(result: dict[str, Any]) -> None:
        results.append(result)
        print(
            f"[{len(results)}/{len(jobs)}] {result['stream']} seed {result['seed']} "
            f"({time.perf_counter() - began:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
        # Written after every stream: a long run stopped part way keeps what it measured.
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report(), indent=1, default=float) + "\n")

    if args.workers <= 1:
        for name, seed in jobs:
            done(one(name, seed, *call))
    else:
        with ProcessPoolExecutor(args.workers) as pool:
            for future in [pool.submit(one, name, seed, *call) for name, seed in jobs]:
                done(future.result())
    final = report()
    print_table(final["table"])
    print_targets(final["targets"])


if __name__ == "__main__":
    main()
