"""A readable summary of a checkpoint, for ``streamlearn checkpoint inspect``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import torch

from streamlearn.checkpoint.state import CheckpointState
from streamlearn.checkpoint.store import FileCheckpointStore, load_file
from streamlearn.errors import CheckpointError


def describe(path: Path) -> dict[str, Any]:
    if path.is_dir():
        loaded = FileCheckpointStore(path).load_latest()
        if loaded is None:
            raise CheckpointError(f"{path}: no valid checkpoint in this directory")
        path, raw = loaded.path, loaded.state
    else:
        raw = load_file(path)
    state = CheckpointState.from_dict(raw)
    engine = state.engine
    expert = engine.get("expert") or {}
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "created": dt.datetime.fromtimestamp(float(raw["created_at"]), dt.UTC).isoformat(),
        "offsets": {f"{tp.topic}/{tp.partition}": o for tp, o in sorted(state.offsets.items())},
        "samples_learned": engine["samples_learned"],
        "samples_predicted": engine["samples_predicted"],
        "model_version": engine["version"],
        "n_features": engine["n_features"],
        "labels": engine["labels"]["labels"],
        "prequential": _prequential(engine["stats"]),
        "parameters": _count_parameters(expert.get("module", {})),
        "model_settings": state.model_settings,
    }


def _prequential(stats: dict[str, Any]) -> dict[str, float]:
    count = stats["count"]
    if not count:
        return {}
    return {name: round(total / count, 6) for name, total in stats["sums"].items()}


def _count_parameters(module_state: dict[str, Any]) -> int:
    return sum(int(t.numel()) for t in module_state.values() if isinstance(t, torch.Tensor))
