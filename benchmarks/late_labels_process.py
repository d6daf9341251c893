"""Late labels as a user gets them: ``streamlearn run`` as its own process tree on the
embedded broker, a producer and an HTTP client each in a process of their own.

    python benchmarks/late_labels_process.py [--samples 10000] [--rate 100] [--seeds 7 8 9]
        [--parts delay poison/guard poison/no_guard] [--keep]
        [--out benchmarks/results/late_labels_process.json]

The streams, the label schedule and the scoring are :mod:`late_labels`' (the in-process
driver's): the same samples, the same delays and never-labeled 5%, the same flipped range.
What differs is the clock and the path. Nothing is compressed: the producer sends each
sample and each label at its wall-clock time (``--rate`` samples per second, so "60 s late"
is 60 s late), records carry the broker's own timestamps, and the daemon reads both topics
as it would in production. The daemon runs at the shipped defaults (``config/default.yaml``)
with ``labels.enabled`` (and ``labels.guard.enabled`` for the poisoned phase) and, as the
serving benchmark, ports, a checkpoint directory and short group timeouts.

What is read is what a user sees: the served-join counters and ``streamlearn_rollbacks`` on
the metrics endpoint (polled every 0.1 s), the answers on the predictions topic, the
rollback events on the events topic, and the answers of real HTTP calls to the serving port.

Sample 0 and its label go first, before the clock starts, in every run alike: the first
learning step builds the model (7 s in a profile here: Adam's first construction imports
torch._dynamo), once per process, and would otherwise delay the start of every run.

1. **Delay** (Agrawal 0, labels immediate vs 1-60 s late, a run per ``--seeds`` seed of
   the stream; the label schedule's seed stays the in-process driver's): accuracy of what
   was served, at the join over all joins (the daemon's counters) and against the true
   labels over the second half (the predictions topic).
2. **Poisoned phase** (Agrawal 0, 12,000 samples, labels 1-10 s late, samples 6,000-7,999
   flipped; guard on, and off for contrast): joins from the first flipped label to the
   rollback (bracketed by two metric polls; approximate to within the daemon's lag: the
   first flipped label is placed by the order labels were sent, the join counter counts in
   the order they joined, and a label that came before its sample joins later),
   the true accuracy of the answers on the predictions topic by range, and a client that
   asks the serving port for 500 held-out samples every half second: the accuracy of the
   model it was served, by the same ranges (a probe at time t sees the model of sample
   ``t x rate``).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition
from prometheus_client.parser import text_string_to_metric_families

from streamlearn.app.embedded import EmbeddedBroker
from streamlearn.app.producer import connect
from streamlearn.streams.synthetic import take

sys.path.insert(0, str(Path(__file__).parent))
if TYPE_CHECKING:  # mypy knows the folder as a package; the script imports the siblings
    from benchmarks.late_labels import LABELS, _true_accuracy, events
    from benchmarks.serving import Service, _topic
else:
    from late_labels import LABELS, _true_accuracy, events
    from serving import Service, _topic

RESULTS = Path(__file__).resolve().parent / "results" / "late_labels_process.json"
PROBE_ROWS, PROBE_EVERY_S, POLL_EVERY_S = 500, 0.5, 0.1
WARM_UP = "0"  # the id of the sample that builds the model before the clock starts
RANGES = ((4000, 6000), (6000, 8000), (8000, 10000), (10000, 12000))


@dataclass(frozen=True)
class Plan:
    """One run: how many samples of which seed, how late their labels, which flipped, and
    whether the guard is on."""

    samples: int
    seed: int
    delay: tuple[float, float]
    flip: range
    guard: bool

    def stream(self) -> list[dict[str, Any]]:
        """The samples sent, then PROBE_ROWS more of the same concept that never are."""
        return take("agrawal", self.samples + PROBE_ROWS, seed=self.seed, segment=10**9)

    def schedule(self, rate: float) -> list[tuple[float, Any, dict[str, Any]]]:
        """The in-process driver's schedule, less sample 0 and its label (the warm-up's)."""
        every = events(self.stream()[: self.samples], rate, self.delay, 0.05, self.flip, seed=1)
        return [event for event in every if event[2]["id"] != WARM_UP]


class StartSignal:
    """One clock for the children and this process: each child gets ready (imports, its
    stream: half a minute under this machine's load), then all start at the same ``t0``."""

    def __init__(self, context: Any, children: int) -> None:
        self._ready = context.Barrier(children + 1)
        self._go = context.Event()
        self._t0 = context.Value("d", 0.0)

    def wait(self) -> float:
        """In a child: ready; the wall-clock time the run starts."""
        self._ready.wait()
        self._go.wait()
        return float(self._t0.value)

    def start(self) -> float:
        """Here: once every child is ready, start them."""
        self._ready.wait()
        self._t0.value = time.time() + 0.5
        self._go.set()
        return float(self._t0.value)


def send_on_time(
    bootstrap: str, topics: dict[str, str], plan: Plan, rate: float, signal: StartSignal
) -> None:
    """The producer process: each record of the schedule at its wall-clock time ``t0 + at``."""
    producer = connect(bootstrap)
    schedule = plan.schedule(rate)
    t0 = signal.wait()
    for at, tp, value in schedule:
        if (ahead := t0 + at - time.time()) > 0:
            producer.flush()
            time.sleep(ahead)
        producer.send(topics[tp.topic], value=json.dumps(value).encode())
    producer.flush()
    producer.close()


def warm_up(bootstrap: str, topics: dict[str, str], first: dict[str, Any]) -> None:
    """Sample 0 and its label at once, before the clock starts (in every run alike)."""
    producer = connect(bootstrap)
    producer.send(topics["in"], value=json.dumps({"x": first["x"], "id": WARM_UP}).encode())
    producer.flush()
    producer.send(topics["labels"], value=json.dumps({"id": WARM_UP, "y": first["y"]}).encode())
    producer.close()


def probe_serving(port: int, plan: Plan, signal: StartSignal, until_s: float, out: Path) -> None:
    """The client process: held-out samples asked of the serving port, no id (so not kept
    for a label), every PROBE_EVERY_S; the served version and accuracy of each answer."""
    rows = plan.stream()[plan.samples :]
    body = {
        "inputs": [
            {
                "name": "input",
                "shape": [len(rows), len(rows[0]["x"])],
                "datatype": "FP32",
                "data": [r["x"] for r in rows],
            }
        ]
    }
    seen: list[dict[str, Any]] = []
    t0 = signal.wait()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        while (now := time.time() - t0) < until_s:
            try:
                response = client.post("/v2/models/streamlearn/infer", json=body)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                answer = response.json()
                [predicted] = [o for o in answer["outputs"] if o["name"] == "predictions"]
                right = sum(p == r["y"] for p, r in zip(predicted["data"], rows, strict=True))
                seen.append(
                    {
                        "t": round(now, 2),
                        "version": answer["model_version"],
                        "accuracy": right / len(rows),
                    }
                )
            time.sleep(PROBE_EVERY_S)
    out.write_text(json.dumps(seen))


def scrape(metrics_port: int) -> dict[str, float]:
    """The figures this benchmark reads off the daemon's metrics endpoint."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    out = {
        "joins": 0.0,
        "right": 0.0,
        "rollbacks": 0.0,
        "assigned": 0.0,
        "predicted": 0.0,
        "learned": 0.0,
    }
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "streamlearn_served_joins_total":
                out["joins"] += sample.value
                out["right"] += sample.value if sample.labels["result"] == "right" else 0.0
            elif sample.name == "streamlearn_rollbacks_total":
                out["rollbacks"] = sample.value
            elif sample.name == "streamlearn_rebalances_total":
                out["assigned"] += sample.value if sample.labels["kind"] == "assigned" else 0.0
            elif sample.name == "streamlearn_samples_learned_total":
                out["learned"] = sample.value
            elif sample.name == "streamlearn_predictions_total":
                out["predicted"] += sample.value if sample.labels["kind"] == "unlabeled" else 0.0
    return out


class Poller:
    """Polls the metrics endpoint in a thread: (wall-clock s since t0, figures)."""

    def __init__(self, metrics_port: int, t0: float) -> None:
        self.port, self.t0, self.seen = metrics_port, t0, list[tuple[float, dict[str, float]]]()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(POLL_EVERY_S):
            with contextlib.suppress(httpx.HTTPError):
                self.seen.append((time.time() - self.t0, scrape(self.port)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def rollback_bracket(self) -> tuple[float, float] | None:
        """Joins at the last poll before the first rollback and at the first poll after."""
        before = 0.0
        for _, figures in self.seen:
            if figures["rollbacks"] > 0:
                return before, figures["joins"]
            before = figures["joins"]
        return None


def read_all(bootstrap: str, topic: str, expected: int, idle_s: float = 5.0) -> list[Any]:
    """Every record of a one-partition topic: until ``expected`` came, or none for idle_s."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    consumer.assign([KafkaTopicPartition(topic, 0)])
    out: list[Any] = []
    last = time.monotonic()
    while len(out) < expected and time.monotonic() - last < idle_s:
        for records in consumer.poll(500).values():
            out.extend(json.loads(r.value) for r in records)
            last = time.monotonic()
    consumer.close()
    return out


def run(
    broker: EmbeddedBroker, workdir: Path, name: str, plan: Plan, rate: float
) -> dict[str, Any]:
    topics = {k: _topic(broker, f"{name}-{k}") for k in ("in", "labels", "predictions", "events")}
    settings: dict[str, dict[str, Any]] = {
        "kafka": {
            "labels_topic": topics["labels"],
            "predictions_topic": topics["predictions"],
            "events_topic": topics["events"],
        },
        "labels": {"enabled": True, "guard": {"enabled": plan.guard}},
    }
    service = Service(workdir / name, broker.bootstrap, topics["in"], settings)
    by_role = {"in": topics["in"], "labels": topics["labels"]}
    schedule = plan.schedule(rate)
    # The warm-up's label is joined first: the k-th label of the schedule is about join
    # k + 1 (send order; the join order differs by a few, within the daemon's lag).
    labels = [{"id": WARM_UP}] + [value for _, tp, value in schedule if tp == LABELS]
    flipped = {str(i) for i in plan.flip}
    first_flip = next((k for k, v in enumerate(labels) if v["id"] in flipped), None)
    spawn = multiprocessing.get_context("spawn")
    try:
        service.wait(lambda: scrape(service.metrics_port)["assigned"] > 0, 120, "the group")
        # The first sample builds the model, once per process: 7 s here (Adam's first
        # construction imports torch._dynamo). The clock starts once it is learned, not to
        # count that start in the delays.
        warm_up(broker.bootstrap, by_role, plan.stream()[0])
        service.wait(lambda: scrape(service.metrics_port)["learned"] > 0, 120, "a model")
        until_s = schedule[-1][0] + 5.0
        probe_out = workdir / f"{name}-probe.json"
        signal = StartSignal(spawn, 2)
        children = [
            spawn.Process(
                target=send_on_time,
                args=(broker.bootstrap, by_role, plan, rate, signal),
            ),
            spawn.Process(
                target=probe_serving, args=(service.http_port, plan, signal, until_s, probe_out)
            ),
        ]
        for child in children:
            child.start()
        t0 = signal.start()
        poller = Poller(service.metrics_port, t0)
        for child in children:
            child.join()
        service.wait(lambda: scrape(service.metrics_port)["joins"] >= len(labels), 300, "joins")
        time.sleep(3 * POLL_EVERY_S)  # the poller's own look at the last join
        caught_up_s = next(t for t, f in poller.seen if f["joins"] >= len(labels)) - schedule[-1][0]
        poller.stop()
        final = scrape(service.metrics_port)
        predictions = read_all(broker.bootstrap, topics["predictions"], plan.samples)
        published = read_all(broker.bootstrap, topics["events"], 10**6, idle_s=3.0)
    finally:
        service.stop()
    stream = plan.stream()
    answers = {p["id"]: p["prediction"] for p in predictions}
    probes = json.loads(probe_out.read_text())
    bracket = poller.rollback_bracket()
    return {
        "samples": plan.samples,
        "delay_s": plan.delay,
        "flipped": [plan.flip.start, plan.flip.stop] if plan.flip else None,
        "guard": plan.guard,
        "joins": final["joins"],
        "labels_sent": len(labels),
        "served_accuracy_all": round(final["right"] / final["joins"], 4),
        "second_half": _true_accuracy(stream, answers, range(plan.samples // 2, plan.samples)),
        "predictions_read": len(predictions),
        "true_served_accuracy": {
            f"{a}-{b - 1}": _true_accuracy(stream, answers, range(a, b))
            for a, b in RANGES
            if b <= plan.samples
        },
        "rollbacks": final["rollbacks"],
        "joins_at_first_flip": first_flip,
        "rollback_at_joins_between": bracket,
        "rollback_delay_joins_between": (
            [bracket[0] - first_flip, bracket[1] - first_flip]
            if bracket is not None and first_flip is not None
            else None
        ),
        "events": [e for e in published if e.get("kind") != "drift"],
        "probe_accuracy": _probe_by_range(probes, rate, plan.samples),
        "probes": len(probes),
        "behind": _behind(poller.seen, schedule),
        "caught_up_s_after_last_record": round(caught_up_s, 1),
    }


def _probe_by_range(probes: list[dict[str, Any]], rate: float, samples: int) -> dict[str, Any]:
    """The held-out accuracy of the model served while samples a..b were sent: mean, min."""
    out: dict[str, Any] = {}
    for a, b in RANGES:
        if b > samples:
            continue
        scores = [p["accuracy"] for p in probes if a <= p["t"] * rate < b]
        out[f"{a}-{b - 1}"] = (
            {"mean": round(sum(scores) / len(scores), 4), "min": min(scores), "n": len(scores)}
            if scores
            else None
        )
    return out


def _behind(
    seen: list[tuple[float, dict[str, float]]], schedule: list[tuple[float, Any, dict[str, Any]]]
) -> dict[str, float]:
    """How far the daemon was behind the producer, at each poll: samples sent but not yet
    answered, labels sent but not yet joined (median and max over the polls)."""
    sent_at = sorted(at for at, tp, _ in schedule if tp != LABELS)
    labeled_at = sorted(at for at, tp, _ in schedule if tp == LABELS)
    # Both counters include the warm-up's sample and join.
    samples = sorted(bisect.bisect(sent_at, t) - (f["predicted"] - 1) for t, f in seen)
    labels = sorted(bisect.bisect(labeled_at, t) - (f["joins"] - 1) for t, f in seen)
    if not samples:
        return {}
    return {
        "samples_median": samples[len(samples) // 2],
        "samples_max": samples[-1],
        "labels_median": labels[len(labels) // 2],
        "labels_max": labels[-1],
    }


def plans(samples: int, seeds: list[int]) -> dict[str, Plan]:
    delays = {"immediate": (0.0, 0.0), "late_1_60s": (1.0, 60.0)}
    return {
        **{
            f"delay/{name}/seed{seed}": Plan(samples, seed, delay, range(0), guard=False)
            for seed in seeds
            for name, delay in delays.items()
        },
        "poison/guard": Plan(12_000, 11, (1.0, 10.0), range(6000, 8000), guard=True),
        "poison/no_guard": Plan(12_000, 11, (1.0, 10.0), range(6000, 8000), guard=False),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000, help="of the delay runs")
    parser.add_argument("--rate", type=float, default=100.0, help="samples sent per second")
    parser.add_argument(
        "--parts", nargs="+", default=["delay", "poison/guard"], help="run names or prefixes"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[7], help="of the delay runs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep --out's other runs")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "rate_samples_per_s": args.rate,
        "settings": "shipped defaults with labels.enabled (labels.guard.enabled in "
        "poison/guard), ports, a checkpoint dir, short group timeouts",
        "runs": json.loads(args.out.read_text())["runs"] if args.keep else {},
    }
    chosen = {
        name: plan
        for name, plan in plans(args.samples, args.seeds).items()
        if any(name == part or name.startswith(part + "/") for part in args.parts)
    }
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        for name, plan in chosen.items():
            began = time.monotonic()
            row = run(broker, Path(tmp), name.replace("/", "-"), plan, args.rate)
            row["seconds"] = round(time.monotonic() - began, 1)
            row["load_average_after"] = os.getloadavg()
            results["runs"][name] = row
            print(name, json.dumps({k: v for k, v in row.items() if k != "events"}), flush=True)
            args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
