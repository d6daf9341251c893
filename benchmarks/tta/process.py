"""Test-time adaptation as a user gets it: ``streamlearn run`` as its own process tree on
the embedded broker, taught on labeled clean digits, then fed unlabeled corrupted digits.

    python benchmarks/tta/process.py [--seeds 0 1 2] [--orders abrupt abrupt_mixed standard]
        [--rate 500] [--out benchmarks/results/tta_process.json]

The streams are :mod:`run`'s (the in-process driver's): the same split of scikit-learn's
digits, the same corrupted rows in the same order per seed. What differs is the path. Per
seed and order, one daemon runs at the shipped defaults (``config/default.yaml``: drift,
the expert pool, the input-shift detector and ``adapt.method: auto`` with its restart and
pull) on the digits network (:data:`run.DIGITS_MODEL`: batch norm, which is what ``auto``
adapts), with ports, a checkpoint directory and short group timeouts as in the serving
benchmark:

1. **teach**: the labeled clean training half, 8 shuffled passes, sent as a backlog; the
   benchmark waits until the learner has learned all of it and serving answers with it.
2. **none**: this process asks the serving port over HTTP (Open Inference Protocol v2) for
   every corrupted row of the order and for the clean test half: the taught model's answers
   without adaptation (``adapt.on_requests`` is off by default, so asking adapts nothing).
   The same model then adapts, so the two rows are paired.
3. **default**: a producer process sends the same rows unlabeled, each with an id, at
   ``--rate`` rows per second (0: all at once, a backlog); the answers the daemon publishes
   on the predictions topic (each answered before it is adapted on) are the default's.

Error per domain is counted against labels kept in this process. The input-shift alarms
come off the events topic, placed in the order's rows.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from streamlearn.app.embedded import EmbeddedBroker
from streamlearn.app.producer import connect

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
if TYPE_CHECKING:  # mypy knows the folders as packages; the script imports its neighbours
    from benchmarks.late_labels_process import read_all
    from benchmarks.serving import Service, _topic
    from benchmarks.tta import digits_c
    from benchmarks.tta import run as offline
else:
    import digits_c
    import run as offline  # the in-process driver: its streams, network and orders
    from late_labels_process import read_all
    from serving import Service, _topic

RESULTS = Path(__file__).resolve().parents[1] / "results" / "tta_process.json"
ASK_ROWS = 1000  # rows per HTTP request for the source model's answers


def stream(order: str, seed: int) -> dict[str, np.ndarray]:
    """The teaching rows and the order's unlabeled rows, as :func:`run.run_digits` has them."""
    x_train, y_train, x_test, y_test = digits_c.load_split(seed)
    x, y, names = offline.corrupted(order, x_test, y_test, seed)
    taught = np.concatenate(offline.pass_orders(len(y_train), offline.SOURCE_PASSES, seed))
    return {
        "teach_x": offline._flat(x_train)[taught],
        "teach_y": y_train[taught],
        "x": x,
        "y": y,
        "names": names,
        "clean_x": offline._flat(x_test),
        "clean_y": y_test,
    }


def send(bootstrap: str, topic: str, rows: list[list[float]], rate: float) -> None:
    """The producer process: each unlabeled row with its index as id, at ``rate`` rows/s."""
    producer = connect(bootstrap)
    t0 = time.monotonic()
    for i, row in enumerate(rows):
        if rate > 0 and (ahead := t0 + i / rate - time.monotonic()) > 0:
            producer.flush()
            time.sleep(ahead)
        producer.send(topic, value=json.dumps({"x": row, "id": str(i)}).encode())
    producer.flush()
    producer.close()


def teach(bootstrap: str, topic: str, x: np.ndarray, y: np.ndarray) -> None:
    producer = connect(bootstrap)
    for row, label in zip(x.tolist(), y.tolist(), strict=True):
        producer.send(topic, value=json.dumps({"x": row, "y": int(label)}).encode())
    producer.flush()
    producer.close()


def totals(metrics_port: int) -> dict[str, float]:
    """Each metric family's samples summed over their labels, by sample name."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name
            if "kind" in sample.labels:
                key += f"{{{sample.labels['kind']}}}"
            if "reason" in sample.labels:
                key += f"{{{sample.labels['reason']}}}"
            out[key] = out.get(key, 0.0) + sample.value
    return out


def ask(http: httpx.Client, x: np.ndarray) -> tuple[np.ndarray, set[str]]:
    """The served model's class for each row, and the model versions that answered."""
    out: list[int] = []
    versions: set[str] = set()
    for start in range(0, len(x), ASK_ROWS):
        part = x[start : start + ASK_ROWS]
        body = {
            "inputs": [
                {"name": "input", "shape": list(part.shape), "datatype": "FP32",
                 "data": part.tolist()}
            ]
        }  # fmt: skip
        answer = http.post("/v2/models/streamlearn/infer", json=body).raise_for_status().json()
        versions.add(str(answer["model_version"]))
        [predicted] = [o for o in answer["outputs"] if o["name"] == "predictions"]
        out += [int(p) for p in predicted["data"]]
    return np.array(out), versions


def wait_for_served(service: Service, at_least: int) -> str:
    """Once the learner has learned ``at_least`` samples: the version serving answers with.
    Serving takes a snapshot every ``serve.publish_interval_ms`` (500 ms by default): two
    looks a second apart that agree mean the snapshot holds everything learned."""
    service.wait(lambda: service.learned() >= at_least, 600, "the teaching rows to be learned")
    previous = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(1.0)
        version = str(service.status()["served_version"])
        if version == previous:
            return version
        previous = version
    raise RuntimeError("serving's version kept changing with nothing left to learn")


