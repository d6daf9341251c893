"""Drift detection: delay, misses, false alarms and update cost, against river's detectors.

    python benchmarks/drift/run.py [--reps N] [--stable N] [--quick]

Every streamlearn detector runs with its default settings (the ones a user gets), next to
river's ADWIN and PageHinkley with river's defaults fed the same values, in the same run:

- abrupt rises of 0.5, 1 and 2 standard deviations in normal and skewed (gamma) losses,
  ``--reps`` streams each (3,000 stable values, then 2,000 shifted);
- gradual drifts (river ConceptDriftStream, widths 100, 500, 2,000; river overflows below
  width = 4 x position / 709) and recurring concepts
  (A -> B -> C -> A ..., 5,000 each) as the per-sample losses of streamlearn's own engine;
- stable streams of ``--stable`` values (normal, gamma, 0/1 errors) and 200k engine losses,
  for false alarms per 100k;
- river's annotated change-point series, change-point F1 (margin 5) with short-series
  settings (warm-up 50, refractory 10, 2,000 false alarms per 100k: ARL0 = 50);
- update cost per sample, one value at a time and in batches of 32, 256 and 1,024.

KSWIN tests each value with scipy (about 230 us per value), so it runs on a tenth of the
repetitions and of the stable length. Results: benchmarks/results/drift.json; the table
goes to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from river import drift as river_drift
from river.drift import datasets as annotated

sys.path.insert(0, str(Path(__file__).parent))
if TYPE_CHECKING:  # mypy knows the folder as a package; the script imports its siblings
    from benchmarks.drift.scoring import Tally, f1_with_margin
    from benchmarks.drift.streams import Stream, abrupt, gradual, noise, recurring, stable_learning
else:
    from scoring import Tally, f1_with_margin
    from streams import Stream, abrupt, gradual, noise, recurring, stable_learning

from streamlearn.core.drift.registry import DETECTORS, build_detector
from streamlearn.core.types import DriftSignal
from streamlearn.settings import DriftSettings

RESULTS = Path(__file__).parents[1] / "results" / "drift.json"
DEFAULT = DriftSettings().detector
SLOW = {"kswin"}  # run on a tenth of the data
Run = Callable[[np.ndarray], list[int]]


def ours(name: str, **overrides: Any) -> Run:
    def run(values: np.ndarray) -> list[int]:
        detector = build_detector(DriftSettings(detector=name, **overrides))
        found: list[int] = []
        for start in range(0, len(values), 1_024):
            found += [
                start + a.index
                for a in detector.update_many(values[start : start + 1_024])
                if a.signal is DriftSignal.DRIFT
            ]
        return found

    return run


def river_default(kind: str) -> Run:
    def run(values: np.ndarray) -> list[int]:
        detector = (
            river_drift.ADWIN()  # type: ignore[no-untyped-call]  # river: untyped __init__
            if kind == "adwin"
            else river_drift.PageHinkley()
        )
        found = []
        for i, value in enumerate(values.tolist()):
            detector.update(value)  # type: ignore[no-untyped-call]  # river: untyped
            if detector.drift_detected:
                found.append(i)
        return found

    return run


def contenders(**overrides: Any) -> dict[str, Run]:
    runs = {name: ours(name, **overrides) for name in DETECTORS}
    runs["river ADWIN (defaults)"] = river_default("adwin")
    runs["river PageHinkley (defaults)"] = river_default("page_hinkley")
    return runs


def score(streams: list[Stream], horizon: int) -> dict[str, dict[str, Any]]:
    out = {}
    for name, run in contenders().items():
        tally = Tally()
        chosen = streams[: max(1, len(streams) // 10)] if name in SLOW else streams
        for stream in chosen:
            tally.add(
                run(stream.values), stream.changes, stream.accept_from, horizon, len(stream.values)
            )
        out[name] = {**tally.summary(), "streams": len(chosen)}
    return out


def abrupt_scenarios(reps: int) -> dict[str, Any]:
    results = {}
    for dist in ("normal", "gamma"):
        for shift in (0.5, 1.0, 2.0):
            label = f"abrupt {dist} +{shift:g} sd"
            progress(label)
            results[label] = score([abrupt(dist, shift, seed) for seed in range(reps)], 2_000)
    return results


def learner_scenarios(seeds: int) -> dict[str, Any]:
    results = {}
    for generator in ("sea", "agrawal"):
        for width in (100, 500, 2_000):
            label = f"gradual {generator} width {width}"
            progress(label)
            streams = [gradual(generator, width, seed) for seed in range(seeds)]
            results[label] = score(streams, width + 3_000)
        label = f"recurring {generator}"
        progress(label)
        results[label] = score([recurring(generator, seed) for seed in range(seeds)], 5_000)
    return results


def stable_scenarios(n: int) -> dict[str, Any]:
    results = {}
    streams = {f"stable {d}": Stream(d, noise(d, n, 100)) for d in ("normal", "gamma", "bernoulli")}
    progress("stable engine losses")
    streams["stable engine losses"] = stable_learning(200_000, 0)
    for label, stream in streams.items():
        progress(label)
        row = {}
        for name, run in contenders().items():
            values = stream.values[: len(stream.values) // 10] if name in SLOW else stream.values
            alarms = run(values)
            row[name] = {
                "samples": len(values),
                "false_alarms": len(alarms),
                "false_alarms_per_100k": round(len(alarms) / len(values) * 1e5, 3),
            }
        results[label] = row
    return results


def annotated_scenarios() -> dict[str, Any]:
    progress("annotated change-point series")
    short = {"warmup": 50, "refractory": 10, "false_alarms_per_100k": 2_000}
    results: dict[str, Any] = {}
    datasets = [
        annotated.AirlinePassengers(),  # type: ignore[no-untyped-call]  # river: untyped
        annotated.Apple(),  # type: ignore[no-untyped-call]  # river: untyped
        annotated.Bitcoin(),  # type: ignore[no-untyped-call]  # river: untyped
        annotated.BrentSpotPrice(),  # type: ignore[no-untyped-call]  # river: untyped
        annotated.Occupancy(),  # type: ignore[no-untyped-call]  # river: untyped
        annotated.RunLog(),  # type: ignore[no-untyped-call]  # river: untyped
        annotated.UKCoalEmploy(),  # type: ignore[no-untyped-call]  # river: untyped
    ]
    for name, run in contenders(**short).items():
        f1s = {}
        for dataset in datasets:
            values = np.array([_value(y) for _, y in dataset], dtype=np.float64)
            f1s[type(dataset).__name__] = round(f1_with_margin(run(values), dataset.annotations), 3)
        results[name] = {"mean_f1": round(float(np.mean(list(f1s.values()))), 3), **f1s}
    return results


def _value(y: Any) -> float:
    return float(next(iter(y.values()))) if isinstance(y, dict) else float(y)


def update_costs() -> dict[str, Any]:
    progress("update cost")
    values = noise("normal", 200_000, 7)
    results: dict[str, Any] = {}
    for name in DETECTORS:
        n = 2_000 if name in SLOW else len(values)
        row = {"one_at_a_time": _cost_single(name, values[:n])}
        for size in (32, 256, 1_024):
            row[f"batch_{size}"] = _cost_batch(name, values[:n], size)
        results[name] = row
    for kind in ("adwin", "page_hinkley"):
        run = river_default(kind)
        began = time.perf_counter()
        run(values)
        results[f"river {kind} (defaults)"] = {
            "one_at_a_time": round((time.perf_counter() - began) / len(values) * 1e6, 3)
        }
    return results


def _cost_single(name: str, values: np.ndarray) -> float:
    detector = build_detector(DriftSettings(detector=name))
    items = values.tolist()
    began = time.perf_counter()
    for value in items:
        detector.update(value)
    return round((time.perf_counter() - began) / len(items) * 1e6, 3)


def _cost_batch(name: str, values: np.ndarray, size: int) -> float:
    detector = build_detector(DriftSettings(detector=name))
    began = time.perf_counter()
    for start in range(0, len(values), size):
        detector.update_many(values[start : start + size])
    return round((time.perf_counter() - began) / len(values) * 1e6, 3)


def targets(results: dict[str, Any]) -> dict[str, bool]:
    """The issue's targets for the default detector."""
    abrupt_ok = all(
        row[DEFAULT]["missed"] == 0 and row[DEFAULT]["median_delay"] <= 50
        for label, row in results["changes"].items()
        if label.startswith("abrupt") and "+0.5" not in label
    )
    stable_ok = all(
        row[DEFAULT]["false_alarms_per_100k"] <= 1.0 for row in results["stable"].values()
    )
    return {
        "median_delay_le_50_no_miss_for_1sd_plus": abrupt_ok,
        "false_alarms_le_1_per_100k": stable_ok,
    }


