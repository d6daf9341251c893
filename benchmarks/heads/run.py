"""Closed-form heads against the SGD head: recovery after a spawn, accuracy, few-shot
classes, learner cost.

    python benchmarks/heads/run.py [--heads sgd rls kalman prototype] [--seeds 0 1 2]
        [--streams sea agrawal ...] [--segment 1000] [--cycles 2] [--set key=value ...]
        [--variant LABEL:key=value,...] [--skip-streams] [--skip-fewshot]

Every head runs at the shipped settings (config/default.yaml through ``load_settings``, the
experts benchmark's ``shipped.py``) with ``model.head`` set, plus ``--set`` overrides for all
(e.g. the candidate defaults ``model.learning_rate=0.003 engine.max_batch=8``) and labeled
``--variant`` rows. Three measurements:

- **streams** (the experts benchmark's streams, ``benchmarks/experts/streams.py``): the
  engine with drift detection and the expert pool on, test-then-train. *Spawn recovery*: at
  each regime's first visit, samples until the accuracy over the next 200 samples is within 2
  points of the accuracy over the visit's last 200 (its final value); median over visits.
  Also the prequential accuracy and learner samples/s (the engine's time, routing excluded);
- **few-shot** (scikit-learn's digits): one expert learns classes 0-4 (70% of their images,
  one pass in ``engine.max_batch`` batches), then classes 5..9 one at a time, 5 labeled shots
  each in one batch; after each, accuracy on the held-out 30% of the new class and of the
  classes before it;
- **cost**: learner samples/s of one expert (pool and drift handling off) on SEA, per head,
  the heads interleaved, at the shipped hidden widths and with a 256-wide last layer (the
  width the head reads); the stream runs' samples/s (pool on) are reported too.

Figures are medians over seeds. Results: benchmarks/results/heads.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sklearn.datasets import load_digits  # type: ignore[import-untyped]  # untyped library

sys.path.insert(0, str(Path(__file__).parents[1] / "experts"))
if TYPE_CHECKING:  # mypy knows the folder as a package; the script imports the siblings
    from benchmarks.experts.harness import build_engine, run_pool
    from benchmarks.experts.shipped import Overrides, parse_overrides, provenance, settings_for
    from benchmarks.experts.streams import Stream, build
else:
    from harness import build_engine, run_pool
    from shipped import Overrides, parse_overrides, provenance, settings_for
    from streams import Stream, build

from streamlearn.core.engine import Engine
from streamlearn.core.types import Sample

RESULTS = Path(__file__).parents[1] / "results" / "heads.json"
STREAMS = ["sea", "agrawal", "rbf", "hyperplane", "led", "waveform"]
WINDOW, TOLERANCE = 200, 0.02


def spawn_recovery(correct: np.ndarray, segments: list[tuple[int, int, int]]) -> list[int]:
    """Per first visit of a regime: samples until the next-WINDOW accuracy is within
    TOLERANCE of the visit's final accuracy (its last WINDOW samples)."""
    seen: set[int] = set()
    out = []
    for start, end, regime in segments:
        if regime in seen:
            continue
        seen.add(regime)
        visit = correct[start:end].astype(np.float64)
        final = float(visit[-WINDOW:].mean())
        sums = np.concatenate(([0.0], np.cumsum(visit)))
        begins = np.arange(visit.size - WINDOW + 1)
        ahead = (sums[begins + WINDOW] - sums[begins]) / WINDOW
        out.append(int(np.argmax(ahead >= final - TOLERANCE - 1e-12)))
    return out


def stream_run(
    name: str, seed: int, segment: int, cycles: int, overrides: Overrides
) -> dict[str, Any]:
    stream: Stream = build(name, cycles, segment, seed)
    settings = settings_for({**overrides, "model.seed": seed})
    run = run_pool(stream, settings)
    correct = np.asarray(run["errors"]) == 0
    spawns = spawn_recovery(correct, stream.segments)
    return {
        "accuracy": float(correct.mean()),
        "spawn_recovery": float(np.median(spawns)),
        "spawn_recoveries": spawns,
        "samples_per_s": len(correct) / max(run["seconds"], 1e-9),
        "experts": len({int(a) for a in run["active"]}),
    }


