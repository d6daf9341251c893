"""Candidate defaults, measured on every stream of the experts benchmark.

    python benchmarks/defaults/sweep.py --grid lr_batch [--quick] [--seeds 0 1 2]
    python benchmarks/defaults/sweep.py --grid drift --base model.learning_rate=0.003
    python benchmarks/defaults/sweep.py --config model.learning_rate=0.003,engine.max_batch=8
    python benchmarks/defaults/sweep.py --report   # the table of what is stored

Every configuration is the shipped settings (config/default.yaml through load_settings,
``benchmarks/experts/shipped.py``) with dotted overrides on top, run in-process on the
streams of ``benchmarks/experts/streams.py`` as ``benchmarks/experts/run.py`` runs them:
``pool`` (the engine as configured) and ``single`` (drift handling off), ``--oracle`` adds
the per-regime oracle. river's ARF, HAT and the naive baseline come from the cache of
full-length runs (``baselines.cached_river``): a shorter stream (fewer cycles) is a prefix
of the full one, sample for sample, so its river figures are the full run's, truncated.

Grids (``--grid``):

- ``lr_batch``: Adam learning rate 1e-3, 3e-3, 1e-2 x engine.max_batch 8, 32;
- ``drift``: one drift or pool setting changed at a time from ``--base``: detector,
  signal, cusum.k, clip, false_alarms_per_100k, warmup, refractory, experts.spawn;
- ``selftune``: the multi-rate expert of ``benchmarks/experts/selftune.py``.

Each (configuration, stream, seed, cycles, segment) is stored, under the configuration's
label and a fingerprint of the settings it ran with (``label#fingerprint``: labels are
relative to the shipped defaults of their day), in
benchmarks/results/defaults_sweep.json as soon as it is done and never run twice: a sweep
can be stopped and resumed. ``--quick``: seed 0, two cycles of 2,000-sample visits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

EXPERTS = Path(__file__).parents[1] / "experts"
sys.path.insert(0, str(EXPERTS))
if TYPE_CHECKING:  # mypy knows the folders as packages; the script imports the experts'
    from benchmarks.experts.baselines import cached_river, models_for
    from benchmarks.experts.harness import headline, run_oracle, run_pool, score
    from benchmarks.experts.shipped import (
        Overrides,
        effective,
        label,
        parse_overrides,
        provenance,
        settings_for,
    )
    from benchmarks.experts.streams import STREAMS, Stream, build
else:
    from baselines import cached_river, models_for
    from harness import headline, run_oracle, run_pool, score
    from shipped import Overrides, effective, label, parse_overrides, provenance, settings_for
    from streams import STREAMS, Stream, build

RESULTS = Path(__file__).parents[1] / "results" / "defaults_sweep.json"
FULL_CYCLES = 3  # river's cached runs are this long; shorter streams are their prefixes

GRIDS: dict[str, list[Overrides]] = {
    "lr_batch": [
        {"model.learning_rate": lr, "engine.max_batch": batch}
        for batch in (32, 8)
        for lr in (0.001, 0.003, 0.01)
    ],
    "drift": [
        {"drift.detector": "page_hinkley"},
        {"drift.detector": "loss_deviation"},
        {"drift.detector": "adwin"},
        {"drift.signal": "error"},
        {"drift.cusum.k": 0.25},
        {"drift.cusum.k": 1.0},
        {"drift.clip": 4.0},
        {"drift.clip": 6.0},
        {"drift.false_alarms_per_100k": 1.0},
        {"drift.warmup": 250},
        {"drift.refractory": 250},
        {"experts.spawn": "fresh"},
    ],
    "selftune": [{"model.factory": "selftune:multi_rate"}],
}


def key(config: str, stream: str, seed: int, cycles: int, segment: int) -> str:
    return f"{config}|{stream}|{seed}|{cycles}|{segment}"


def fingerprint(overrides: Overrides) -> str:
    """The settings a configuration ran with, hashed: a label is relative to the shipped
    defaults of its day ("defaults" meant Adam 0.001 at batch 32 until they moved), so
    entries are stored under ``label#fingerprint`` and a stale one is never taken for the
    shipped settings of today."""
    dumped = settings_for(overrides).model_dump_json()
    return hashlib.sha256(dumped.encode()).hexdigest()[:8]


def config_key(overrides: Overrides) -> str:
    return f"{label(overrides)}#{fingerprint(overrides)}"


def river_figures(name: str, seed: int, cycles: int, segment: int) -> dict[str, Any]:
    """river's learners on the stream, from the full-length cached runs, truncated."""
    full = build(name, max(cycles, FULL_CYCLES), segment, seed)
    stream = build(name, cycles, segment, seed)
    assert np.array_equal(full.x[: len(stream.y)], stream.x)  # the prefix property
    out = {}
    for model in models_for(stream):
        run = cached_river(model, full, seed)
        share = len(stream.y) / len(full.y)
        errors = run.errors[: len(stream.y)]
        out[model] = score(stream, {"errors": errors, "seconds": run.seconds * share})
    return out


