"""A readable summary of a checkpoint, for ``streamlearn checkpoint inspect``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import torch

from streamlearn.checkpoint.state import CheckpointState
from streamlearn.checkpoint.store import FileCheckpointStore, load_file
from streamlearn.core.errors import CheckpointError


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
    experts = _experts(engine)
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
        "prequential": _prequential(engine["stats"], state.model_settings.get("task")),
        "parameters": sum(e["parameters"] for e in experts.values()),
        "active_expert": (engine.get("pool") or {}).get("active", "0" if experts else None),
        "experts": experts,
        "adapt": _adaptation(engine.get("adapt")),
        "late_labels": _late_labels(state.labels),
        "model_settings": state.model_settings,
    }


def _adaptation(adapt: dict[str, Any] | None) -> dict[str, Any] | None:
    """Which method, and per expert whether it has an anchor and how many rows wait."""
    if adapt is None:
        return None
    return {
        "method": adapt["method"],
        "experts": {
            id_: {
                "anchored": e["anchor"] is not None,
                "rows_waiting": 0 if e["pending"] is None else int(e["pending"].shape[0]),
                "adapted_since_anchor": e["guard"]["adapted"],
            }
            for id_, e in adapt["experts"].items()
        },
    }


def _experts(engine: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each expert's size and record; a checkpoint from before the pool holds one, "0"."""
    pool = engine.get("pool")
    if pool is None:
        single = engine.get("expert")
        return {"0": {"parameters": _count_parameters(single.get("module", {}))}} if single else {}
    return {
        id_: {
            "parameters": _count_parameters(m["expert"].get("module", {})),
            "samples_learned": m["samples_learned"],
            "wins": m["wins"],
            "replay_samples": sum(
                r["x"].shape[0] for r in m["replay"]["reservoirs"].values() if r["x"] is not None
            ),
        }
        for id_, m in pool["members"].items()
    }


# What each running sum, divided by the samples scored, is: "correct" sums 1 per right
# answer, so its mean is the accuracy, not a count of correct answers.
_SCORES = {
    "classification": (("correct", "accuracy"), ("loss", "mean_loss")),
    "regression": (("abs_error", "mean_abs_error"), ("loss", "mean_loss")),
}


def _prequential(stats: dict[str, Any], task: str | None) -> dict[str, float | int]:
    """Test-then-train scores over every labeled sample learned; only the task's own (a
    classifier's absolute error is never summed, so it would read 0)."""
    count = stats["count"]
    if not count:
        return {}
    scores: dict[str, float | int] = {"samples": int(count)}
    for key, name in _SCORES.get(task or "classification", _SCORES["classification"]):
        scores[name] = round(stats["sums"][key] / count, 6)
    return scores


def _count_parameters(module_state: dict[str, Any]) -> int:
    return sum(int(t.numel()) for t in module_state.values() if isinstance(t, torch.Tensor))


def _late_labels(labels: dict[str, Any] | None) -> dict[str, Any] | None:
    """How many samples wait for their label, and labels for their sample; the guard's
    band and rollback target, the challenger's promotions (None: off)."""
    if labels is None:
        return None
    store = labels["store"]
    guard, challenger = labels.get("guard"), labels.get("challenger")
    return {
        "pending_samples": len(store["pending"]["ids"]),
        "waiting_labels": len(store["waiting"]["ids"]),
        "served_joins": int(labels["served"]["joins"]),
        "guard": None
        if guard is None
        else {
            "holding": bool(guard["guard"]["holding"]),
            "good_accuracy": guard["guard"]["good_level"],
            "good_version": None if guard["good"] is None else int(guard["good"]["version"]),
            "rollbacks": int(guard["rollbacks"]),
        },
        "challenger": None
        if challenger is None
        else {
            "version": int(challenger["engine"]["version"]),
            "promotions": int(challenger["promotions"]),
        },
    }
