"""Scale-out as a user runs it: N replicas of ``streamlearn run``, each its own process
tree, in one consumer group on the embedded broker, against one ``streamlearn run``.

    python benchmarks/scaleout_process.py [--samples 12000] [--replicas 1 2 3]
        [--seeds 0 1 2] [--rate 1000] [--partitions 4] [--segment 2000]
        [--sync key=value ...] [--set section.key=value ...]
        [--out benchmarks/results/scaleout_process.json]

The stream is the in-process benchmark's (``benchmarks/scaleout.py``): Agrawal with a
concept change every ``--segment`` samples, seeded by ``--seeds``; record i goes to
partition ``i % --partitions``. Every daemon runs at the shipped defaults
(``config/default.yaml``) apart from ports, a checkpoint directory and the group's short
timeouts (as the serving benchmark's); replicas add ``sync.enabled`` (and ``--sync``'s
settings, a second row's; ``--set`` sets any section's field on every daemon) and torchrun's
variables (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT``), as the StatefulSet and Compose files set them. One
replica is a plain ``streamlearn run``.

A producer in a process of its own sends one record per partition first and waits until the
group learned them (the first step builds the model: seconds, once per process), then the
rest at ``--rate`` records per second by the wall clock (a live stream), or all at once
with ``--rate 0`` (a backlog). What is read is what a user reads off each replica's metrics
endpoint: accuracy = the summed ``streamlearn_prequential_correct_total`` over the summed
prequential predictions, every record counted once over the group; samples/s from the
group's first learned sample after the warm-up to its last (a backlog's throughput; a live
stream's is its rate while the group keeps up), how far behind the group ended (from the
producer's last send to the last sample learned), the rounds' time
(``streamlearn_sync_duration_seconds``: per round, and as a share of each replica's time),
each replica's own share of the stream and accuracy, and the group's accuracy per eighth of
a concept (read every 0.5 s while the stream is sent; the mean by place in a concept shows
whether replicas lose to one learner just after a change or all along).
Figures are medians over seeds; results go to benchmarks/results/scaleout_process.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from streamlearn.app.embedded import EmbeddedBroker, create_topics, free_port
from streamlearn.app.producer import connect
from streamlearn.streams.synthetic import take

sys.path.insert(0, str(Path(__file__).parent))
if TYPE_CHECKING:  # mypy knows the folder as a package; the script imports the siblings
    from benchmarks.serving import Service
else:
    from serving import Service

RESULTS = Path(__file__).resolve().parent / "results" / "scaleout_process.json"
POLL_S = 0.1
# Bounds against a hang, not targets: a group forms in seconds, and 12,000 samples take
# under a minute on 2 cores.
FORM_S, LEARN_S = 240.0, 900.0
# While the stream is sent the counters are read this often: every 0.1 s the scrapes took
# a noticeable share of 2 cores from the replicas they measure.
TRACE_S = 0.5
# Accuracy is also reported per eighth of a concept (250 samples at the shipped segment).
STRETCHES_PER_SEGMENT = 8


def scrape(metrics_port: int) -> dict[str, float]:
    """One replica's counters."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    out = {"learned": 0.0, "scored": 0.0, "correct": 0.0, "rounds": 0.0, "steps": 0.0}
    out["sync_s"] = 0.0
    names = {
        "streamlearn_samples_learned_total": "learned",
        "streamlearn_prequential_correct_total": "correct",
        "streamlearn_sync_rounds_total": "rounds",
        "streamlearn_batch_samples_count": "steps",  # learning steps (micro-batches)
        "streamlearn_sync_duration_seconds_sum": "sync_s",  # rounds, waits for peers included
    }
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in names:
                out[names[sample.name]] += sample.value
            elif sample.name == "streamlearn_predictions_total":
                out["scored"] += sample.value if sample.labels["kind"] == "prequential" else 0.0
    return out


def group(services: list[Service]) -> dict[str, float]:
    """The counters summed over the replicas."""
    figures = [scrape(s.metrics_port) for s in services]
    return {k: sum(f[k] for f in figures) for k in figures[0]}