def run_config(overrides: Overrides, stream: Stream, oracle: bool) -> dict[str, dict[str, Any]]:
    settings = settings_for(overrides, stream.task)
    pool = run_pool(stream, settings)
    figures = {
        "pool": score(stream, pool),
        "single": score(stream, run_pool(stream, settings, enabled=False)),
    }
    figures["pool"]["drift_samples"] = pool["drifts"]
    if oracle:
        figures["oracle"] = score(stream, run_oracle(stream, settings))
    return figures


def load(path: Path) -> dict[str, Any]:
    if path.exists():
        stored: dict[str, Any] = json.loads(path.read_text())
        return stored
    return {"entries": {}, "river": {}, "configs": {}}


def save(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float) + "\n")
    tmp.replace(path)


# --- the report ------------------------------------------------------------------------


def table(
    data: dict[str, Any], cycles: int, segment: int, seeds: list[int] | None = None
) -> dict[str, Any]:
    """Per configuration and stream, medians over the seeds stored for this length:
    pool, single, oracle and river's figures; per configuration, the targets."""
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for entry_key, entry in data["entries"].items():
        config, stream, seed, c, s = entry_key.split("|")
        if int(c) != cycles or int(s) != segment or (seeds and int(seed) not in seeds):
            continue
        rows.setdefault(config, {}).setdefault(stream, {})[seed] = entry
    out: dict[str, Any] = {}
    for config, streams in rows.items():
        per_stream = {}
        for stream, by_seed in streams.items():
            task = next(iter(by_seed.values()))["task"]
            figure, higher = headline(task)
            sign = 1.0 if higher else -1.0
            cells: dict[str, Any] = {"figure": figure, "seeds": sorted(by_seed)}
            for learner in ("pool", "single", "oracle"):
                values = [
                    e["figures"][learner][figure]
                    for e in by_seed.values()
                    if learner in e["figures"]
                ]
                if values:
                    cells[learner] = statistics.median(values)
            river_vals: dict[str, list[float]] = {}
            for seed in by_seed:
                river = data["river"].get(key("river", stream, int(seed), cycles, segment), {})
                for model, figures in river.items():
                    river_vals.setdefault(model, []).append(figures[figure])
            for model, values in river_vals.items():
                cells[model] = statistics.median(values)
            if "arf" in cells:
                cells["ge_arf"] = sign * (cells["pool"] - cells["arf"]) >= 0
                cells["ge_arf_seeds"] = sum(
                    sign
                    * (
                        e["figures"]["pool"][figure]
                        - data["river"][key("river", stream, int(sd), cycles, segment)]["arf"][
                            figure
                        ]
                    )
                    >= 0
                    for sd, e in by_seed.items()
                )
            cells["ge_single"] = sign * (cells["pool"] - cells["single"]) >= 0
            cells["ge_single_seeds"] = sum(
                sign * (e["figures"]["pool"][figure] - e["figures"]["single"][figure]) >= 0
                for e in by_seed.values()
            )
            if "oracle" in cells:
                cells["oracle_gap"] = sign * (cells["oracle"] - cells["pool"])
            per_stream[stream] = cells
        classes = [c for c in per_stream.values() if c["figure"] == "accuracy"]
        out[config] = {
            "streams": per_stream,
            "mean_accuracy": statistics.mean(c["pool"] for c in classes) if classes else None,
            "streams_ge_arf": sum(bool(c.get("ge_arf")) for c in per_stream.values()),
            "streams_ge_single": sum(bool(c["ge_single"]) for c in per_stream.values()),
            "n_streams": len(per_stream),
            "worst_vs_arf": min(
                (c["pool"] - c["arf"] for c in classes if "arf" in c), default=None
            ),
        }
    return out