def _digits(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits split 70/30 per class, shuffled with the seed."""
    data = load_digits()
    x, y = data.data.astype(np.float32), data.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        cut = int(0.7 * idx.size)
        train += idx[:cut].tolist()
        test += idx[cut:].tolist()
    return x[train], y[train], x[test], y[test]


def _accuracy(engine: Engine, x: np.ndarray, y: np.ndarray) -> float:
    """The active expert's accuracy on (x, y), scaled as the engine scales, learning nothing."""
    assert engine.pool is not None
    inputs = torch.tensor(x)
    if engine.scaler is not None:
        inputs = engine.scaler.transform(inputs)
    out = engine.pool.active_expert.predict(inputs)[:, : len(engine.labels.labels)]
    labels = [engine.labels.labels[int(i)] for i in out.argmax(dim=1)]
    return float(np.mean(np.asarray(labels) == y))


def fewshot_run(seed: int, overrides: Overrides, shots: int = 5) -> dict[str, Any]:
    x, y, x_test, y_test = _digits(seed)
    settings = settings_for({**overrides, "model.seed": seed, "adapt.method": "none"})
    engine = build_engine(settings, pool=False)
    batch = settings.engine.max_batch
    rng = np.random.default_rng(seed + 100)
    base = rng.permutation(np.flatnonzero(y < 5))
    for start in range(0, base.size, batch):
        rows = base[start : start + batch]
        engine.process([Sample(x[i].tolist(), int(y[i])) for i in rows])
    new, old = [], []
    for c in range(5, 10):
        shot_rows = rng.choice(np.flatnonzero(y == c), shots, replace=False)
        engine.process([Sample(x[i].tolist(), int(y[i])) for i in shot_rows])
        is_new = y_test == c
        before = y_test < c
        new.append(_accuracy(engine, x_test[is_new], y_test[is_new]))
        old.append(_accuracy(engine, x_test[before], y_test[before]))
    return {"new_class": float(np.mean(new)), "old_classes": float(np.mean(old)), "new": new}


def cost_run(configs: list[tuple[str, Overrides]], seed: int, n: int = 4000) -> dict[str, float]:
    """Learner samples/s of one expert (drift handling and pool off) per configuration on
    the SEA stream, the configurations interleaved so that a busy machine slows all alike."""
    stream = build("sea", 1, n, seed)
    out: dict[str, float] = {}
    for label, overrides in configs:
        settings = settings_for({**overrides, "model.seed": seed})
        engine = build_engine(settings, pool=False)
        batch = settings.engine.max_batch
        rows = [
            Sample(x, int(y)) for x, y in zip(stream.x.tolist(), stream.y.tolist(), strict=True)
        ]
        engine.process(rows[:batch])  # built, warmed up: not timed
        began = time.perf_counter()
        for start in range(batch, n, batch):
            engine.process(rows[start : start + batch])
        out[label] = (n - batch) / (time.perf_counter() - began)
    return out


def median_of(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {
        k: statistics.median(float(r[k]) for r in runs)
        for k, v in runs[0].items()
        if isinstance(v, int | float)
    }


def _costs(
    configs: list[tuple[str, Overrides]], seeds: list[int], widths: list[str]
) -> dict[str, dict[str, float]]:
    """Median learner samples/s per configuration and hidden widths (the head reads the last)."""
    out: dict[str, dict[str, float]] = {}
    for text in widths:
        hidden = [int(w) for w in text.split(",")]
        wide = [(label, {**o, "model.hidden": hidden}) for label, o in configs]
        runs = [cost_run(wide, seed) for seed in seeds]
        out[text] = {label: statistics.median(r[label] for r in runs) for label, _ in configs}
        sgd = out[text].get("sgd")
        for label, rate in out[text].items():
            ratio = f" ({rate / sgd:.2f} x sgd)" if sgd else ""
            print(f"cost hidden={text:8} {label:12} {rate:7.0f} samples/s{ratio}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heads", nargs="*", default=["sgd", "rls", "kalman", "prototype"])
    parser.add_argument("--streams", nargs="+", default=STREAMS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--segment", type=int, default=1000, help="samples per visit")
    parser.add_argument("--cycles", type=int, default=1, help="visits of every regime")
    parser.add_argument("--set", nargs="*", default=[], help="key=value for every head")
    parser.add_argument("--variant", nargs="*", default=[], help="LABEL:key=value,...")
    parser.add_argument("--skip-streams", action="store_true")
    parser.add_argument("--skip-fewshot", action="store_true")
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument(
        "--cost-hidden", nargs="*", default=["64,64", "64,256"], help="widths for the cost runs"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the learner process runs (engine.torch_threads)
    common = parse_overrides(args.set)
    configs = [(head, {**common, "model.head": head}) for head in args.heads]
    for text in args.variant:
        label, _, rest = text.partition(":")
        configs.append((label, {**common, **parse_overrides(rest.split(","))}))
    report: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "settings": common,
        "seeds": args.seeds,
        "segment": args.segment,
        "cycles": args.cycles,
        "provenance": provenance(),
        "streams": {},
        "fewshot": {},
    }
    began = time.time()
    for label, overrides in configs:
        if not args.skip_streams:
            for name in args.streams:
                runs = [
                    stream_run(name, s, args.segment, args.cycles, overrides) for s in args.seeds
                ]
                row = median_of(runs)
                report["streams"].setdefault(name, {})[label] = {**row, "runs": runs}
                print(
                    f"{name:12} {label:12} acc {row['accuracy']:.3f} "
                    f"spawn-recovery {row['spawn_recovery']:6.0f} "
                    f"experts {row['experts']:.0f} samples/s {row['samples_per_s']:7.0f}",
                    flush=True,
                )
        if not args.skip_fewshot:
            runs = [fewshot_run(s, overrides) for s in args.seeds]
            row = median_of(runs)
            report["fewshot"][label] = {**row, "runs": runs}
            print(
                f"few-shot     {label:12} new {row['new_class']:.3f} old {row['old_classes']:.3f}",
                flush=True,
            )
    if not args.skip_cost:
        report["cost"] = _costs(configs, args.seeds, args.cost_hidden)
    report["seconds"] = time.time() - began
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
