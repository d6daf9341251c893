"""What one flag gather adds to a sync round: an all-gather of one int among N replicas.

    python benchmarks/sync_flag_cost.py [--replicas 2 3] [--calls 2000]
        [--out benchmarks/results/sync_flag_cost.json]

A checkpoint round gathers whether every replica's outputs landed before any replica writes
its file (docs/scaling.md, "Coordinated checkpoints"): one more ``Group.all_gather_ints`` of
one int than before. N processes join one group on loopback gloo, as replicas do
(``streamlearn.sync.group.Group``), warm up, then time that call back to back; wall-clock
per call on rank 0, median and 90th percentile. A whole round as ``streamlearn run`` takes
it is about 0.16 s (docs/benchmarks.md, scale-out): this is what the flag adds to it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch.multiprocessing.spawn import spawn

from streamlearn.app.embedded import free_port
from streamlearn.sync.group import Group
from streamlearn.sync.settings import SyncSettings

RESULTS = Path(__file__).resolve().parent / "results"
_WARM_UP = 200


def _replica(rank: int, world: int, port: int, calls: int, out: str) -> None:
    torch.set_num_threads(1)
    settings = SyncSettings(
        enabled=True,
        master_addr="127.0.0.1",
        master_port=port,
        rank=rank,
        world_size=world,
        timeout_s=60,
    )
    group = Group(settings, torch.device("cpu"))
    for _ in range(_WARM_UP):
        group.all_gather_ints([1])
    took = []
    for _ in range(calls):
        began = time.perf_counter()
        group.all_gather_ints([1])
        took.append((time.perf_counter() - began) * 1e6)
    group.close()
    if rank == 0:
        Path(out).write_text(json.dumps(took))


def _measure(world: int, calls: int) -> dict[str, float]:
    scratch = RESULTS / f".sync_flag_cost_{world}.json"
    spawn(_replica, args=(world, free_port(), calls, str(scratch)), nprocs=world, join=True)  # type: ignore[no-untyped-call]
    took = sorted(json.loads(scratch.read_text()))
    scratch.unlink()
    return {
        "median_us": statistics.median(took),
        "p90_us": took[int(len(took) * 0.9)],
        "mean_us": statistics.fmean(took),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--out", type=Path, default=RESULTS / "sync_flag_cost.json")
    args = parser.parse_args()
    rows = {}
    for world in args.replicas:
        rows[str(world)] = row = _measure(world, args.calls)
        print(
            f"{world} replicas: one flag gather {row['median_us']:.0f} us median, "
            f"{row['p90_us']:.0f} us p90"
        )
    result = {"calls": args.calls, "by_replicas": rows, "torch": torch.__version__}
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
