"""The queries the deployment files hold: what the deploy and observability tests read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).parents[2] / "deploy"


def dashboard() -> dict[str, Any]:
    board: dict[str, Any] = json.loads((DEPLOY / "grafana/dashboards/streamlearn.json").read_text())
    return board


def dashboard_exprs() -> list[str]:
    """Every PromQL expression of the dashboard: panel targets, then annotations."""
    board = dashboard()
    panels = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    return panels + [a["expr"] for a in board["annotations"]["list"]]


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((DEPLOY / "prometheus/rules.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]
