"""Samples learned per second: learner-only and end to end from a real broker; records read
per second by each Kafka source alone.

    python benchmarks/throughput.py [--samples N] [--source-records N] [--repeats R]
                                    [--clients kafka-python,confluent]

- decode: the codec alone on in-memory records, as the daemon calls it (its msgspec fast
  path first) and its careful path alone ("decode careful", what every record took before);
- engine: Engine.process on decoded samples (the learning step alone; batch 8 is the
  shipped ``engine.max_batch``);
- learner: the daemon loop on an in-memory source (decode + batch + learn + bookkeeping);
- end-to-end: records pre-produced to tansu, the daemon (in this process, on a thread)
  consumes and learns them, once per ``kafka.client``; timed from the moment its partitions
  are assigned to the last sample learned, so consumer-group formation is not counted but
  every fetch and decode is;
- source: the same kind of records read by the source alone (``open_source``, no learning),
  with and without decoding them, in the steady state (from the first records polled).
Each figure is the median of --repeats runs; results go to benchmarks/results/throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from importlib.util import find_spec
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
from streamlearn.settings import KafkaSettings, Settings, load_settings
from streamlearn.sinks import MemorySink
from streamlearn.sources import MemorySource, open_source
from streamlearn.streams.synthetic import take

RESULTS = Path(__file__).parent / "results" / "throughput.json"
STREAM = "agrawal"
# The group forms in about one session timeout (not timed); the daemon's poll size.
FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}
POLL_RECORDS = 5000
PATHS = ("decode", "engine", "learner", "end-to-end", "source")


def settings(max_batch: int, **kafka: object) -> Settings:
    return load_settings(
        None,
        engine={"max_batch": max_batch, "max_wait_ms": 20},
        model={"hidden": [64, 64]},
        checkpoint={"enabled": False},
        kafka={**FAST_GROUP, **kafka},
        log={"level": "error"},
    )


def bench_decode(records: list[bytes], careful: bool) -> float:
    """Samples decoded per second: the codec as the daemon calls it (fast path first), or
    its careful path alone (every check in Python, what every record took before)."""
    codec = Codec(n_features=9)
    decode = codec.decode_careful if careful else codec.decode
    wrapped = [Record("t", 0, i, v) for i, v in enumerate(records)]
    began = time.perf_counter()
    decoded = sum(len(decode(record).samples) for record in wrapped)
    return decoded / (time.perf_counter() - began)


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


def bench_end_to_end(records: list[bytes], max_batch: int, n_samples: int, client: str) -> float:
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
                client=client,
                bootstrap_servers=broker.bootstrap,
                input_topic="bench.in",
                max_poll_records=POLL_RECORDS,
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


class NoListener:
    def on_assigned(self, partitions: list[TopicPartition]) -> None:
        pass

    def on_revoked(self, partitions: list[TopicPartition]) -> None:
        pass


def bench_source(bootstrap: str, topic: str, count: int, client: str, decode: bool) -> float:
    """Records per second read by the source alone (each decoded when ``decode``), in the
    steady state: from the first poll that returned records to the last record, the first
    poll's records not counted (the group's formation and the first fetch's start-up are
    left out; they are the same for every rate)."""
    settings = KafkaSettings.model_validate(
        {
            "client": client,
            "bootstrap_servers": bootstrap,
            "group_id": f"bench-{uuid.uuid4().hex[:8]}",
            "input_topic": topic,
            "max_poll_records": POLL_RECORDS,
            **FAST_GROUP,
        }
    )
    codec = Codec(n_features=9)
    source = open_source(settings, NoListener())
    try:
        got, first, began = 0, 0, 0.0
        deadline = time.monotonic() + 300
        while got < count and time.monotonic() < deadline:
            records = source.poll(POLL_RECORDS, 0.5)
            if decode:
                for record in records:
                    codec.decode(record)
            if records and not got:
                first, began = len(records), time.perf_counter()
            got += len(records)
        end = time.perf_counter()
    finally:
        source.close()
    assert got == count, f"read {got} of {count} records"
    return (count - first) / (end - began)


def rounds(runs: Sequence[Callable[[], float]], repeats: int) -> list[list[float]]:
    """Each run ``repeats`` times, round-robin: a load that comes and goes on the shared
    machine falls on every case alike instead of on whichever ran then."""
    out: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for figures, run in zip(out, runs, strict=True):
            figures.append(run())
    return out


def source_row(kind: str, client: str, decode: bool, runs: list[float]) -> dict[str, object]:
    row: dict[str, object] = {
        "path": "source + decode" if decode else "source",
        "client": client,
        "records": kind,
        "records_per_s_median": round(statistics.median(runs)),
        "runs": [round(r) for r in runs],
    }
    print(
        f"{row['path']:<15} {client:<12} {kind:<19} "
        f"{row['records_per_s_median']:>9,} records/s  runs={row['runs']}",
        flush=True,
    )
    return row


def source_cases(
    records: dict[str, list[bytes]], clients: list[str], repeats: int
) -> list[dict[str, object]]:
    """Each kind of record produced once to one broker, then read by every client."""
    rows: list[dict[str, object]] = []
    variants = [(client, decode) for client in clients for decode in (False, True)]
    with EmbeddedBroker() as broker:
        for kind, values in records.items():
            topic = f"source.{uuid.uuid4().hex[:8]}"
            create_topics(broker.bootstrap, {topic: 2})
            produce(broker.bootstrap, topic, values)
            runs = [
                partial(bench_source, broker.bootstrap, topic, len(values), client, decode)
                for client, decode in variants
            ]
            figures = rounds(runs, repeats)
            rows += [source_row(kind, c, d, f) for (c, d), f in zip(variants, figures, strict=True)]
    return rows


def learning_cases(
    samples: int, clients: list[str], paths: set[str]
) -> list[tuple[str, str, str, int, Callable[[], float]]]:
    """(path, client, records, max_batch, run) of the paths that learn."""
    drawn = take(STREAM, samples, segment=5_000)
    single = list(encode_samples(drawn, 1))
    batched = list(encode_samples(drawn, 100))
    cases: list[tuple[str, str, str, int, Callable[[], float]]] = [
        (path, "-", kind, 0, partial(bench_decode, values, careful))
        for kind, values in (("1 sample/record", single), ("100 samples/record", batched))
        for path, careful in (("decode", False), ("decode careful", True))
    ]
    cases += [
        ("engine", "-", "1 sample/record", 8, lambda: bench_engine(single, 8)),
        ("engine", "-", "1 sample/record", 32, lambda: bench_engine(single, 32)),
        ("engine", "-", "1 sample/record", 256, lambda: bench_engine(single, 256)),
        ("learner", "-", "1 sample/record", 8, lambda: bench_learner(single, 8)),
        ("learner", "-", "1 sample/record", 32, lambda: bench_learner(single, 32)),
        ("learner", "-", "100 samples/record", 256, lambda: bench_learner(batched, 256)),
    ]
    for client in clients:
        for kind, values, max_batch in (
            ("1 sample/record", single, 8),
            ("1 sample/record", single, 32),
            ("1 sample/record", single, 256),
            ("100 samples/record", batched, 256),
        ):
            run = partial(bench_end_to_end, values, max_batch, samples, client)
            cases.append(("end-to-end", client, kind, max_batch, run))
    return [case for case in cases if case[0].split()[0] in paths]


def run_learning(
    cases: list[tuple[str, str, str, int, Callable[[], float]]], repeats: int
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    figures = rounds([case[4] for case in cases], repeats)
    for (path, client, records, max_batch, _), runs in zip(cases, figures, strict=True):
        rows.append(
            {
                "path": path,
                "client": client,
                "records": records,
                "max_batch": max_batch,
                "samples_per_s_median": round(statistics.median(runs)),
                "runs": [round(r) for r in runs],
            }
        )
        print(
            f"{path:<11} {client:<12} {records:<19} batch={max_batch:<4} "
            f"{rows[-1]['samples_per_s_median']:>8,} samples/s  runs={rows[-1]['runs']}",
            flush=True,
        )
    return rows


def merged(rows: list[dict[str, object]], paths: set[str]) -> list[dict[str, object]]:
    """The new rows, plus the previous file's rows of the paths not run this time."""
    if not RESULTS.exists():
        return rows
    old = json.loads(RESULTS.read_text())["results"]
    kept = [r for r in old if str(r["path"]).split()[0] not in paths]
    return kept + rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--source-records", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--clients",
        default="kafka-python,confluent" if find_spec("confluent_kafka") else "kafka-python",
        help="kafka.client values for the end-to-end and source paths",
    )
    parser.add_argument(
        "--paths",
        default=",".join(PATHS),
        help=f"which of {', '.join(PATHS)}; the file keeps the previous rows of the others",
    )
    args = parser.parse_args()
    clients, paths = args.clients.split(","), set(args.paths.split(","))
    configure_logging("error")
    torch.set_num_threads(1)
    load = os.getloadavg()
    # Rows of other paths may be kept from earlier runs: each says when it was measured and
    # how busy the (shared) machine was then.
    stamp = {
        "started_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ"),
        "load_average_at_start": round(load[0], 2),
    }
    rows = run_learning(learning_cases(args.samples, clients, paths), args.repeats)
    if "source" in paths:
        drawn = take(STREAM, args.samples, segment=5_000)
        # Batch records: a twentieth as many (10 KB each), enough for many polls of them.
        cycled = [drawn[i % len(drawn)] for i in range(args.source_records * 5)]
        records = {
            "1 sample/record": list(encode_samples(cycled[: args.source_records], 1)),
            "100 samples/record": list(encode_samples(cycled, 100)),
        }
        rows += source_cases(records, clients, args.repeats)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "throughput",
                "stream": STREAM,
                "samples": args.samples,
                "source_records": args.source_records,
                "model": "MLP 9-64-64-64 (max_classes outputs), Adam",
                "torch_threads": 1,
                "machine": {
                    "cpus": os.cpu_count(),
                    "load_average_at_start": [round(x, 2) for x in load],
                    "python": platform.python_version(),
                    "torch": torch.__version__,
                    "platform": platform.platform(),
                },
                "results": merged([{**row, **stamp} for row in rows], paths),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
