"""Markdown tables for FINDINGS.md from the stored results (runs nothing).

    python benchmarks/defaults/report.py [--experts benchmarks/results/experts.json]
        [--sensitivity benchmarks/results/drift_sensitivity.json] [--variant recommended]

Per stream of the experts benchmark (medians over the seeds stored): the pool at today's
defaults, at the recommended variant and the self-tuning variant, river's ARF, the single
expert and the oracle at both settings, and the oracle's gap to the recommended pool. Then
the drift sensitivity: recall on Agrawal 0-9 and false alarms, per online configuration.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parents[1] / "results"


def experts_table(report: dict[str, Any], variant: str, selftune: str) -> list[str]:
    table = report["table"]
    lines = [
        f"| stream | figure | pool today | pool {variant} | pool {selftune} | river ARF "
        f"| single today | single {variant} | oracle today | oracle {variant} "
        f"| oracle gap ({variant}) | ARF beaten (seeds) |",
        "|---" * 12 + "|",
    ]
    targets = report["targets"]
    for name, row in table.items():
        figure = "accuracy" if "accuracy" in row["pool"] else "mae"
        higher = figure == "accuracy"

        def cell(learner: str, row: dict[str, Any] = row, figure: str = figure) -> str:
            return f"{row[learner][figure]:.3f}" if learner in row else "-"

        rec = targets.get(variant, {}).get("streams", {}).get(name, {})
        gap = f"{rec['oracle_gap']:+.3f}" if "oracle_gap" in rec else "-"
        seeds = f"{rec['ge_arf_seeds']}/{rec['seeds']}" if "ge_arf_seeds" in rec else "-"
        cells = [
            cell(learner)
            for learner in (
                "pool",
                f"pool@{variant}",
                f"pool@{selftune}",
                "arf",
                "single",
                f"single@{variant}",
                "oracle",
                f"oracle@{variant}",
            )
        ]
        lines.append(
            f"| {name} | {'acc' if higher else 'MAE'} | "
            + " | ".join(cells)
            + f" | {gap} | {seeds} |"
        )
    return lines


def targets_summary(report: dict[str, Any]) -> list[str]:
    lines = []
    for label, target in report["targets"].items():
        below_arf = [n for n, r in target["streams"].items() if not r.get("ge_arf", True)]
        below_single = [n for n, r in target["streams"].items() if not r["ge_single"]]
        lines.append(
            f"- {label}: pool >= ARF on {len(target['streams']) - len(below_arf)}/"
            f"{len(target['streams'])} streams (below: {', '.join(below_arf) or 'none'}); "
            f">= single on {len(target['streams']) - len(below_single)}/"
            f"{len(target['streams'])} (below: {', '.join(below_single) or 'none'})"
        )
    return lines


def sensitivity_table(report: dict[str, Any]) -> list[str]:
    lines = [
        f"{report['changes']} changes ({report['changes_flip_ge_min']} flip >= "
        f"{report['min_flip']:.0%} of labels), seeds {report['seeds']}, visits of "
        f"{report['segment']:,} samples; found = an alarm within {report['horizon']:,} samples.",
        "",
        "| configuration | found | recall | recall (flip >= 10%) | median delay "
        "| false alarms /100k in recurring | false alarms /100k stable Agrawal |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in report["online"].items():
        lines.append(
            f"| online {name} | {r['found']}/{r['changes']} | {r['recall']:.2f} "
            f"| {r['recall_flip_ge_min']:.2f} | {r['median_delay']:.0f} "
            f"| {r['false_alarms_per_100k_in_recurring']:.2f} "
            f"| {r['stable_agrawal_per_100k']:.2f} |"
        )
    for name in ("shipped", "best"):
        r = report.get(name)
        if r:
            lines.append(
                f"| offline {name} {json.dumps(r['drift'])} | {r['found']}/{r['changes']} "
                f"| {r['recall']:.2f} | {r['recall_flip_ge_min']:.2f} | {r['median_delay']:.0f} "
                f"| {r['false_alarms_per_100k_in_recurring']:.2f} "
                f"| {r['stable_agrawal_per_100k']:.2f} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experts", type=Path, default=RESULTS / "experts.json")
    parser.add_argument("--sensitivity", type=Path, default=RESULTS / "drift_sensitivity.json")
    parser.add_argument("--variant", default="recommended")
    parser.add_argument("--selftune", default="selftune")
    args = parser.parse_args()
    experts = json.loads(args.experts.read_text())
    print(f"experts: seeds {experts['seeds']}, complete: {experts.get('complete', True)}\n")
    print("\n".join(experts_table(experts, args.variant, args.selftune)))
    print()
    print("\n".join(targets_summary(experts)))
    print()
    print("\n".join(sensitivity_table(json.loads(args.sensitivity.read_text()))))


if __name__ == "__main__":
    main()