def produce(
    bootstrap: str, topic: str, samples: list[dict[str, Any]], spec: dict[str, Any]
) -> None:
    """Records from ``spec["first"]`` on, record i to partition i % partitions, paced."""
    producer = connect(bootstrap)
    began = time.monotonic()
    first, rate, partitions = spec["first"], spec["rate"], spec["partitions"]
    for i in range(first, len(samples)):
        if rate:
            delay = began + (i - first) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        value = json.dumps(samples[i]).encode()
        producer.send(topic, value=value, partition=i % partitions)
    producer.flush()
    producer.close()
    if "sent" in spec:
        spec["sent"].value = time.monotonic()  # one clock for every process on the host


def _wait(
    services: list[Service],
    done: Any,
    timeout: float,
    what: str,
    trace: list[tuple[float, float]] | None = None,
) -> dict[str, float]:
    """Poll the group's counters until ``done`` holds; ``trace`` collects (scored, correct)
    at each poll."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for service in services:
            if service.proc.poll() is not None:
                raise RuntimeError(f"a replica exited with {service.proc.returncode}: {what}")
        try:
            figures = group(services)
        except httpx.TransportError:
            figures = None
        if figures is not None and trace is not None:
            trace.append((figures["scored"], figures["correct"]))
        if figures is not None and done(figures):
            return figures
        time.sleep(POLL_S)
    raise RuntimeError(f"timed out waiting for {what}")


def _follow(services: list[Service], producer: Any) -> list[tuple[float, float]]:
    """The group's (scored, correct) every ``TRACE_S`` while the producer sends."""
    trace: list[tuple[float, float]] = []
    while producer.is_alive():
        try:
            figures = group(services)
            trace.append((figures["scored"], figures["correct"]))
        except httpx.TransportError:
            pass
        producer.join(TRACE_S)
    return trace


def _start(broker: EmbeddedBroker, workdir: Path, topic: str, n: int, args: Any) -> list[Service]:
    port = free_port()
    services = []
    for rank in range(n):
        replica = {"sync": {"enabled": True, **args.overrides}} if n > 1 else {}
        settings = _merged(replica, args.sections)
        env = {"RANK": str(rank), "WORLD_SIZE": str(n)} if n > 1 else {}
        env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)} if n > 1 else {}
        services.append(Service(workdir / f"replica{rank}", broker.bootstrap, topic, settings, env))
    return services


