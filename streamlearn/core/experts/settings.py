"""The ``experts`` settings section: the pool, its selector and replay."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from streamlearn.core.section import Section


class SelectorSettings(Section):
    """The selector network that routes unlabeled samples and served requests."""

    # The selector routes unlabeled samples and served requests to an expert.
    hidden: list[int] = Field(default_factory=lambda: [64])
    # Twice Adam's usual 1e-3: the selector takes half the steps it used to (``batch``), and
    # at 1e-3 that left it unsure of a new regime for longer; at 2e-3 its routing accuracy is
    # as before, within a seed's spread (docs/benchmarks.md, "Pool overhead").
    learning_rate: float = Field(2e-3, gt=0)
    # (input, expert) pairs kept per expert by uniform reservoir sampling: the selector never
    # forgets a regime just because it has not been seen for a while.
    pairs_per_expert: int = Field(500, ge=1)
    # Pairs per selector training step, and its cadence: a step once this many new pairs came
    # in since the last (at most one per learning step; every one while an expert's pairs
    # are still filling). At engine.max_batch 32 that is every other learning step, which
    # with a cheaper step took a pool of 8 experts from 68% to 81-88% of the one-expert rate
    # (docs/benchmarks.md, "Pool overhead").
    batch: int = Field(64, ge=1)
    # Below this confidence the active expert answers: a shaky route is no better than the
    # expert that is learning right now.
    threshold: float = Field(0.7, ge=0, le=1)


class ReplaySettings(Section):
    """Replay of old samples into each learning step, per expert."""

    # Old samples mixed into each learning step, as a fraction of the batch (0 = off).
    ratio: float = Field(0.0, ge=0, le=4)
    capacity: int = Field(1_000, ge=1)  # samples kept per expert (reservoir sampling)
    # One reservoir per class with an equal share: rare classes are not crowded out.
    class_balanced: bool = False


class PrototypeSettings(Section):
    """Class means per expert on the inputs (``prototypes.py``): a routing signal without a
    network forward. Classification only; the defaults are measured (docs/benchmarks.md,
    "Prototype routing")."""

    # Where the selector's confidence is below its threshold, the expert with the nearest
    # class mean answers instead of the active one. Off: it lost accuracy on 5 of 6 streams.
    fallback: bool = False
    # A decision window runs only the active expert and this many others (those with the
    # lowest prototype loss on its first batch) through their networks; null: every expert.
    # At 2 the pool's accuracy and decisions were unchanged on the benchmark streams.
    shortlist: int | None = Field(2, ge=1)


class ExpertsSettings(Section):
    """The expert pool: its size and the reuse-or-spawn decision after a drift."""

    # On a drift, reuse an old expert whose loss is back inside its normal band, else spawn
    # a new one. Off: one expert learns everything and drifts are only reported.
    enabled: bool = True
    max_experts: int = Field(8, ge=1, le=256)
    # Labeled samples scored by every expert after a drift before the pool decides; they are
    # learned by the chosen expert afterwards, so none is lost.
    decision_window: int = Field(128, ge=8)
    # An expert is reused when its mean loss on the window is at most its normal mean plus
    # band_z standard errors plus band_tolerance standard deviations.
    band_z: float = Field(3.0, ge=0)
    band_tolerance: float = Field(0.25, ge=0)
    band_memory: int = Field(500, ge=10)  # about how many recent losses the band reflects
    # A spawned expert starts as a copy of the expert closest on the window (what it knows of
    # the inputs carries over: measured better or equal on 5 of 6 benchmark streams), or fresh.
    spawn: Literal["fresh", "warm_start"] = "warm_start"
    # A full pool drops its least useful expert ("prune"), or first hands that expert's
    # replay samples and selector pairs to its closest expert ("merge").
    when_full: Literal["prune", "merge"] = "prune"
    # Usefulness is wins (times chosen) halved for every this many samples since last active.
    idle_half_life: int = Field(50_000, ge=1)
    # Recent decisions kept for GET /v1/experts; all of them go to the events topic.
    history: int = Field(1_000, ge=1)
    selector: SelectorSettings = Field(default_factory=SelectorSettings)
    replay: ReplaySettings = Field(default_factory=ReplaySettings)
    prototypes: PrototypeSettings = Field(default_factory=PrototypeSettings)
