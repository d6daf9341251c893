"""The input-shift detector (drift.input_shift) at its shipped settings: delay and false alarms.

    python benchmarks/tta/shift_detection.py [--trials 100] [--stable-rows 200000]

- **Delay**: Gaussian rows of 64 (and 16) features; after a warm-up and 200 stable rows the
  mean of a tenth of the features (at least one) moves by 1 standard deviation (or their
  spread doubles); rows from the change to the alarm, over ``--trials`` seeds.
- **False alarms** per 100k stable rows: Gaussian rows (64 features, three streams), clean
  Digits rows (64 pixels, drawn with replacement from scikit-learn's digits: discrete,
  skewed, a third of them nearly always 0) and river's RandomRBF (10 features).
- **Digits-C switches**: from ``results/tta_shift.json`` (benchmarks/tta/run.py, the
  ``default`` row's runs), rows from each switch (the first unlabeled row included: clean
  labeled digits came before) to the first alarm in its domain, and further alarms in a
  domain.

Results: benchmarks/results/tta_shift_detection.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
if TYPE_CHECKING:  # mypy knows the folder as a package; the script imports its siblings
    from benchmarks.tta import digits_c, tabular
else:
    import digits_c
    import tabular

from streamlearn.core.drift.calibration import arl_from_rate
from streamlearn.core.drift.input_shift import InputShiftDetector
from streamlearn.settings import DriftSettings

RESULTS = Path(__file__).parents[1] / "results"
CHUNK = 32  # rows per update, as the engine's micro-batches


def shipped() -> InputShiftDetector:
    s = DriftSettings().input_shift
    return InputShiftDetector(
        k=s.k,
        arl0=arl_from_rate(s.false_alarms_per_100k),
        clip=s.clip,
        warmup=s.warmup,
        refractory=s.refractory,
    )


def feed(detector: InputShiftDetector, x: np.ndarray) -> list[int]:
    alarms: list[int] = []
    for start in range(0, len(x), CHUNK):
        alarms += [start + i for i in detector.update_many(x[start : start + CHUNK])]
    return alarms


def delay(seed: int, features: int, change: str) -> int | None:
    """Rows from the change to the alarm (None: missed within 1,000 rows, or an alarm
    before the change)."""
    rng = np.random.default_rng(seed)
    detector = shipped()
    before = rng.normal(size=(detector.warmup + 200, features))
    after = rng.normal(size=(1_000, features))
    moved = rng.choice(features, max(1, features // 10), replace=False)
    if change == "mean":
        after[:, moved] += 1.0
    else:
        after[:, moved] *= 2.0
    if feed(detector, before):
        return None
    alarms = feed(detector, after)
    return alarms[0] + 1 if alarms else None


def delays(trials: int) -> dict[str, Any]:
    out = {}
    for features in (64, 16):
        for change in ("mean", "spread"):
            found = [delay(seed, features, change) for seed in range(trials)]
            caught = [d for d in found if d is not None]
            out[f"{change}, {features} features"] = {
                "median": statistics.median(caught) if caught else None,
                "p90": float(np.percentile(caught, 90)) if caught else None,
                "missed": len(found) - len(caught),
                "trials": trials,
            }
    return out


def false_alarms(rows: int) -> dict[str, Any]:
    streams = {
        "gaussian, 64 features": [
            np.random.default_rng(s).normal(size=(rows, 64)) for s in range(3)
        ],
        "digits, 64 pixels": [_digits(rows, s) for s in range(3)],
        "RandomRBF, 10 features": [tabular.generate(s, rows)[0] for s in range(3)],
    }
    out = {}
    for name, xs in streams.items():
        alarms = [len(feed(shipped(), x)) for x in xs]
        out[name] = {
            "rows": rows * len(xs),
            "alarms": sum(alarms),
            "per_100k": round(sum(alarms) * 100_000 / (rows * len(xs)), 3),
        }
    return out


def _gaussian(rows: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, 64))


def _digits(rows: int, seed: int) -> np.ndarray:
    images = digits_c.load_split(seed)[0]
    flat = images.reshape(len(images), -1) / digits_c.MAX_VALUE
    drawn: np.ndarray = flat[np.random.default_rng(seed).integers(0, len(flat), rows)]
    return drawn


def digits_c_switches(path: Path) -> dict[str, Any]:
    """Per abrupt order: delays from each switch to its first alarm, and the alarms that
    follow no switch in their domain, over all runs in ``path``."""
    if not path.exists():
        return {}
    runs = json.loads(path.read_text())["runs"]
    out: dict[str, Any] = {}
    for order in ("abrupt", "abrupt_mixed", "standard"):
        found, extra, missed = [], 0, 0
        # The rows, and so the alarms, are the same whatever the method: the default's runs.
        chosen = [
            r
            for r in runs
            if (r["order"], r["benchmark"], r["method"]) == (order, "digits_c", "default")
        ]
        for run in chosen:
            bounds = [0, *run["switches"], 10**9]
            for start, end in itertools.pairwise(bounds):
                inside = [a - start for a in run["shifts_detected"] if start <= a < end]
                if inside:
                    found.append(inside[0] + 1)
                else:
                    missed += 1
                extra += max(0, len(inside) - 1)
        out[order] = {
            "switches": len(found) + missed,
            "detected": len(found),
            "median_delay": statistics.median(found) if found else None,
            "max_delay": max(found) if found else None,
            "alarms_after_the_first_in_a_domain": extra,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--stable-rows", type=int, default=200_000)
    args = parser.parse_args()
    began = time.perf_counter()
    report: dict[str, Any] = {
        "settings": DriftSettings().input_shift.model_dump(),
        "delay_rows": delays(args.trials),
        "false_alarms": false_alarms(args.stable_rows),
        "digits_c_switches": digits_c_switches(RESULTS / "tta_shift.json"),
    }
    report["seconds"] = round(time.perf_counter() - began, 1)
    (RESULTS / "tta_shift_detection.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