def print_table(report: dict[str, Any]) -> None:
    if not report:
        print("nothing stored for this length")
        return
    streams = list(dict.fromkeys(s for r in report.values() for s in r["streams"]))
    short = {s: s.replace("_digits", "D")[:9] for s in streams}
    print(
        f"{'configuration':46} "
        + " ".join(f"{short[s]:>9}" for s in streams)
        + "  mean  >=arf >=single worst-arf"
    )
    first = next(iter(report.values()))["streams"]
    for learner in ("arf", "hat"):
        cells = [first.get(s, {}).get(learner) for s in streams]
        print(
            f"{'river ' + learner:46} "
            + " ".join(f"{c:9.3f}" if c is not None else " " * 9 for c in cells)
        )
    ranked = sorted(report.items(), key=lambda kv: -(kv[1]["mean_accuracy"] or 0))
    for config, r in ranked:
        cells = []
        for s in streams:
            c = r["streams"].get(s)
            if c is None:
                cells.append(" " * 9)
                continue
            mark = "" if c.get("ge_arf", True) else "<"
            mark += "" if c["ge_single"] else "s"
            cells.append(f"{mark:>2}{c['pool']:7.3f}")
        worst = f"{r['worst_vs_arf']:+.3f}" if r["worst_vs_arf"] is not None else ""
        print(
            f"{config[:46]:46} "
            + " ".join(cells)
            + f" {r['mean_accuracy'] or 0:.3f} {r['streams_ge_arf']:>3}/{r['n_streams']}"
            + f" {r['streams_ge_single']:>3}/{r['n_streams']}  {worst}"
        )
    print("pool figure per stream (accuracy; MAE for friedman); '<': below ARF, 's': below single")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grid", choices=list(GRIDS), action="append", default=[])
    parser.add_argument(
        "--config", action="append", default=[], help="key=value,key=value (one configuration)"
    )
    parser.add_argument("--base", nargs="*", default=[], help="overrides under every grid point")
    parser.add_argument("--defaults", action="store_true", help="also the shipped settings")
    parser.add_argument("--streams", nargs="+", default=list(STREAMS), choices=list(STREAMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--cycles", type=int, default=FULL_CYCLES)
    parser.add_argument("--segment", type=int, default=2_000)
    parser.add_argument("--oracle", action="store_true", help="also the per-regime oracle")
    parser.add_argument("--quick", action="store_true", help="seed 0, 2 cycles")
    parser.add_argument("--report", action="store_true", help="print what is stored, run nothing")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.cycles = [0], 2
    torch.set_num_threads(1)
    data = load(args.out)
    base = parse_overrides(args.base)
    configs: list[Overrides] = [{}] if args.defaults else []
    for grid in args.grid:
        configs += [{**base, **point} for point in GRIDS[grid]]
    configs += [parse_overrides([i for i in c.split(",") if i]) for c in args.config]
    configs = list({label(c): c for c in map(effective, configs)}.values())
    began = time.perf_counter()
    todo = [
        (config, stream, seed)
        for seed in args.seeds
        for stream in args.streams
        for config in configs
        if key(config_key(config), stream, seed, args.cycles, args.segment) not in data["entries"]
        or (
            args.oracle
            and "oracle"
            not in data["entries"][
                key(config_key(config), stream, seed, args.cycles, args.segment)
            ]["figures"]
        )
    ]
    if not args.report:
        data.setdefault("provenance", []).append({**provenance(), "started": time.time()})
    for done, (config, stream_name, seed) in enumerate([] if args.report else todo, 1):
        river_key = key("river", stream_name, seed, args.cycles, args.segment)
        if river_key not in data["river"]:
            data["river"][river_key] = river_figures(stream_name, seed, args.cycles, args.segment)
        stream = build(stream_name, args.cycles, args.segment, seed)
        t = time.perf_counter()
        figures = run_config(config, stream, args.oracle)
        name = config_key(config)
        data["configs"][name] = config
        data["entries"][key(name, stream_name, seed, args.cycles, args.segment)] = {
            "task": stream.task,
            "figures": figures,
            "seconds": time.perf_counter() - t,
        }
        save(args.out, data)
        figure, _ = headline(stream.task)
        print(
            f"[{done}/{len(todo)}] {name} {stream_name} s{seed}: pool "
            f"{figures['pool'][figure]:.3f} single {figures['single'][figure]:.3f} arf "
            f"{data['river'][river_key]['arf'][figure]:.3f} "
            f"({time.perf_counter() - t:.0f} s, {time.perf_counter() - began:.0f} s in all)",
            file=sys.stderr,
            flush=True,
        )
    report = table(data, args.cycles, args.segment, args.seeds)
    print_table(report)
    data.setdefault("tables", {})[f"cycles={args.cycles},segment={args.segment}"] = report
    if not args.report:
        save(args.out, data)


if __name__ == "__main__":
    main()
