"""The Kalman head's learned forgetting as a drift signal, beside CUSUM on the same run.

    python benchmarks/heads/forgetting_signal.py [--seeds 0 1 2] [--segment 2000]
        [--stable 20000] [--ratio 3] [--set key=value ...]

One expert with ``model.head: kalman`` (the pool off, drift detection on as shipped: CUSUM
on its losses) learns each experts-benchmark stream, test-then-train, in batches of
``engine.max_batch``. The forgetting gamma after every batch is the signal: it alarms when
the memory ``1 / (1 - gamma)`` fell below ``1 / ratio`` of its largest value since the last
alarm (or the first 500 samples), then ignores 500 samples (as ``drift.refractory``).
Per stream: detection delay of each true change (the first alarm within a visit), missed
changes, and alarms elsewhere (false); on a stable stream (SEA's first concept for
``--stable`` samples), false alarms per 100k samples. Results:
benchmarks/results/heads_forgetting_signal.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "experts"))
if TYPE_CHECKING:
    from benchmarks.experts.harness import build_engine, samples
    from benchmarks.experts.shipped import Overrides, parse_overrides, provenance, settings_for
    from benchmarks.experts.streams import Stream, build
else:
    from harness import build_engine, samples
    from shipped import Overrides, parse_overrides, provenance, settings_for
    from streams import Stream, build

from streamlearn.core.experts.headed import HeadExpert

RESULTS = Path(__file__).parents[1] / "results" / "heads_forgetting_signal.json"
STREAMS = ["sea", "agrawal", "rbf", "hyperplane", "led", "waveform"]
WARMUP = REFRACTORY = 500


def run(stream: Stream, overrides: Overrides, ratio: float) -> dict[str, list[int]]:
    """Positions of the forgetting's alarms and of CUSUM's drifts over one run."""
    settings = settings_for({**overrides, "model.head": "kalman", "experts.enabled": False})
    engine = build_engine(settings, pool=True)  # drift on; experts.enabled off: one expert
    batch = settings.engine.max_batch
    alarms: list[int] = []
    drifts: list[int] = []
    longest, quiet_until = 0.0, WARMUP
    for start in range(0, len(stream.y), batch):
        end = min(start + batch, len(stream.y))
        result = engine.process(samples(stream, start, end))
        drifts += [e.sample for e in result.drift_events if e.kind == "drift"]
        expert = engine.expert
        assert isinstance(expert, HeadExpert) and expert.forgetting is not None
        memory = 1.0 / (1.0 - expert.forgetting)
        if end < quiet_until:
            longest = max(longest, memory)
            continue
        if memory < longest / ratio:
            alarms.append(end)
            longest, quiet_until = memory, end + REFRACTORY
        longest = max(longest, memory)
    return {"forgetting": alarms, "cusum": drifts}


def score(events: list[int], stream: Stream) -> dict[str, Any]:
    """Delay per change (first event inside the new visit), missed changes, false events."""
    changes = [(s, e) for s, e, _ in stream.segments[1:]]
    delays, matched = [], set()
    for start, end in changes:
        inside = [p for p in events if start <= p < end]
        if inside:
            delays.append(inside[0] - start)
            matched.add(inside[0])
    return {
        "delays": delays,
        "median_delay": statistics.median(delays) if delays else float("nan"),
        "missed": len(changes) - len(delays),
        "false": len([p for p in events if p not in matched]),
        "changes": len(changes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", nargs="+", default=STREAMS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--segment", type=int, default=2000)
    parser.add_argument("--stable", type=int, default=20_000)
    parser.add_argument("--ratio", type=float, default=3.0)
    parser.add_argument("--set", nargs="*", default=[])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = parse_overrides(args.set)
    report: dict[str, Any] = {"command": " ".join(sys.argv), "provenance": provenance()}
    for name in args.streams:
        rows = []
        for seed in args.seeds:
            stream = build(name, 1, args.segment, seed)
            found = run(stream, {**overrides, "model.seed": seed}, args.ratio)
            rows.append({k: score(v, stream) for k, v in found.items()})
        report[name] = rows
        for signal in ("forgetting", "cusum"):
            delays = [d for r in rows for d in r[signal]["delays"]]
            print(
                f"{name:11} {signal:10} delay {statistics.median(delays) if delays else '-':>6} "
                f"missed {sum(r[signal]['missed'] for r in rows)}/"
                f"{sum(r[signal]['changes'] for r in rows)} "
                f"false {sum(r[signal]['false'] for r in rows)}",
                flush=True,
            )
    stable_rows = []
    for seed in args.seeds:
        full = build("sea", 1, args.stable, seed)
        n = full.segments[0][1]  # the first concept only
        stream = dataclasses.replace(
            full, x=full.x[:n], y=full.y[:n], regime=full.regime[:n], segments=full.segments[:1]
        )
        found = run(stream, {**overrides, "model.seed": seed}, args.ratio)
        stable_rows.append({k: len(v) * 100_000 / n for k, v in found.items()})
    report["stable_false_per_100k"] = stable_rows
    for signal in ("forgetting", "cusum"):
        rate = statistics.median(r[signal] for r in stable_rows)
        print(f"stable sea  {signal:10} false alarms per 100k {rate:.0f}", flush=True)
    args.out.write_text(json.dumps(report, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
