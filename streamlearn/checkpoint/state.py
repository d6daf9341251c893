"""What one checkpoint holds, as plain data, and whether it fits the current settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamlearn.core.errors import CheckpointError
from streamlearn.core.models.settings import ModelSettings
from streamlearn.core.types import Offsets, TopicPartition

# Settings that change tensor shapes or meaning: a checkpoint made under other values
# cannot be loaded into the model these settings build.
_SHAPE_SETTINGS = (
    "task",
    "n_features",
    "features",
    "hidden",
    "activation",
    "optimizer",
    "max_classes",
    "standardize",
    "factory",
    "norm",
    "architecture",
    "image_shape",
)
# Shape settings that older checkpoints predate, with the value they were written under.
_ADDED_LATER = {"norm": "none", "architecture": "mlp", "image_shape": None}


@dataclass(frozen=True, slots=True)
class Barrier:
    """A coordinated checkpoint inside a sync round: the round is its id, ``offsets`` the
    group's (every replica's partitions), ``sync`` the momentum state (docs/scaling.md)."""

    round: int
    offsets: Offsets
    sync: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CheckpointState:
    """``offsets``: the next offset of every partition this lineage has read. ``lineage``:
    names the model's line of descent in the metadata of its Kafka commits, so that a
    partition's commit by another member can be told from this lineage's own (empty in
    checkpoints written before replicas)."""

    offsets: Offsets
    engine: dict[str, Any]
    model_settings: dict[str, Any]
    lineage: str = ""
    # Late labels: the join store and served scores (None when labels are off).
    labels: dict[str, Any] | None = None
    # Scale-out: the sync round (= the coordinated checkpoint id) and the momentum state
    # (None when sync is off; docs/scaling.md).
    sync: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "offsets": [
                [tp.topic, tp.partition, offset] for tp, offset in sorted(self.offsets.items())
            ],
            "lineage": self.lineage,
            "engine": self.engine,
            "model_settings": self.model_settings,
            "labels": self.labels,
            "sync": self.sync,
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> CheckpointState:
        try:
            offsets = {TopicPartition(str(t), int(p)): int(o) for t, p, o in state["offsets"]}
            return cls(
                offsets,
                dict(state["engine"]),
                dict(state["model_settings"]),
                str(state.get("lineage", "")),
                state.get("labels"),
                state.get("sync"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint is missing or mangles a section: {exc}") from None


def check_compatible(state: CheckpointState, model: ModelSettings, path: Path) -> None:
    current = model.model_dump(mode="json")
    written = {**_ADDED_LATER, **state.model_settings}
    changed = [
        f"model.{key}: checkpoint {written.get(key)!r}, settings {current[key]!r}"
        for key in _SHAPE_SETTINGS
        if written.get(key) != current[key]
    ]
    if changed:
        raise CheckpointError(
            f"{path} was written with other model settings, so its weights do not fit:\n  "
            + "\n  ".join(changed)
            + "\nRestore those settings, or move the checkpoint directory away to start fresh."
        )
