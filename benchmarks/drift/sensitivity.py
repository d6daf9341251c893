"""Drift sensitivity on concept changes that leave the inputs alone: recurring Agrawal.

    python benchmarks/drift/sensitivity.py [--seeds 0 1 2 3 4] [--segment 5000] [--quick]
        [--engine key=value ...] [--no-grid] [--online LABEL:key=value,... ...]

River's Agrawal classification functions 0-9 share one input distribution (salary,
commission, age, ... on raw scales, incomes in the 100,000s beside 0-4 codes), so a change
of function moves only the labels. Each seed visits the ten functions in a shuffled order,
twice (a fresh shuffle per cycle, never the same function twice in a row): 19 changes per
seed, ``--segment`` samples a visit. Detectors are judged on what they are fed in the
daemon: the per-sample losses (or 0/1 errors) of streamlearn's engine at the shipped
settings (config/default.yaml, ``--engine`` overrides on top), learning test-then-train.

- **offline** (the grid): the engine runs once per stream with drift handling off (one
  expert, as ``single`` in the experts benchmark) and its losses and errors are fed to every
  detector setting in the grid, in the engine's batches. A change counts as found when an
  alarm falls within ``HORIZON`` samples after it; alarms anywhere else are false.
- **online** (``--online LABEL:key=value,...``, repeatable): the engine itself at the
  shipped settings with those overrides (engine and drift alike), drift detection and the
  expert pool on, as the daemon runs; its drift events are scored the same way, and its
  false alarms counted on the stable streams (``--online-stable-functions``).

Some function pairs label most inputs alike (6 and 8 differ on 6% of inputs, 7 and 9 on
2%): such a change barely moves any learner's loss. ``disagreement`` measures, on 50,000
shared inputs, the share of labels that differ between every two functions; the recall is
reported over all changes and over the changes that flip at least ``MIN_FLIP`` of labels.

False alarms per 100k stable samples come from streams without any change: the engine's
losses on each Agrawal function alone (105,000 samples each, learning from scratch, all
alarms counted), and 1,000,000 values of standard normal, skewed (gamma) and 0/1
(Bernoulli 0.1) noise, as in ``run.py``. Results: benchmarks/results/drift_sensitivity.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from streamlearn.core.drift.registry import build_detector
from streamlearn.core.engine import Engine
from streamlearn.core.types import DriftSignal, Sample
from streamlearn.settings import DriftSettings, Settings

sys.path.insert(0, str(Path(__file__).parent))
EXPERTS = Path(__file__).parents[1] / "experts"
sys.path.append(str(EXPERTS))  # after this folder: its streams.py is not this one's


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


if TYPE_CHECKING:  # mypy knows the folders as packages; the script imports its siblings
    from benchmarks.drift.streams import noise
    from benchmarks.experts.shipped import (
        Overrides,
        label,
        parse_overrides,
        provenance,
        settings_for,
    )
    from benchmarks.experts.streams import _Agrawal
else:
    from shipped import Overrides, label, parse_overrides, provenance, settings_for
    from streams import noise

    _Agrawal = _load("experts_streams", EXPERTS / "streams.py")._Agrawal

RESULTS = Path(__file__).parents[1] / "results" / "drift_sensitivity.json"
FUNCTIONS = 10
HORIZON = 1_000  # a change is found by an alarm within this many samples after it
MIN_FLIP = 0.10  # changes that flip at least this share of labels are "detectable"
STABLE_LENGTH = 105_000
NOISE_LENGTH = 1_000_000

# The grid: each dict is a set of drift.* overrides on top of the shipped ones.
GRID_AXES: dict[str, list[Any]] = {
    "signal": ["loss", "error"],
    "cusum.k": [0.25, 0.5, 1.0],
    "clip": [2.5, 4.0, 6.0, 10.0],
    "false_alarms_per_100k": [0.1, 1.0],
    "warmup": [250, 500],
}
OTHER_DETECTORS: list[dict[str, Any]] = [
    {"detector": "page_hinkley", "clip": clip, "signal": signal}
    for clip in (2.5, 6.0)
    for signal in ("loss", "error")
] + [
    {"detector": "loss_deviation", "clip": clip, "signal": signal}
    for clip in (2.5, 6.0)
    for signal in ("loss", "error")
]


def grid() -> list[dict[str, Any]]:
    keys = list(GRID_AXES)
    points = [
        dict(zip(keys, values, strict=True)) for values in itertools.product(*GRID_AXES.values())
    ]
    return points + OTHER_DETECTORS


# --- streams ----------------------------------------------------------------------------


def orders(seed: int, cycles: int) -> list[int]:
    """The functions in visiting order: a shuffle per cycle, no function twice in a row."""
    rng = random.Random(seed)
    out: list[int] = []
    for _ in range(cycles):
        while True:
            order = rng.sample(range(FUNCTIONS), FUNCTIONS)
            if not out or order[0] != out[-1]:
                break
        out += order
    return out


def _generator(function: int, seed: int) -> Iterator[tuple[dict[str, float], int]]:
    return iter(_Agrawal(classification_function=function, seed=seed * 100 + function))


def recurring(seed: int, segment: int, cycles: int = 2) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """x [n, 9] on raw scales, labels, the visiting order."""
    visits = orders(seed, cycles)
    sources = {f: _generator(f, seed) for f in set(visits)}
    xs, ys = [], []
    for f in visits:
        rows = list(itertools.islice(sources[f], segment))
        xs.append(np.array([list(r.values()) for r, _ in rows], dtype=np.float32))
        ys.append(np.array([y for _, y in rows], dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys), visits


def stable(function: int, seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rows = list(itertools.islice(_generator(function, seed + 50), n))
    x = np.array([list(r.values()) for r, _ in rows], dtype=np.float32)
    return x, np.array([y for _, y in rows], dtype=np.int64)


def disagreement(n: int = 50_000) -> np.ndarray:
    """[10, 10]: share of ``n`` shared inputs on which functions i and j disagree."""
    gen = _Agrawal(classification_function=0, seed=12_345)
    functions: list[Callable[..., int]] = gen._classification_functions
    rows = [list(x.values()) for x, _ in itertools.islice(iter(gen), n)]
    labels = np.array([[f(*row) for row in rows] for f in functions], dtype=np.int64)
    return np.asarray((labels[:, None, :] != labels[None, :, :]).mean(axis=2))


# --- the engine ---------------------------------------------------------------------------


def trace(x: np.ndarray, y: np.ndarray, settings: Settings, pool: bool) -> dict[str, Any]:
    """The engine over (x, y) test-then-train: per-sample losses, errors and drift alarms."""
    drift = settings.drift if pool else settings.drift.model_copy(update={"enabled": False})
    experts = settings.experts.model_copy(update={"enabled": pool})
    engine = Engine(settings.model, settings.engine, drift, experts, settings.adapt)
    batch = settings.engine.max_batch
    losses = np.zeros(len(y))
    errors = np.zeros(len(y))
    alarms: list[int] = []
    for start in range(0, len(y), batch):
        end = min(start + batch, len(y))
        rows = [
            Sample(r, int(t))
            for r, t in zip(x[start:end].tolist(), y[start:end].tolist(), strict=True)
        ]
        result = engine.process(rows)
        assert result.losses is not None and result.errors is not None
        losses[start:end] = result.losses.double().cpu().numpy()
        errors[start:end] = result.errors.double().cpu().numpy()
        alarms += [e.sample for e in result.drift_events if e.kind == "drift"]
    return {"losses": losses, "errors": errors, "alarms": alarms}


def detect(values: np.ndarray, drift: dict[str, Any], batch: int = 1_024) -> list[int]:
    """Alarms of the detector the drift.* overrides describe, fed ``values`` in batches
    (a detector gives the same signals whatever the batching: the conformance checks)."""
    detector = build_detector(drift_settings(drift))
    found: list[int] = []
    for start in range(0, len(values), batch):
        found += [
            start + a.index
            for a in detector.update_many(values[start : start + batch])
            if a.signal is DriftSignal.DRIFT
        ]
    return found


def drift_settings(drift: dict[str, Any]) -> DriftSettings:
    return settings_for({f"drift.{k}": v for k, v in drift.items()}).drift


# --- scoring -------------------------------------------------------------------------------


def score_changes(
    alarms: list[int], changes: list[int], flips: list[float], n: int
) -> dict[str, Any]:
    """Per change: found (an alarm within HORIZON after it) and the delay; false alarms:
    the alarms outside every change's window, per 100k samples outside the windows."""
    found, delays, matched = [], [], set()
    for change in changes:
        hit = next((a for a in alarms if change <= a < change + HORIZON), None)
        found.append(hit is not None)
        if hit is not None:
            delays.append(hit - change)
            matched.add(hit)
    false = [a for a in alarms if a not in matched]
    outside = n - HORIZON * len(changes)
    return {
        "found": found,
        "delays": delays,
        "flips": flips,
        "false_alarms": len(false),
        "samples_outside": outside,
    }


