"""The ``engine`` settings section: micro-batching and the limits on what a record may carry."""

from __future__ import annotations

from pydantic import Field

from streamlearn.core.section import Section


class EngineSettings(Section):
    """Micro-batching and the limits on what a record may carry."""

    # 8 learns fastest per sample on every stream of the experts benchmark (32 ended 2-20
    # points lower at any learning rate, docs/benchmarks.md "Defaults"); a backlog grows it.
    max_batch: int = Field(8, ge=1)
    # Under a backlog the learning step's batch doubles, up to max_adaptive_batch, while the
    # backlog (consumer lag plus buffered samples) would take longer than lag_budget_s to
    # clear at the measured rate, and halves back once it clears within a quarter of that
    # (daemon/batching.py; step size by the square-root rule). A learner that keeps up
    # learns exactly at max_batch. 0 s, or a ceiling at max_batch, turns it off.
    lag_budget_s: float = Field(10.0, ge=0)
    max_adaptive_batch: int = Field(256, ge=1)
    max_wait_ms: int = Field(50, ge=0)
    rolling_window: int = Field(1_000, ge=1)
    max_record_bytes: int = Field(1_048_576, ge=16)
    max_samples_per_record: int = Field(10_000, ge=1)
    # Sample ids travel on every prediction (its Kafka key too): longer ones are refused.
    max_id_chars: int = Field(256, ge=1)
    # torch's intra-op threads in the learner process (0: torch's default, one per core).
    # Measured with the default MLP on 2 cores: 2 threads learn no faster than 1 and take
    # 40% more CPU from the serving processes beside it. Raise it for large networks.
    torch_threads: int = Field(1, ge=0)
    # Niceness of the learner process. Above 0, serving gets a contended core first. Measured
    # on 2 cores (docs/benchmarks.md): 10 bought serving nothing measurable, so 0.
    nice: int = Field(0, ge=0, le=19)
