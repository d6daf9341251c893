"""What the model guard costs Engine.process: an in-process paired A/B.

    python benchmarks/guard_cost.py [--steps N] [--out benchmarks/results/guard_cost.json]

Default settings (MLP [64, 64], 64 outputs, Adam, drift and experts on), 10 features, 4
classes, batches of 32. One engine learns with every check on ("guard": the StepGuard and
the engine's finite checks) and off ("plain": the bare optimizer step, no finite checks)
on alternate steps, so both modes see the same machine load and the same model; CPU time
per step, medians and 10%-trimmed means. Alternating step by step in one process is what
makes a few percent visible on a busy machine, where separate runs differ by more.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import streamlearn.core.admission as admission
import streamlearn.core.engine as engine_module
import streamlearn.core.experts.pool as pool_module
from streamlearn.core.engine import Engine
from streamlearn.core.experts import guard
from streamlearn.core.types import Sample
from streamlearn.settings import (
    AdaptSettings,
    DriftSettings,
    EngineSettings,
    ExpertsSettings,
    ModelSettings,
)

RESULTS = Path(__file__).resolve().parent / "results"


def _plain_step(self: guard.StepGuard, loss: torch.Tensor) -> None:
    self.optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    self.optimizer.step()


# What each mode swaps in, by (owner, name): admission, engine and pool import the checks
# by name from guard, so each importer's own name is replaced (getattr/setattr: those
# imported names are not re-exported, so mypy does not know them as module attributes).
TARGETS: tuple[tuple[object, str], ...] = (
    (guard.StepGuard, "step"),
    (admission, "bad_rows"),
    (engine_module, "bad_rows"),
    (pool_module, "finite_or"),
)
GUARDED: tuple[Callable[..., Any], ...] = tuple(getattr(owner, name) for owner, name in TARGETS)
PLAIN: tuple[Callable[..., Any], ...] = (
    _plain_step,
    lambda *t: [],
    lambda *t: [],
    lambda values, fallback: values,
)


def _use(fns: tuple[Callable[..., Any], ...]) -> None:
    for (owner, name), fn in zip(TARGETS, fns, strict=True):
        setattr(owner, name, fn)


def _batches(n: int, seed: int = 0) -> list[list[Sample]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        labels = [rng.randrange(4) for _ in range(32)]
        out.append([Sample([rng.gauss(y * 0.5, 1.0) for _ in range(10)], y) for y in labels])
    return out


def _trimmed_mean(values: list[float], cut: float = 0.1) -> float:
    ordered = sorted(values)
    k = int(len(ordered) * cut)
    return statistics.fmean(ordered[k : len(ordered) - k])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8_000)
    parser.add_argument("--out", type=Path, default=RESULTS / "guard_cost.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    batches = _batches(args.steps + 200)
    engine = Engine(
        ModelSettings(), EngineSettings(), DriftSettings(), ExpertsSettings(), AdaptSettings()
    )
    for batch in batches[:200]:  # warm up
        engine.process(batch)
    times: dict[str, list[float]] = {"guard": [], "plain": []}
    for k, batch in enumerate(batches[200:]):
        mode = "guard" if (k + k // 2) % 2 == 0 else "plain"  # ABBA: no order favours one
        _use(GUARDED if mode == "guard" else PLAIN)
        began = time.process_time()
        engine.process(batch)
        times[mode].append((time.process_time() - began) * 1e6)
    _use(GUARDED)
    for mode, values in times.items():
        print(
            f"{mode}: us/step median {statistics.median(values):.0f}, trimmed mean "
            f"{_trimmed_mean(values):.0f} ({len(values)} steps)"
        )
    extra = _trimmed_mean(times["guard"]) - _trimmed_mean(times["plain"])
    share = extra / _trimmed_mean(times["plain"]) * 100
    print(f"guard - plain: {extra:.0f} us/step ({share:.1f}% of a plain step)")
    result = {
        "steps": args.steps,
        "settings": "defaults: MLP [64, 64], Adam, drift and experts on; 10 features, batch 32",
        **{
            mode: {"median_us": statistics.median(v), "trimmed_mean_us": _trimmed_mean(v)}
            for mode, v in times.items()
        },
        "extra_us_per_step": extra,
        "extra_percent": share,
        "torch": torch.__version__,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