def answers_by_id(bootstrap: str, topic: str, rows: int) -> tuple[dict[str, Any], int]:
    """Each row's answer on the predictions topic by id, read until every id answered (or
    nothing came for a while), and how many answers repeated an id already seen."""
    found: dict[str, Any] = {}
    repeated = 0
    for record in read_all(bootstrap, topic, 10**9, idle_s=5.0):
        key = record.get("id")
        if key in found:
            repeated += 1
        elif key is not None:
            found[key] = record["prediction"]
        if len(found) == rows:
            break
    return found, repeated


def per_domain(wrong: np.ndarray, names: np.ndarray) -> dict[str, float]:
    return {str(n): float(wrong[names == n].mean()) for n in dict.fromkeys(names.tolist())}


def run(
    broker: EmbeddedBroker, workdir: Path, order: str, seed: int, rate: float
) -> dict[str, Any]:
    data = stream(order, seed)
    topics = {k: _topic(broker, f"tta-{order}-{seed}-{k}") for k in ("in", "predictions", "events")}
    settings: dict[str, dict[str, Any]] = {
        "kafka": {"predictions_topic": topics["predictions"], "events_topic": topics["events"]},
        "model": offline.DIGITS_MODEL | {"seed": seed},
    }
    service = Service(workdir / f"{order}-{seed}", broker.bootstrap, topics["in"], settings)
    rows = len(data["y"])
    try:
        service.wait(lambda: totals(service.metrics_port).get(
            "streamlearn_rebalances_total{assigned}", 0) > 0, 120, "the group")  # fmt: skip
        began = time.monotonic()
        teach(broker.bootstrap, topics["in"], data["teach_x"], data["teach_y"])
        version = wait_for_served(service, len(data["teach_y"]))
        taught_s = time.monotonic() - began
        source, versions = ask(service.http, data["x"])
        clean, _ = ask(service.http, data["clean_x"])
        before = totals(service.metrics_port)
        sender = multiprocessing.get_context("spawn").Process(
            target=send, args=(broker.bootstrap, topics["in"], data["x"].tolist(), rate)
        )
        began = time.monotonic()
        sender.start()
        sender.join()
        sent_s = time.monotonic() - began
        service.wait(
            lambda: (
                totals(service.metrics_port).get("streamlearn_predictions_total{unlabeled}", 0)
                >= rows
            ),
            600,
            "every row answered",
        )
        answered_s = time.monotonic() - began
        after = totals(service.metrics_port)
        answers, repeated = answers_by_id(broker.bootstrap, topics["predictions"], rows)
        published = read_all(broker.bootstrap, topics["events"], 10**6, idle_s=3.0)
    finally:
        service.stop()
    if len(answers) != rows or versions != {version}:
        raise RuntimeError(f"{rows - len(answers)} rows unanswered; served {versions}")
    adapted = np.array([int(answers[str(i)]) for i in range(rows)])
    # The detector counts every row it watched, the labeled ones too: with no redelivery
    # (one consumer, no rebalance) exactly the teaching rows came before the first.
    first_row = len(data["teach_y"])
    return {
        "order": order,
        "seed": seed,
        "rows": rows,
        "answered": len(answers),
        "answers_repeated": repeated,
        "taught_version": version,
        "source_versions": sorted(versions),
        "clean_error_before": float((clean != data["clean_y"]).mean()),
        "none": per_domain(source != data["y"], data["names"]),
        "default": per_domain(adapted != data["y"], data["names"]),
        "switches": offline._switches(data["names"]),
        "shifts_detected": [
            int(e["sample"]) - first_row for e in published if e.get("kind") == "input_shift"
        ],
        "counts": {
            key: after.get(key, 0.0) - before.get(key, 0.0)
            for key in sorted(after)
            if "_total" in key  # counters (not gauges): what the run added
            and key.startswith(("streamlearn_tta_", "streamlearn_input_shift_events"))
        },
        "experts": after.get("streamlearn_experts_alive"),
        "teach_s": round(taught_s, 1),
        "send_s": round(sent_s, 1),
        "answered_s": round(answered_s, 1),
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per order: each domain's error, mean of seeds, for none and the default; the default's
    worst domain against none, in points."""
    out: dict[str, Any] = {}
    for order in dict.fromkeys(r["order"] for r in runs):
        mine = [r for r in runs if r["order"] == order]
        table = {
            method: {d: float(np.mean([r[method][d] for r in mine])) for d in mine[0][method]}
            for method in ("none", "default")
        }
        gaps = {d: 100 * (table["default"][d] - table["none"][d]) for d in table["none"]}
        worst = max(gaps, key=lambda d: gaps[d])
        out[order] = {
            "seeds": [r["seed"] for r in mine],
            "per_domain": table,
            "mean_error": {m: float(np.mean(list(t.values()))) for m, t in table.items()},
            "per_seed": {
                m: [round(float(np.mean(list(r[m].values()))), 4) for r in mine]
                for m in ("none", "default")
            },
            "worst_domain": worst,
            "worst_points": round(gaps[worst], 2),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--orders", nargs="+", default=list(offline.ABRUPT), choices=offline.ORDERS)
    parser.add_argument(
        "--rate", type=float, default=500.0, help="unlabeled rows sent per second (0: a backlog)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "rate_rows_per_s": args.rate,
        "settings": "shipped defaults; model: benchmarks/tta/run.py's DIGITS_MODEL and the seed; "
        "ports, a checkpoint dir, short group timeouts",
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        for order in args.orders:
            for seed in args.seeds:
                row = run(broker, Path(tmp), order, seed, args.rate)
                row["load_average_after"] = os.getloadavg()
                results["runs"].append(row)
                results["summary"] = summarize(results["runs"])
                print(order, seed, json.dumps(results["summary"][order]), flush=True)
                args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
