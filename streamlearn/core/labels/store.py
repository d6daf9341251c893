"""Unlabeled samples waiting for their label, and labels waiting for their sample.

A sample the daemon predicted (unlabeled, with an id) waits in ``pending`` with the answer
it was given; a label for an id waits in ``waiting`` when it came first (two topics replay
in any interleaving after a restart, so a label may well arrive before its sample). When
both halves meet they leave as one :class:`Join`: the answer to score, and the sample to
learn.

Time is event time, the Kafka records' timestamps, one clock per topic: a pending sample
expires once the *labels* topic has moved ``ttl_s`` past it (labels up to then were read and
none was its own), an early label once the *samples* topic has. So a backlog read after a
long stop expires nothing early, and a restart's downtime counts for nothing. Both areas
are bounded (``max_pending``, ``max_waiting``); past the bound the oldest leaves (evicted).

The whole store is plain state (lists, one float32 tensor) for checkpoints loaded with
``torch.load(weights_only=True)``: restored with the offsets of both topics, a join is made
once along the restored lineage, never lost nor made twice.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from streamlearn.core.types import Label

# Bytes an entry costs beside its features and id (dict slot, objects, floats): measured
# with tracemalloc: 637 bytes per entry of 9 features (benchmarks/late_labels.py).
_ENTRY_OVERHEAD_BYTES = 338
_FEATURE_BYTES = 32  # a Python float in a list: the object plus the pointer


@dataclass(slots=True)
class Pending:
    """An unlabeled sample as it was answered."""

    x: list[float]
    prediction: Label | None
    version: int
    expert: str
    ts: float
    task: str | None = None
    challenger: Label | None = None  # the challenger's answer then (labels.challenger)


@dataclass(slots=True)
class Waiting:
    """A label that came before its sample."""

    y: Label
    ts: float


@dataclass(frozen=True, slots=True)
class Join:
    """A label met its sample: what was answered then, and what to learn now."""

    id: str
    x: list[float]
    y: Label
    prediction: Label | None
    version: int
    expert: str
    delay_s: float  # label time - sample time (0 when the label came first)
    task: str | None = None
    challenger: Label | None = None


@dataclass(slots=True)
class Outcomes:
    """What left the store other than by a join, since the last :meth:`JoinStore.take_outcomes`."""

    expired: int = 0  # samples whose label did not come within ttl_s
    unknown: int = 0  # labels whose sample did not come within ttl_s
    evicted_pending: int = 0  # samples pushed out by max_pending
    evicted_waiting: int = 0  # labels pushed out by max_waiting
    replaced: int = 0  # a sample or label whose id came again (the newer one stays)

    def total(self) -> int:
        return (
            self.expired
            + self.unknown
            + self.evicted_pending
            + self.evicted_waiting
            + self.replaced
        )


@dataclass
class JoinStore:
    """Pending samples and waiting labels, by id, with event-time TTL and bounds."""

    ttl_s: float
    max_pending: int
    max_waiting: int
    pending: OrderedDict[str, Pending] = field(default_factory=OrderedDict)
    waiting: OrderedDict[str, Waiting] = field(default_factory=OrderedDict)
    sample_clock: float = float("-inf")  # newest sample time seen
    label_clock: float = float("-inf")  # newest label time seen
    outcomes: Outcomes = field(default_factory=Outcomes)

    def predicted(self, id_: str, entry: Pending) -> Join | None:
        """A sample was answered: join it to its early label, or keep it waiting."""
        self.sample_clock = max(self.sample_clock, entry.ts)
        label = self.waiting.pop(id_, None)
        if label is not None:
            self._expire()
            return _join(id_, entry, label.y, 0.0)
        if self.pending.pop(id_, None) is not None:
            self.outcomes.replaced += 1
        self.pending[id_] = entry
        while len(self.pending) > self.max_pending:
            self.pending.popitem(last=False)
            self.outcomes.evicted_pending += 1
        self._expire()
        return None

    def labeled(self, id_: str, y: Label, ts: float) -> Join | None:
        """A label came: join it to its sample, or keep it waiting for the sample."""
        self.label_clock = max(self.label_clock, ts)
        entry = self.pending.pop(id_, None)
        if entry is not None:
            self._expire()
            return _join(id_, entry, y, max(0.0, ts - entry.ts))
        if self.waiting.pop(id_, None) is not None:
            self.outcomes.replaced += 1
        self.waiting[id_] = Waiting(y, ts)
        while len(self.waiting) > self.max_waiting:
            self.waiting.popitem(last=False)
            self.outcomes.evicted_waiting += 1
        self._expire()
        return None

    def _expire(self) -> None:
        """Drop, oldest first, what the other topic's clock has left ``ttl_s`` behind.

        Entries are in arrival order, which is time order within a partition; across
        partitions an entry may outlive its TTL until those before it go."""
        while self.pending:
            first = next(iter(self.pending.values()))
            if first.ts + self.ttl_s >= self.label_clock:
                break
            self.pending.popitem(last=False)
            self.outcomes.expired += 1
        while self.waiting:
            label = next(iter(self.waiting.values()))
            if label.ts + self.ttl_s >= self.sample_clock:
                break
            self.waiting.popitem(last=False)
            self.outcomes.unknown += 1

    def take_outcomes(self) -> Outcomes:
        out, self.outcomes = self.outcomes, Outcomes()
        return out

    def nbytes(self) -> int:
        """An estimate of the memory both areas hold, in O(1): entries times the cost of
        one (its features, an id as long as the newest one, the per-entry overhead)."""
        total = 0
        if self.pending:
            id_, entry = next(reversed(self.pending.items()))
            per = _ENTRY_OVERHEAD_BYTES + len(id_) + _FEATURE_BYTES * len(entry.x)
            total += per * len(self.pending)
        if self.waiting:
            per = _ENTRY_OVERHEAD_BYTES + len(next(reversed(self.waiting)))
            total += per * len(self.waiting)
        return total

    # -- checkpoints -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        entries = list(self.pending.values())
        return {
            "pending": {
                "ids": list(self.pending),
                "x": torch.tensor([e.x for e in entries], dtype=torch.float64) if entries else None,
                "prediction": [e.prediction for e in entries],
                "version": [e.version for e in entries],
                "expert": [e.expert for e in entries],
                "ts": [e.ts for e in entries],
                "task": [e.task for e in entries],
                "challenger": [e.challenger for e in entries],
            },
            "waiting": {
                "ids": list(self.waiting),
                "y": [w.y for w in self.waiting.values()],
                "ts": [w.ts for w in self.waiting.values()],
            },
            "sample_clock": self.sample_clock,
            "label_clock": self.label_clock,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        p, w = state["pending"], state["waiting"]
        xs = p["x"].tolist() if p["x"] is not None else []
        self.pending = OrderedDict(
            (str(id_), Pending(list(x), pred, int(v), str(e), float(ts), task, rival))
            for id_, x, pred, v, e, ts, task, rival in zip(
                p["ids"],
                xs,
                p["prediction"],
                p["version"],
                p["expert"],
                p["ts"],
                p["task"],
                # Absent from checkpoints written before the challenger existed.
                p.get("challenger", [None] * len(p["ids"])),
                strict=True,
            )
        )
        self.waiting = OrderedDict(
            (str(id_), Waiting(y, float(ts)))
            for id_, y, ts in zip(w["ids"], w["y"], w["ts"], strict=True)
        )
        self.sample_clock = float(state["sample_clock"])
        self.label_clock = float(state["label_clock"])


def _join(id_: str, entry: Pending, y: Label, delay_s: float) -> Join:
    return Join(
        id_,
        entry.x,
        y,
        entry.prediction,
        entry.version,
        entry.expert,
        delay_s,
        entry.task,
        entry.challenger,
    )
