"""Samples learned per second: learner-only and end to end from a real broker.

    python benchmarks/throughput.py [--samples N] [--repeats R]

- engine: Engine.process on decoded samples (the learning step alone);
- learner: the daemon loop on an in-memory source (decode + batch + learn + bookkeeping);
- end-to-end: records pre-produced to tansu, the daemon consumes and learns them; timed from
  the moment its partitions are assigned to the last sample learned, so consumer-group
  formation is not counted but every fetch and decode is.
Each figure is the median of --repeats runs; results go to benchmarks/results/throughput.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from streamlearn.app.embedded import EmbeddedBroker, create_topics
from streamlearn.app.producer import encode_samples, produce
from streamlearn.core.codecs import Codec
from streamlearn.core.engine import Engine
from streamlearn.core.logging import configure_logging
from streamlearn.core.types import Record, TopicPartition
from streamlearn.daemon import Daemon, kafka_daemon
from streamlearn.metrics import Metrics
from streamlearn.settings import Settings, load_settings
from streamlearn.sinks import MemorySink
from streamlearn.sources import MemorySource
from streamlearn.streams.synthetic import take

RESULTS = Path(__file__).parent / "results" / "throughput.json"
STREAM = "agrawal"


def settings(max_batch: int, **kafka: object) -> Settings:
    return load_settings(
        None,
        engine={"max_batch": max_batch, "max_wait_ms": 20},
        model={"hidden": [64, 64]},
        checkpoint={"enabled": False},
        kafka={"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, **kafka},
        log={"level": "error"},
    )


def bench_engine(records: list[bytes], max_batch: int) -> float:
    codec = Codec(n_features=9)
    samples = [s for i, v in enumerate(records) for s in codec.decode(Record("t", 0, i, v)).samples]
    engine = Engine(settings(max_batch).model)
    began = time.perf_counter()
    for start in range(0, len(samples), max_batch):
        engine.process(samples[start : start + max_batch])
    return len(samples) / (time.perf_counter() - began)


def bench_learner(records: list[bytes], max_batch: int) -> float:
    source = MemorySource("t", [records])
    daemon = Daemon(
        settings(max_batch),
        source_factory=lambda listener: source,
        sink_factory=lambda metrics: MemorySink(),
        metrics=Metrics(),
    )
    daemon.start()
    began = time.perf_counter()
    while not (source.exhausted() and len(daemon.buffer) == 0):
        daemon.step()
    return daemon.engine.samples_learned / (time.perf_counter() - began)


def bench_end_to_end(records: list[bytes], max_batch: int, n_samples: int) -> float:
    with EmbeddedBroker() as broker:
        create_topics(
            broker.bootstrap,
            {
                "bench.in": 2,
                "streamlearn.predictions": 1,
                "streamlearn.events": 1,
                "streamlearn.dlq": 1,
            },
        )
        produce(broker.bootstrap, "bench.in", records)
        daemon = kafka_daemon(
            settings(
                max_batch,
                bootstrap_servers=broker.bootstrap,
                input_topic="bench.in",
                max_poll_records=5000,
            )
        )
        assigned: list[float] = []
        on_assigned = daemon.on_assigned

        def timed(partitions: list[TopicPartition]) -> None:
            assigned.append(time.perf_counter())
            on_assigned(partitions)

        daemon.on_assigned = timed  # type: ignore[method-assign]
        thread = threading.Thread(target=daemon.run, daemon=True)
        thread.start()
        while daemon.engine.samples_learned < n_samples:
            time.sleep(0.002)
        end = time.perf_counter()
        daemon.request_stop()
        thread.join(timeout=15)
    return n_samples / (end - assigned[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    configure_logging("error")
    torch.set_num_threads(1)
    samples = take(STREAM, args.samples, segment=5_000)
    single = list(encode_samples(samples, 1))
    batched = list(encode_samples(samples, 100))
    cases: list[tuple[str, str, int, Callable[[], float]]] = [
        ("engine", "1 sample/record", 32, lambda: bench_engine(single, 32)),
        ("engine", "1 sample/record", 256, lambda: bench_engine(single, 256)),
        ("learner", "1 sample/record", 32, lambda: bench_learner(single, 32)),
        ("learner", "100 samples/record", 256, lambda: bench_learner(batched, 256)),
        ("end-to-end", "1 sample/record", 32, lambda: bench_end_to_end(single, 32, len(samples))),
        ("end-to-end", "1 sample/record", 256, lambda: bench_end_to_end(single, 256, len(samples))),
        (
            "end-to-end",
            "100 samples/record",
            256,
            lambda: bench_end_to_end(batched, 256, len(samples)),
        ),
    ]
    rows = []
    for path, records, max_batch, run in cases:
        runs = [run() for _ in range(args.repeats)]
        rows.append(
            {
                "path": path,
                "records": records,
                "max_batch": max_batch,
                "samples_per_s_median": round(statistics.median(runs)),
                "runs": [round(r) for r in runs],
            }
        )
        row = rows[-1]
        print(
            f"{path:<11} {records:<19} batch={max_batch:<4} "
            f"{row['samples_per_s_median']:>8,} samples/s  runs={row['runs']}",
            flush=True,
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "throughput",
                "stream": STREAM,
                "samples": args.samples,
                "model": "MLP 9-64-64-64 (max_classes outputs), Adam",
                "torch_threads": 1,
                "machine": {
                    "cpus": __import__("os").cpu_count(),
                    "python": platform.python_version(),
                    "torch": torch.__version__,
                    "platform": platform.platform(),
                },
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
