"""What a forming group restores, and from which replica (docs/scaling.md, "Coordinated
checkpoints").

Every replica gathers the checkpoint ids it holds, and where it holds none, when its newest
checkpoint of a single process was made; :func:`plan` turns what all gathered into one
decision, the same on every replica, since each computes it from the same gathered lists.

- **An id any replica holds.** One replica's file of an id is the group's whole state at
  that round: the model averaged after every member entered the round, and every
  partition's offset gathered from every member in it. A file its peers lack (one died
  while saving; a disk lost its last write; a replica scaled back in holds only old ids) is
  still a consistent cut, so the group loses the least by restoring the newest id anyone
  holds. The lowest rank holding it sends it.
- **No id anywhere, a single process's checkpoint somewhere** (sync was just turned on):
  the newest of those seeds the group.
- **Nothing**: rank 0's fresh state, so all start equal.

Rounds are then counted on from the newest id any replica holds, so an id is never given
to a second state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streamlearn.checkpoint.store import load_file
from streamlearn.core.errors import CheckpointError
from streamlearn.core.protocols import CheckpointStore
from streamlearn.core.types import LoadedCheckpoint


@dataclass(frozen=True, slots=True)
class RestorePlan:
    """``checkpoint_id``: the id restored (None: none). ``seeded``: a single process's
    checkpoint seeds the group instead. ``source``: the rank that sends the state.
    ``newest_id``: the newest id any replica holds, where the group's rounds count on from."""

    checkpoint_id: int | None
    seeded: bool
    source: int
    newest_id: int


def plan(
    ids_by_rank: list[list[int]], made_by_rank: list[float | None], decider: bool
) -> RestorePlan:
    """The group's restore, from each rank's checkpoint ids and (where no rank holds an id)
    when each rank's newest single-process checkpoint was made (None: it has none).
    ``decider`` (``sync.decisions: rank0``): rank 0's newest id where it holds one."""
    agreed = restore_point(ids_by_rank, decider)
    seeded = agreed is None and any(m is not None for m in made_by_rank)
    if agreed is not None:
        source = min(r for r, ids in enumerate(ids_by_rank) if agreed in ids)
    else:
        source = newest_seed(made_by_rank) if seeded else 0
    return RestorePlan(agreed, seeded, source, newest_id(ids_by_rank))


def restore_point(ids_by_rank: list[list[int]], decider: bool) -> int | None:
    """The id the group restores: the newest any replica holds (None: none). With
    ``decider`` (``sync.decisions: rank0``) rank 0's newest where it holds one: only its
    file holds the decision window it keeps open across rounds, with its held samples."""
    if decider and ids_by_rank[0]:
        return max(ids_by_rank[0])
    return newest_id(ids_by_rank) or None


def newest_id(ids_by_rank: list[list[int]]) -> int:
    """The newest checkpoint id any replica holds (0: none holds one)."""
    return max((i for ids in ids_by_rank for i in ids), default=0)


def newest_seed(made_by_rank: list[float | None]) -> int:
    """The rank whose single-process checkpoint is the newest (the lowest among equals)."""
    made = made_by_rank
    return max((r for r, m in enumerate(made) if m is not None), key=lambda r: (made[r] or 0.0, -r))


def made_at(single: LoadedCheckpoint | None) -> float | None:
    """When a single process's checkpoint was made (None: there is none)."""
    return None if single is None else float(single.state.get("created_at", 0.0))


def held_ids(store: CheckpointStore | None) -> dict[int, Path]:
    """The checkpoint ids a replica's store holds, each with its file (damaged files
    skipped)."""
    held: dict[int, Path] = {}
    for path in store.files() if store is not None else []:
        try:
            sync = load_file(path).get("sync")
        except CheckpointError:
            continue
        if sync is not None:
            held[int(sync["round"])] = path
    return held
