"""Late labels: accuracy of what was served with labels 1-60 s late vs immediate, the pending
store's memory, and the guard against a poisoned phase.

    python benchmarks/late_labels.py [--samples N] [--out benchmarks/results/late_labels.json]
                                     [--challenger-only]

The daemon runs in-process on an in-memory source of two topics (input and labels) whose
records carry event-time timestamps: a virtual clock of ``--rate`` samples per second, so
"60 s late" is 60 x rate samples later. Each tick appends the records whose time has come
and lets the daemon learn them, as a broker would hand them over. Shipped settings
otherwise (model, engine, drift, experts).

1. **Delay**: the same stationary stream (river Agrawal function 0, and SEA variant 0 with
   10% label noise), 5% of samples never labeled, labels either 0 s late (each label right
   after its sample is answered: test-then-train) or 1-60 s late (uniform). Accuracy is that
   of the answers served, scored at the join (``streamlearn_served_accuracy``), over every
   join and over the joins of the second half.
2. **Memory**: the pending store at its fullest during the delayed run (entries,
   ``streamlearn_pending_labels_bytes``), and tracemalloc's count for 10,000 entries.
3. **Poisoned phase**: Agrawal, labels 1-10 s late, the labels of samples 6,000-7,999
   flipped. With the guard on and off: joins from the first flipped label to the rollback,
   rollbacks before the poison (false alarms), and the true accuracy of the answers served
   to samples 6,000-9,999 (against the unflipped labels).
4. **Challenger**: Agrawal, labels 1-60 s late, a challenger with a ten times larger,
   a ten times smaller learning rate, or another seed: promotions (when, on which block's
   figures) and the served accuracy.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import tracemalloc
from pathlib import Path
from typing import Any

import torch

from streamlearn.core.labels import JoinStore, Pending
from streamlearn.core.types import Record, TopicPartition
from streamlearn.daemon import Daemon
from streamlearn.metrics import Metrics
from streamlearn.settings import load_settings
from streamlearn.sinks import MemorySink
from streamlearn.sources import MemorySource
from streamlearn.sources.base import AssignmentListener
from streamlearn.streams.synthetic import take

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLES, LABELS = TopicPartition("in", 0), TopicPartition("labels", 0)


class Source(MemorySource):
    def bind(self, listener: AssignmentListener) -> Source:
        self._listener = listener
        return self

    def put(self, tp: TopicPartition, value: dict[str, Any], at_s: float) -> None:
        log = self.logs[tp]
        log.append(
            Record(
                tp.topic, tp.partition, len(log), json.dumps(value).encode(), None, int(at_s * 1000)
            )
        )


def make_daemon(
    guard: bool, challenger: dict[str, Any] | None = None, model: dict[str, Any] | None = None
) -> tuple[Daemon, Source, MemorySink]:
    labels: dict[str, Any] = {"enabled": True, "ttl_s": 3600, "guard": {"enabled": guard}}
    if challenger is not None:
        labels["challenger"] = {"enabled": True, **challenger}
    settings = load_settings(
        None,
        kafka={"labels_topic": "labels"},
        engine={"max_wait_ms": 0},
        labels=labels,
        model=model or {},
        checkpoint={"enabled": False},
        log={"level": "warning"},
        serve={"publish_interval_ms": 600_000},
    )
    source = Source("in", [[]])
    source.add_topic("labels", [[]])
    sink = MemorySink()
    daemon = Daemon(
        settings, source_factory=source.bind, sink_factory=lambda m: sink, metrics=Metrics()
    )
    assert daemon.start()
    return daemon, source, sink


def events(
    stream: list[dict[str, Any]],
    rate: float,
    delay_s: tuple[float, float],
    never: float,
    flip: range,
    seed: int,
) -> list[tuple[float, TopicPartition, dict[str, Any]]]:
    rng = random.Random(seed)
    out: list[tuple[float, TopicPartition, dict[str, Any]]] = []
    for i, row in enumerate(stream):
        at = i / rate
        out.append((at, SAMPLES, {"x": row["x"], "id": row["id"]}))
        if rng.random() < never:
            continue
        y = 1 - row["y"] if i in flip else row["y"]
        # A zero delay still comes after the sample: (at, 1) sorts after (at, 0).
        out.append((at + rng.uniform(*delay_s) + 1e-9, LABELS, {"id": row["id"], "y": y}))
    return sorted(out, key=lambda e: e[0])


def run(
    stream: list[dict[str, Any]],
    delay_s: tuple[float, float],
    *,
    rate: float = 100.0,
    flip: range = range(0),
    guard: bool = False,
    challenger: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    tick_s: float = 0.5,
    seed: int = 1,
) -> dict[str, Any]:
    daemon, source, sink = make_daemon(guard, challenger, model)
    schedule = events(stream, rate, delay_s, 0.05, flip, seed)
    reg = daemon.metrics.registry
    peak_pending, peak_bytes = 0, 0.0
    joins_at_first_flip: float | None = None
    rollback_joins: list[float] = []
    promotion_joins: list[float] = []
    flipped_ids = {stream[i]["id"] for i in flip}
    began, now, k = time.perf_counter(), 0.0, 0
    while k < len(schedule):
        now += tick_s
        while k < len(schedule) and schedule[k][0] <= now:
            at, tp, value = schedule[k]
            source.put(tp, value, at)
            if tp == LABELS and joins_at_first_flip is None and value["id"] in flipped_ids:
                joins_at_first_flip = _joins(reg)
            k += 1
        before, promoted = daemon.guard.rollbacks, daemon.challenger.promotions
        while not (source.exhausted() and len(daemon.buffer) == 0):
            daemon.step()
        if daemon.guard.rollbacks > before:
            rollback_joins.append(_joins(reg))
        if daemon.challenger.promotions > promoted:
            promotion_joins.append(_joins(reg))
        peak_pending = max(peak_pending, len(daemon.late_labels.store.pending))
        peak_bytes = max(peak_bytes, daemon.late_labels.store.nbytes())
    answers = {p.id: p.prediction for p in sink.predicted}
    return {
        "seconds": round(time.perf_counter() - began, 1),
        "joins": _joins(reg),
        "served_accuracy_all": round(_joins(reg, "right") / _joins(reg), 4),
        "second_half": _true_accuracy(stream, answers, range(len(stream) // 2, len(stream))),
        "peak_pending": peak_pending,
        "peak_pending_bytes": peak_bytes,
        "rollbacks": daemon.guard.rollbacks,
        "joins_at_first_flip": joins_at_first_flip,
        "rollback_at_joins": rollback_joins,
        "promotions": daemon.challenger.promotions,
        "promotion_at_joins": promotion_joins,
        "promotion_blocks": [
            e for e in daemon.challenger.events if e["event"] == "challenger_promoted"
        ],
        "true_served_accuracy": {
            f"{a}-{b - 1}": _true_accuracy(stream, answers, range(a, b))
            for a, b in ((4000, 6000), (6000, 8000), (8000, 10000), (10000, len(stream)))
            if b <= len(stream)
        },
        "outcomes": {
            o: reg.get_sample_value("streamlearn_label_outcomes_total", {"outcome": o}) or 0
            for o in ("expired", "unknown", "held", "evicted_sample")
        },
    }


def _joins(reg: Any, result: str | None = None) -> float:
    """Joins counted so far (of one result: right, wrong), over every expert."""
    total = 0.0
    for metric in reg.collect():
        if metric.name != "streamlearn_served_joins":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_total") and result in (None, sample.labels["result"]):
                total += sample.value
    return total


def _true_accuracy(
    stream: list[dict[str, Any]], answers: dict[str | None, Any], rows: range
) -> float | None:
    """Answers served to these samples against their true labels."""
    scored = [
        answers[stream[i]["id"]] == stream[i]["y"] for i in rows if stream[i]["id"] in answers
    ]
    return round(sum(scored) / len(scored), 4) if scored else None


def pending_memory(entries: int = 10_000, width: int = 9) -> dict[str, float]:
    store = JoinStore(3600, entries, entries)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(entries):
        store.predicted(
            f"id-{i:08d}", Pending([float(i + j) for j in range(width)], 1, 10, "0", float(i))
        )
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return {
        "entries": entries,
        "features": width,
        "tracemalloc_bytes": used,
        "bytes_per_entry": round(used / entries),
        "estimate_bytes": store.nbytes(),
    }


# Champion and challenger: the shipped learning rate (3e-3) against a tenth of it, each
# way round (a better and a worse challenger), and against the same one with another seed
# (no real difference: a promotion there is a false one).
CHALLENGES = {
    "better (champion lr 3e-4, challenger 3e-3)": (
        {"learning_rate": 3e-4},
        {"learning_rate": 3e-3},
    ),
    "worse (champion lr 3e-3, challenger 3e-4)": ({}, {"learning_rate": 3e-4}),
    "equal (same lr, challenger seed 1)": ({}, {"seed": 1}),
}


def challenger_runs(samples: int) -> dict[str, Any]:
    """Promotions of a challenger on Agrawal 0 (labels 1-60 s late), the shipped settings
    of ``labels.challenger`` (blocks of 500 pairs, margin 0.01, confidence 0.95)."""
    out: dict[str, Any] = {}
    stream = take("agrawal", samples, seed=7, segment=10**9)
    for name, (champion, challenger) in CHALLENGES.items():
        row = run(stream, (1.0, 60.0), model=champion, challenger={"model": challenger})
        out[name] = {
            k: row[k]
            for k in (
                "seconds",
                "joins",
                "served_accuracy_all",
                "second_half",
                "promotions",
                "promotion_at_joins",
                "promotion_blocks",
            )
        }
        print(
            f"challenger {name}: promotions {row['promotions']} at joins "
            f"{row['promotion_at_joins']}; served acc {row['served_accuracy_all']:.4f}, "
            f"second half {row['second_half']} ({row['seconds']} s)"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=RESULTS / "late_labels.json")
    parser.add_argument(
        "--challenger-only",
        action="store_true",
        help="run part 4 alone, updating its figures in --out",
    )
    args = parser.parse_args()
    # One thread: on this shared 2-core machine torch's pool made each step 5x slower.
    torch.set_num_threads(1)
    if args.challenger_only:
        kept = json.loads(args.out.read_text())
        kept["challenger"] = challenger_runs(args.samples)
        args.out.write_text(json.dumps(kept, indent=2) + "\n")
        return
    results: dict[str, Any] = {"samples": args.samples, "delay": {}, "poison": {}}
    for name in ("agrawal", "sea"):
        stream = take(name, args.samples, seed=7, segment=10**9)
        for label, delay in (("immediate", (0.0, 0.0)), ("late_1_60s", (1.0, 60.0))):
            row = run(stream, delay)
            results["delay"][f"{name}/{label}"] = row
            print(
                f"{name:8} {label:11} served acc {row['served_accuracy_all']:.4f} "
                f"second half {row['second_half']} peak pending {row['peak_pending']} "
                f"({row['peak_pending_bytes'] / 1e6:.2f} MB) {row['seconds']} s"
            )
    results["memory"] = pending_memory()
    print("memory", results["memory"])
    stream = take("agrawal", 12_000, seed=11, segment=10**9)
    for guard in (False, True):
        row = run(stream, (1.0, 10.0), flip=range(6000, 8000), guard=guard)
        results["poison"]["guard" if guard else "no_guard"] = row
        first = row["joins_at_first_flip"]
        delays = [j - first for j in row["rollback_at_joins"] if first is not None and j >= first]
        row["rollback_delay_joins"] = delays[0] if delays else None
        print(
            f"guard={guard}: rollbacks {row['rollbacks']} at joins {row['rollback_at_joins']} "
            f"(first flipped label at {first}); true served accuracy {row['true_served_accuracy']}"
        )
    results["challenger"] = challenger_runs(args.samples)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