def progress(what: str) -> None:
    print(f"  ... {what}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=100, help="streams per abrupt scenario")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per learner scenario")
    parser.add_argument("--stable", type=int, default=1_000_000, help="stable stream length")
    parser.add_argument("--quick", action="store_true", help="10 reps, 1 seed, 100k stable")
    args = parser.parse_args()
    if args.quick:
        args.reps, args.seeds, args.stable = 10, 1, 100_000
    began = time.perf_counter()
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor()},
        "settings": {
            "reps": args.reps,
            "seeds": args.seeds,
            "stable": args.stable,
            "default_detector": DEFAULT,
        },
        "changes": {**abrupt_scenarios(args.reps), **learner_scenarios(args.seeds)},
        "stable": stable_scenarios(args.stable),
        "annotated_f1": annotated_scenarios(),
        "update_cost_us_per_sample": update_costs(),
    }
    results["targets"] = targets(results)
    results["seconds"] = round(time.perf_counter() - began, 1)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print_tables(results)


def print_tables(results: dict[str, Any]) -> None:
    names = list(next(iter(results["changes"].values())))
    print("\nDetection delay (median / p90), missed changes, false alarms")
    print("| scenario | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for label, row in results["changes"].items():
        cells = [_cell(row[n]) for n in names]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\nFalse alarms per 100k stable samples")
    print("| stream | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for label, row in results["stable"].items():
        print(
            f"| {label} | " + " | ".join(str(row[n]["false_alarms_per_100k"]) for n in names) + " |"
        )
    print("\nAnnotated change-point series, mean F1 (margin 5)")
    for name, row in results["annotated_f1"].items():
        print(f"  {name}: {row['mean_f1']}")
    print("\nUpdate cost, us per sample")
    for name, row in results["update_cost_us_per_sample"].items():
        print(f"  {name}: {row}")
    print(f"\ntargets for {DEFAULT}: {results['targets']}  ({results['seconds']} s)")


def _cell(s: dict[str, Any]) -> str:
    if s["median_delay"] is None:
        return f"- / - / {s['missed']}m / {s['false_alarms']}fa"
    return (
        f"{s['median_delay']:.0f} / {s['p90_delay']:.0f} / {s['missed']}m / {s['false_alarms']}fa"
    )


if __name__ == "__main__":
    main()
