"""The heads benchmark's figures as markdown tables (for docs/benchmarks.md).

python benchmarks/heads/table.py [benchmarks/results/heads.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parents[1] / "results" / "heads.json"


def streams_table(report: dict[str, Any]) -> list[str]:
    rows = report["streams"]
    heads = list(next(iter(rows.values())))
    out = [
        "| stream | " + " | ".join(heads) + " |",
        "| --- |" + " --- |" * len(heads),
    ]
    for name, row in rows.items():
        cells = [
            f"{row[h]['accuracy']:.3f} / {row[h]['spawn_recovery']:.0f} / {row[h]['experts']:.0f}"
            for h in heads
        ]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def fewshot_table(report: dict[str, Any]) -> list[str]:
    out = ["| head | new class | classes before it | per seed (new) |", "| --- | --- | --- | --- |"]
    for head, row in report["fewshot"].items():
        seeds = ", ".join(f"{r['new_class']:.3f}" for r in row["runs"])
        out.append(f"| {head} | {row['new_class']:.3f} | {row['old_classes']:.3f} | {seeds} |")
    return out


def cost_table(report: dict[str, Any]) -> list[str]:
    out = ["| hidden | head | samples/s | x sgd |", "| --- | --- | --- | --- |"]
    for hidden, rates in report.get("cost", {}).items():
        for head, rate in rates.items():
            ratio = rate / rates["sgd"] if "sgd" in rates else float("nan")
            out.append(f"| {hidden} | {head} | {rate:.0f} | {ratio:.2f} |")
    return out


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS
    report = json.loads(path.read_text(encoding="utf-8"))
    for table in (streams_table(report), fewshot_table(report), cost_table(report)):
        print("\n".join(table), end="\n\n")


if __name__ == "__main__":
    main()
