"""The shipped settings: config/default.yaml through ``load_settings``, as the daemon reads
them, with labeled overrides by dotted key on top (``{"model.learning_rate": 0.003}``).

Environment variables STREAMLEARN_* apply as they do for the daemon: run benchmarks in a
clean environment. Imports nothing from the benchmarks, so every script can use it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

import streamlearn
from streamlearn.settings import Settings, load_settings

# SLBENCH_CONFIG: another YAML in its place (a frozen copy while the library is edited).
CONFIG = Path(
    os.environ.get("SLBENCH_CONFIG", Path(__file__).parents[2] / "config" / "default.yaml")
)
Overrides = dict[str, Any]  # dotted key -> value


def settings_for(overrides: Overrides | None = None, task: str = "classification") -> Settings:
    """config/default.yaml through load_settings, ``model.task`` and the dotted
    ``overrides`` on top."""
    data: dict[str, Any] = yaml.safe_load(CONFIG.read_text(encoding="utf-8")) or {}
    for key, value in {"model.task": task, **(overrides or {})}.items():
        *path, leaf = key.split(".")
        node = data
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value
    return load_settings(None, **data)


def parse_overrides(items: list[str]) -> Overrides:
    """``["model.learning_rate=0.003", "engine.max_batch=8"]`` -> dotted overrides (values
    read as YAML, so numbers, booleans and lists come out typed)."""
    out: Overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"expected key=value, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def effective(overrides: Overrides) -> Overrides:
    """``overrides`` less those that set a shipped value (so the shipped settings are
    "defaults" however they are spelled)."""
    shipped = settings_for().model_dump(mode="json")
    out: Overrides = {}
    for key, value in overrides.items():
        node: Any = shipped
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node != value:
            out[key] = value
    return out


def label(overrides: Overrides) -> str:
    """A short, stable name for a configuration: "defaults" or "key=value,..."."""
    if not overrides:
        return "defaults"
    return ",".join(
        f"{k.split('.')[-1] if k.count('.') == 1 else k}={v}" for k, v in sorted(overrides.items())
    )


def provenance() -> dict[str, str]:
    """Which library ran: git HEAD, and a hash of the imported package and the YAML (the
    tree may hold uncommitted edits)."""
    package = Path(streamlearn.__file__).parent
    digest = hashlib.sha256(CONFIG.read_bytes())
    for path in sorted(package.rglob("*.py")):
        digest.update(path.read_bytes())
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head = "unknown"
    return {"git_head": head, "library_sha256": digest.hexdigest()[:16], "package": str(package)}
