"""Scale-out: 1 vs N replicas learning one model with periodic averaging (docs/scaling.md).

    python benchmarks/scaleout.py [--samples 12000] [--replicas 1 2 3] [--seeds 0 1 2]
        [--every-steps 10] [--segment 2000] [--lr-per-replica] [--self-sync]
        [--momentum 0.0] [--batch 32] [--whole-batch] [--no-pool] [--no-scale-lr]
        [--out benchmarks/results/scaleout.json]

One drifting agrawal stream (a concept change every ``--segment`` samples) is split
round-robin over the replicas, as a consumer group splits partitions. Each replica is its
own process with an ``Engine`` (default settings) and the daemon's ``Replica``, joined on
loopback gloo. After each learning step a replica does what the daemon's loop does
(``Replica.maybe_sync``): it asks for a round through the c10d store once ``--every-steps``
steps are due (or its share of a decision window is held, or its own losses alarmed), and
takes every round any replica asked for (broadcast, all-reduce, load, the group's
decisions). No broker, no serving, no checkpoints: this measures learning and syncing only.
1 replica is the plain engine, no sync.

Each replica learns in steps of ``--batch`` / N samples, as the daemon does with
``sync.split_batch`` (the default); ``--whole-batch`` gives each replica the whole
``--batch`` (N replicas then take 1/N of one learner's steps). Diagnosis switches:
``--batch`` (1 replica at 64 takes the optimizer steps 2 whole-batch replicas at 32 take),
``--no-pool`` (one expert, no drift-driven pool decisions: what the decision lineage costs),
``--momentum`` (FedAvgM's server momentum).

Reported, medians over seeds: prequential accuracy over the whole stream (every replica's
test-then-train answers), throughput (samples of all replicas / the slowest replica's wall
time), sync seconds per learning step and per round, bytes per round, and the load average:
the machine is shared, so throughput figures from a loaded machine are a floor, not a fact.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.multiprocessing.spawn import ProcessRaisedException, spawn

from streamlearn.app.embedded import free_port
from streamlearn.core.engine import Engine, StepResult
from streamlearn.core.logging import configure_logging
from streamlearn.core.types import Sample
from streamlearn.daemon.buffer import InputBuffer
from streamlearn.daemon.checkpointer import Checkpointer
from streamlearn.daemon.endpoints import Endpoints
from streamlearn.metrics import Metrics
from streamlearn.settings import Settings, load_settings
from streamlearn.streams.synthetic import take
from streamlearn.sync.lockstep import finish, keep_pace, take_round
from streamlearn.sync.replica import Replica, replica_settings

RESULTS = Path(__file__).resolve().parent / "results"


def _settings(rank: int, world: int, port: int, args: dict[str, Any], synced: bool) -> Settings:
    return load_settings(
        None,
        model={"seed": args["seed"]},
        checkpoint={"enabled": False},
        experts={"enabled": not args["no_pool"]},
        sync={
            "enabled": synced,
            "every_steps": args["every_steps"],
            "split_batch": not args["whole_batch"],
            "scale_learning_rate": not args["no_scale_lr"],
            "server_lr": float(world) if args["lr_per_replica"] else 1.0,
            "momentum": args["momentum"],
            "follow_decisions": args["follow_decisions"],
            "decisions": args["decisions"],
            "checkpoint_every_rounds": 10**6,
            "master_addr": "127.0.0.1",
            "master_port": port,
            "rank": rank,
            "world_size": world,
        },
    )


def _replica(rank: int, world: int, port: int, args: dict[str, Any], out: str) -> None:
    torch.set_num_threads(1)  # 2 cores shared: one thread per replica, all runs alike
    configure_logging("warning")
    synced = world > 1 or args["self_sync"]
    # As the daemon's: with Adam, sqrt(N) times the learning rate (sync.scale_learning_rate).
    settings = replica_settings(_settings(rank, world, port, args, synced))
    # sync.split_batch, as the daemon does: each replica learns in steps of batch / N.
    batch = args["batch"] if args["whole_batch"] else max(1, args["batch"] // world)
    engine = Engine(
        settings.model, settings.engine, settings.drift, settings.experts, settings.adapt
    )
    stream = take("agrawal", args["samples"], seed=args["seed"], segment=args["segment"])
    stream = stream[rank::world]
    batches = [
        [Sample(s["x"], s["y"]) for s in stream[i : i + batch]]
        for i in range(0, len(stream), batch)
    ]
    tally = {"correct": 0, "labeled": 0}

    def learn(chunk: list[Sample]) -> StepResult:
        result = engine.process(chunk)
        tally["correct"] += result.correct
        tally["labeled"] += result.labeled
        return result

    def learn_held(held: list[Sample], origins: list[Any]) -> None:
        learn(held)

    replica = None
    if synced:
        metrics = Metrics()
        checkpointer = Checkpointer(
            settings, metrics, engine, InputBuffer(batch, 0.0), Endpoints(), lambda: None
        )
        # A sample of a class without a slot waits for the round (sync/labels.py).
        replica = Replica(
            settings.sync, engine, checkpointer, metrics, lambda: None, learn=learn_held
        )
        replica.join()
        replica.restore(lambda state, path: None)  # no checkpoints: rank 0's start for all
    rounds = 0
    sync_s = 0.0
    began = time.perf_counter()
    for step, batch in enumerate(batches, 1):
        result = learn(batch)
        if replica is not None:
            replica.pending.hold(result.rejections, batch, [None] * len(batch))
            replica.stepped()
            t = time.perf_counter()
            if take_round(replica):
                sync_s += time.perf_counter() - t
                rounds += 1
            if not args["no_pace"]:
                rounds += keep_pace(replica, step)
    if replica is not None:
        rounds += finish(replica)
    wall = time.perf_counter() - began
    nbytes = (
        int(replica.metrics.registry.get_sample_value("streamlearn_sync_bytes") or 0)
        if replica
        else 0
    )
    if replica is not None:
        replica.close()
    Path(out, f"{rank}.json").write_text(
        json.dumps(
            {
                "correct": tally["correct"],
                "labeled": tally["labeled"],
                "wall_s": wall,
                "sync_s": sync_s,
                "rounds": rounds,
                "steps": len(batches),
                "bytes_per_round": nbytes,
            }
        )
    )


def run_once(
    world: int,
    seed: int,
    samples: int,
    every_steps: int,
    self_sync: bool = False,
    lr_per_replica: bool = False,
    segment: int = 2_000,
    momentum: float = 0.0,
    batch: int = 32,
    no_pool: bool = False,
    whole_batch: bool = False,
    follow_decisions: bool = False,
    decisions: str = "group",
    no_pace: bool = False,
    no_scale_lr: bool = False,
) -> dict[str, Any]:
    args = {
        "no_scale_lr": no_scale_lr,
        "no_pace": no_pace,
        "follow_decisions": follow_decisions,
        "decisions": decisions,
        "whole_batch": whole_batch,
        "momentum": momentum,
        "batch": batch,
        "no_pool": no_pool,
        "segment": segment,
        "seed": seed,
        "samples": samples,
        "every_steps": every_steps,
        "self_sync": self_sync,
        "lr_per_replica": lr_per_replica,
    }
    with tempfile.TemporaryDirectory() as out:
        for attempt in range(3):
            try:
                spawn(_replica, args=(world, free_port(), args, out), nprocs=world, join=True)  # type: ignore[no-untyped-call]
                break
            except ProcessRaisedException as exc:
                # The machine is shared: another process may take the free port first.
                if "EADDRINUSE" not in str(exc) or attempt == 2:
                    raise
        ranks = [json.loads(Path(out, f"{r}.json").read_text()) for r in range(world)]
    wall = max(r["wall_s"] for r in ranks)
    steps = sum(r["steps"] for r in ranks)
    return {
        "accuracy": sum(r["correct"] for r in ranks) / sum(r["labeled"] for r in ranks),
        "samples_per_s": samples / wall,
        "sync_s_per_step": sum(r["sync_s"] for r in ranks) / steps,
        "sync_s_per_round": (
            statistics.mean(r["sync_s"] / r["rounds"] for r in ranks) if ranks[0]["rounds"] else 0.0
        ),
        "rounds": ranks[0]["rounds"],
        "bytes_per_round": ranks[0]["bytes_per_round"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=12_000)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--every-steps", type=int, default=10)
    parser.add_argument("--segment", type=int, default=2_000, help="samples per concept")
    parser.add_argument(
        "--lr-per-replica",
        action="store_true",
        help="sync.server_lr = the replica count (add the replicas' updates), else 1 (mean)",
    )
    parser.add_argument(
        "--self-sync",
        action="store_true",
        help="1 replica takes sync rounds too (what a round's reload alone costs)",
    )
    parser.add_argument("--momentum", type=float, default=0.0, help="sync.momentum")
    parser.add_argument("--batch", type=int, default=32, help="samples per learning step")
    parser.add_argument(
        "--whole-batch",
        action="store_true",
        help="each replica learns in steps of --batch (sync.split_batch: false), else --batch / N",
    )
    parser.add_argument(
        "--follow-decisions", action="store_true", help="sync.follow_decisions: true"
    )
    parser.add_argument(
        "--decisions", choices=["group", "rank0"], default="group", help="sync.decisions"
    )
    parser.add_argument(
        "--no-pace",
        action="store_true",
        help="replicas run free between rounds, as on a backlog (the throughput row)",
    )
    parser.add_argument("--no-pool", action="store_true", help="experts.enabled: false")
    parser.add_argument(
        "--no-scale-lr",
        action="store_true",
        help="sync.scale_learning_rate: false (Adam at the configured rate on every replica)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "scaleout.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    for world in args.replicas:
        runs = [
            run_once(
                world,
                s,
                args.samples,
                args.every_steps,
                args.self_sync,
                args.lr_per_replica,
                args.segment,
                args.momentum,
                args.batch,
                args.no_pool,
                args.whole_batch,
                args.follow_decisions,
                args.decisions,
                args.no_pace,
                args.no_scale_lr,
            )
            for s in args.seeds
        ]
        results[str(world)] = {
            "runs": runs,
            **{
                f"median_{k}": statistics.median(r[k] for r in runs)
                for k in (
                    "accuracy",
                    "samples_per_s",
                    "sync_s_per_step",
                    "sync_s_per_round",
                    "bytes_per_round",
                )
            },
        }
        print(world, {k: round(v, 5) for k, v in results[str(world)].items() if k != "runs"})
    report = {
        "command": "python " + " ".join(sys.argv),
        "samples": args.samples,
        "every_steps": args.every_steps,
        "server_lr": "replica count" if args.lr_per_replica else 1.0,
        "momentum": args.momentum,
        "batch": args.batch,
        "pool": not args.no_pool,
        "follow_decisions": args.follow_decisions,
        "decisions": args.decisions,
        "paced": not args.no_pace,
        "batch_per_replica": "batch" if args.whole_batch else "batch / replicas",
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