def _merged(base: dict[str, Any], sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out = {k: dict(v) for k, v in base.items()}
    for section, fields in sections.items():
        out.setdefault(section, {}).update(fields)
    return out


def run(broker: EmbeddedBroker, workdir: Path, n: int, seed: int, args: Any) -> dict[str, Any]:
    samples = take("agrawal", args.samples, seed=seed, segment=args.segment)
    topic = f"scale-{n}-{seed}-{time.monotonic_ns()}"
    create_topics(broker.bootstrap, {topic: args.partitions})
    services = _start(broker, workdir / topic, topic, n, args)
    spawn = multiprocessing.get_context("spawn")
    warm = {"first": 0, "rate": 0, "partitions": args.partitions}
    try:
        warm_up = samples[: args.partitions]
        producer = spawn.Process(target=produce, args=(broker.bootstrap, topic, warm_up, warm))
        producer.start()
        producer.join()
        _wait(services, lambda f: f["learned"] >= args.partitions, FORM_S, "the group")
        rest = {"first": args.partitions, "rate": args.rate, "partitions": args.partitions}
        rest["sent"] = spawn.Value("d", 0.0)  # when its last record was sent (monotonic)
        producer = spawn.Process(target=produce, args=(broker.bootstrap, topic, samples, rest))
        began = time.monotonic()
        producer.start()
        _wait(services, lambda f: f["learned"] > args.partitions, LEARN_S, "learning")
        first_learned = time.monotonic()
        trace = _follow(services, producer)
        sent = rest["sent"].value
        final = _wait(
            services, lambda f: f["learned"] >= len(samples), LEARN_S, "every sample", trace
        )
        done = time.monotonic()
        each = [scrape(s.metrics_port) for s in services]
    finally:
        for service in services:
            service.stop()
    return {
        "accuracy": final["correct"] / final["scored"],
        "learned": final["learned"],
        "scored": final["scored"],
        "samples_per_s": (len(samples) - args.partitions) / (done - first_learned),
        "behind_s_at_end": done - sent,
        "wall_s": done - began,
        "rounds_per_replica": final["rounds"] / n,
        "sync_s_per_round": final["sync_s"] / final["rounds"] if final["rounds"] else 0.0,
        # The share of a replica's time spent in rounds, out of learning.
        "sync_share": final["sync_s"] / n / (done - first_learned),
        # What a replica's step learned on average: the batches follow the clock live.
        "samples_per_step": final["learned"] / final["steps"] if final["steps"] else 0.0,
        # Each replica's own share and score, in rank order: a consumer group splits
        # partitions unevenly where the replicas do not divide them (4 over 3: 2, 1, 1).
        "replica_scored": [f["scored"] for f in each],
        "replica_accuracy": [f["correct"] / f["scored"] if f["scored"] else 0.0 for f in each],
        "accuracy_by_stretch": by_stretch(trace, args.segment // STRETCHES_PER_SEGMENT),
    }


def by_stretch(trace: list[tuple[float, float]], stretch: int) -> list[float]:
    """The group's accuracy on each ``stretch`` of the stream, in order, from the polled
    counters (a poll's predictions spread over the stretches they span). Whether replicas
    lose to one learner just after a concept change (adapting, deciding) or all along (the
    averaged model) shows here."""
    bins: dict[int, list[float]] = {}
    last_scored = last_correct = 0.0
    for scored, correct in trace:
        if scored > last_scored:
            _spread(bins, stretch, last_scored, scored, (correct - last_correct))
        last_scored, last_correct = scored, correct
    return [round(bins[k][1] / bins[k][0], 4) for k in sorted(bins)]


def by_place(stretches_by_run: list[list[float]]) -> list[float]:
    """The mean accuracy at each eighth of a concept, over runs and over every concept after
    the first (the first eighth after a change is where a learner adapts and its pool
    decides)."""
    places: list[list[float]] = [[] for _ in range(STRETCHES_PER_SEGMENT)]
    for stretches in stretches_by_run:
        for i, accuracy in enumerate(stretches[STRETCHES_PER_SEGMENT:]):
            places[i % STRETCHES_PER_SEGMENT].append(accuracy)
    return [round(statistics.fmean(p), 4) if p else 0.0 for p in places]


def _spread(
    bins: dict[int, list[float]], stretch: int, begin: float, end: float, correct: float
) -> None:
    """One poll's predictions (``begin`` to ``end`` of the stream, ``correct`` right) over
    the stretches they span, in proportion."""
    rate = correct / (end - begin)
    at = begin
    while at < end:
        index = int(at // stretch)
        upto = min(end, (index + 1) * stretch)
        b = bins.setdefault(index, [0.0, 0.0])
        b[0] += upto - at
        b[1] += (upto - at) * rate
        at = upto


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=12_000)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rate", type=float, default=1000.0, help="records/s; 0: a backlog")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--segment", type=int, default=2_000, help="samples per concept")
    parser.add_argument("--sync", nargs="*", default=[], help="key=value: sync settings")
    parser.add_argument("--set", nargs="*", default=[], help="section.key=value: every daemon")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    bad = [t for t in args.sync if "=" not in t] + [
        t for t in args.set if "=" not in t or "." not in t.partition("=")[0]
    ]
    if bad:
        parser.error(f"expected key=value (--sync) or section.key=value (--set), got {bad}")
    args.overrides = {k: yaml.safe_load(v) for k, _, v in (o.partition("=") for o in args.sync)}
    args.sections = {}
    for text in args.set:
        path, _, value = text.partition("=")
        section, _, key = path.partition(".")
        args.sections.setdefault(section, {})[key] = yaml.safe_load(value)
    report: dict[str, Any] = {"command": " ".join(sys.argv), "results": {}}
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        for n in args.replicas:
            runs = []
            for seed in args.seeds:
                runs.append(run(broker, Path(tmp), n, seed, args))
                print(f"replicas {n} seed {seed}: {json.dumps(runs[-1])}", flush=True)
            medians = {
                f"median_{k}": statistics.median(r[k] for r in runs)
                for k in (
                    "accuracy",
                    "samples_per_s",
                    "behind_s_at_end",
                    "rounds_per_replica",
                    "sync_s_per_round",
                    "sync_share",
                    "samples_per_step",
                )
            }
            medians["mean_accuracy_by_place_in_concept"] = by_place(
                [r["accuracy_by_stretch"] for r in runs]
            )
            report["results"][str(n)] = {"runs": runs, **medians}
            print(f"replicas {n}: {json.dumps(medians)}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