def summarize(per_stream: list[dict[str, Any]]) -> dict[str, Any]:
    found = [f for s in per_stream for f in s["found"]]
    flips = [f for s in per_stream for f in s["flips"]]
    delays = [d for s in per_stream for d in s["delays"]]
    big = [f for f, flip in zip(found, flips, strict=True) if flip >= MIN_FLIP]
    false = sum(s["false_alarms"] for s in per_stream)
    outside = sum(s["samples_outside"] for s in per_stream)
    return {
        "changes": len(found),
        "found": int(sum(found)),
        "recall": float(np.mean(found)) if found else float("nan"),
        "changes_flip_ge_min": len(big),
        "recall_flip_ge_min": float(np.mean(big)) if big else float("nan"),
        "median_delay": float(np.median(delays)) if delays else None,
        "false_alarms_in_recurring": false,
        "false_alarms_per_100k_in_recurring": round(false / outside * 1e5, 3),
    }


def stable_rate(alarm_counts: list[int], lengths: list[int]) -> float:
    return round(sum(alarm_counts) / sum(lengths) * 1e5, 3)


def progress(what: str) -> None:
    print(f"  ... {what}", file=sys.stderr, flush=True)


# --- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--segment", type=int, default=5_000, help="samples per visit")
    parser.add_argument("--stable-functions", nargs="+", type=int, default=list(range(FUNCTIONS)))
    parser.add_argument("--stable-length", type=int, default=STABLE_LENGTH)
    parser.add_argument(
        "--engine", nargs="*", default=[], help="grid's engine: key=value (model.learning_rate=...)"
    )
    parser.add_argument("--no-grid", action="store_true", help="only the online runs")
    parser.add_argument(
        "--online",
        action="append",
        default=[],
        help="LABEL:key=value,... the engine itself (pool on) at these overrides; repeatable",
    )
    parser.add_argument(
        "--online-stable-functions",
        nargs="+",
        type=int,
        default=None,
        help="stable streams for the online runs (default: --stable-functions)",
    )
    parser.add_argument("--quick", action="store_true", help="2 seeds, 3 stable functions")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.stable_functions = [0, 1], [0, 4, 7]
    torch.set_num_threads(1)
    began = time.perf_counter()
    engine_overrides: Overrides = parse_overrides(args.engine)
    settings = settings_for(engine_overrides)
    matrix = disagreement()
    recurring_streams = []
    for seed in args.seeds:
        x, y, visits = recurring(seed, args.segment)
        recurring_streams.append(
            {
                "seed": seed,
                "x": x,
                "y": y,
                "visits": visits,
                "changes": [i * args.segment for i in range(1, len(visits))],
                "flips": [float(matrix[a, b]) for a, b in itertools.pairwise(visits)],
            }
        )
    stable_streams = {
        f: stable(f, 0, args.stable_length)
        for f in {*args.stable_functions, *(args.online_stable_functions or [])}
    }
    report: dict[str, Any] = {
        "library": provenance(),
        "seeds": args.seeds,
        "segment": args.segment,
        "horizon": HORIZON,
        "min_flip": MIN_FLIP,
        "stable_length": args.stable_length,
        "disagreement": np.round(matrix, 4).tolist(),
        "visits": {str(r["seed"]): r["visits"] for r in recurring_streams},
        "changes": sum(len(r["changes"]) for r in recurring_streams),
        "changes_flip_ge_min": sum(f >= MIN_FLIP for r in recurring_streams for f in r["flips"]),
    }
    ranked: list[dict[str, Any]] = []
    if not args.no_grid:
        report["grid"], ranked = offline_grid(
            settings, recurring_streams, {f: stable_streams[f] for f in args.stable_functions}
        )
        report["engine"] = {"overrides": engine_overrides, "label": label(engine_overrides)}
        report["shipped"] = next(
            (
                r
                for r in report["grid"]
                if "invalid" not in r and _is_shipped(r["drift"], settings.drift)
            ),
            None,
        )
        report["best"] = ranked[0]
    report["online"] = {}
    online_stable = args.online_stable_functions or args.stable_functions
    for spec in args.online:
        name, _, rest = spec.partition(":")
        overrides = parse_overrides([item for item in rest.split(",") if item])
        progress(f"online engine {name}: {overrides}")
        on = settings_for(overrides)
        per_stream = []
        missed = []
        for r in recurring_streams:
            run = trace(r["x"], r["y"], on, pool=True)
            scored = score_changes(run["alarms"], r["changes"], r["flips"], len(r["y"]))
            per_stream.append(scored)
            for i, hit in enumerate(scored["found"]):
                if not hit:  # seed, from, to, share of labels flipped, engine error before
                    before = run["errors"][r["changes"][i] - HORIZON : r["changes"][i]]
                    after = run["errors"][r["changes"][i] : r["changes"][i] + HORIZON]
                    missed.append(
                        {
                            "seed": r["seed"],
                            "from": r["visits"][i],
                            "to": r["visits"][i + 1],
                            "flip": round(r["flips"][i], 3),
                            "error_before": round(float(before.mean()), 3),
                            "error_after": round(float(after.mean()), 3),
                        }
                    )
        counts = [len(trace(*stable_streams[f], on, pool=True)["alarms"]) for f in online_stable]
        report["online"][name] = {
            "overrides": overrides,
            **summarize(per_stream),
            "stable_agrawal_per_100k": stable_rate(counts, [args.stable_length] * len(counts)),
            "stable_agrawal_alarms": dict(zip(map(str, online_stable), counts, strict=True)),
            "missed": missed,
        }
    report["seconds"] = round(time.perf_counter() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print_report(report, ranked)


def offline_grid(
    settings: Settings,
    recurring_streams: list[dict[str, Any]],
    stable_streams: dict[int, tuple[np.ndarray, np.ndarray]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every grid setting on the single expert's losses and errors: all rows, and the
    valid ones best first (meeting the targets, then recall on detectable changes)."""
    progress("engine traces on recurring streams")
    traces = [trace(r["x"], r["y"], settings, pool=False) for r in recurring_streams]
    progress("engine traces on stable streams")
    stable_traces = [trace(x, y, settings, pool=False) for x, y in stable_streams.values()]
    noises = {d: noise(d, NOISE_LENGTH, 100) for d in ("normal", "gamma", "bernoulli")}
    progress(f"{len(grid())} detector settings")
    rows: list[dict[str, Any]] = []
    noise_cache: dict[str, dict[str, float]] = {}
    for drift in grid():
        try:
            drift_settings(drift)
        except Exception as exc:  # a threshold the warm-up cannot promise
            rows.append({"drift": drift, "invalid": str(exc).splitlines()[0]})
            continue
        signal = "errors" if drift.get("signal", "loss") == "error" else "losses"
        per_stream = [
            score_changes(detect(t[signal], drift), r["changes"], r["flips"], len(r["y"]))
            for t, r in zip(traces, recurring_streams, strict=True)
        ]
        counts = [len(detect(t[signal], drift)) for t in stable_traces]
        detector_only = json.dumps({k: v for k, v in drift.items() if k != "signal"})
        if detector_only not in noise_cache:  # noise is the same whatever the signal
            noise_cache[detector_only] = {
                d: stable_rate([len(detect(v, drift))], [len(v)]) for d, v in noises.items()
            }
        rows.append(
            {
                "drift": drift,
                **summarize(per_stream),
                "stable_agrawal_per_100k": stable_rate(
                    counts, [len(t["losses"]) for t in stable_traces]
                ),
                "stable_agrawal_alarms": dict(zip(map(str, stable_streams), counts, strict=True)),
                "stable_noise_per_100k": noise_cache[detector_only],
            }
        )
    valid = [r for r in rows if "invalid" not in r]
    for r in valid:
        r["meets_targets"] = bool(
            r["recall_flip_ge_min"] >= 0.9
            and r["stable_agrawal_per_100k"] <= 1.0
            and max(r["stable_noise_per_100k"].values()) <= 1.0
        )
    error_rates = [float(t["errors"].mean()) for t in traces]
    for row in rows:
        row["engine_error_rate_recurring"] = round(float(np.mean(error_rates)), 4)
    ranked = sorted(
        valid,
        key=lambda r: (
            r["meets_targets"],
            r["recall_flip_ge_min"],
            r["recall"],
            -r["stable_agrawal_per_100k"],
        ),
        reverse=True,
    )
    return rows, ranked


def _is_shipped(drift: dict[str, Any], shipped: DriftSettings) -> bool:
    return drift_settings(drift) == shipped


def print_report(report: dict[str, Any], ranked: list[dict[str, Any]]) -> None:
    print(
        f"grid engine {report.get('engine')}; horizon {HORIZON}; "
        f"detectable: >= {MIN_FLIP:.0%} of labels flipped"
    )
    print(
        f"{'drift overrides':62} {'found':>7} {'recall':>6} {'rec>=X':>6} {'delay':>5} "
        f"{'fa/100k rec':>11} {'stable':>6} {'noise max':>9}"
    )
    shown = ([report["shipped"]] if report.get("shipped") else []) + ranked[:15]
    for r in shown:
        worst = max(r["stable_noise_per_100k"].values())
        print(_line(json.dumps(r["drift"]), r) + f" {worst:9.2f}")
    for name, r in report["online"].items():
        print(_line(f"online {name}", r))


def _line(what: str, r: dict[str, Any]) -> str:
    delay = f"{r['median_delay']:5.0f}" if r["median_delay"] is not None else "    -"
    return (
        f"{what[:62]:62} {r['found']:>3}/{r['changes']:<3} {r['recall']:6.2f} "
        f"{r['recall_flip_ge_min']:6.2f} {delay} {r['false_alarms_per_100k_in_recurring']:11.2f} "
        f"{r['stable_agrawal_per_100k']:6.2f}"
    )


if __name__ == "__main__":
    main()
