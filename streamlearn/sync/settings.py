"""The ``sync`` settings section: replicas that learn one model (docs/scaling.md).

Rendezvous follows torchrun's variables: a field left unset is read from ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``, so the same config runs under torchrun,
a Kubernetes StatefulSet (rank from the pod's ordinal) or Compose.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from streamlearn.core.section import Section


class SyncSettings(Section):
    """Periodic averaging of the replicas' experts, and coordinated checkpoints."""

    enabled: bool = False
    # A sync round starts when any replica has taken this many learning steps since the
    # last one, or this many seconds passed with something learned (whichever first).
    # Between rounds each replica predicts with its own model, which drifts from the
    # group's with every small, noisy step; with 3 replicas a round every 50 steps left the
    # group about a point below one learner at every place in a concept, every 25 steps
    # closed it, at a quarter of a replica's time in rounds (docs/benchmarks.md, "Where 3
    # replicas lose to one").
    every_steps: int = Field(25, ge=1)
    every_seconds: float = Field(5.0, gt=0)
    # Each of N replicas learns in steps of engine.max_batch / N samples, so the group takes
    # as many optimizer steps per sample as one learner would: at the same batch, N replicas
    # take 1/N of the steps, which on a drifting stream costs more accuracy than the
    # averaging itself (docs/benchmarks.md, scale-out). False: engine.max_batch as set.
    split_batch: bool = True
    # With split_batch and model.optimizer adam: each replica's learning rate times
    # sqrt(N). Adam divides a step by the root of its squared-gradient average, and a batch
    # N times smaller has N times the gradient's variance: where noise dominates, each
    # replica's steps are 1/sqrt(N) as long as one learner's, the averaged group learns a
    # new concept slower, and the pool's decisions part from one learner's (2 replicas: 6
    # points down on a drifting stream, docs/benchmarks.md). This is the square-root rule
    # the backlog's bigger batches follow too (the two compose: a replica's backlog factor
    # is on its own share of the batch). SGD's steps follow the mean gradient: no change.
    # False: model.learning_rate as set.
    scale_learning_rate: bool = True
    # Who makes the pool's decisions after a drift (keep, switch, spawn), one lineage of
    # them either way. group: a drift on any replica opens a decision window on every one;
    # each holds and scores its own samples, and at the first round where the group holds
    # experts.decision_window samples every replica makes the same choice from the summed
    # scores and learns its own held samples. rank0: rank 0 decides on its share of the
    # stream alone, and the others take its decisions at rounds.
    decisions: Literal["group", "rank0"] = "group"
    # With decisions: rank0. While rank 0 holds a decision open, the others hold their
    # samples too and score them, instead of teaching the active expert a concept the pool
    # may give to another; each closes its window at the next round at the latest (nothing
    # stays held across a round, so checkpoints hold every update). False: they learn on.
    follow_decisions: bool = False
    # FedAvg server momentum on expert weights: 0 is plain averaging.
    momentum: float = Field(0.0, ge=0, lt=1)
    # FedAvg's server learning rate on the averaged update of expert weights: 1 is the mean;
    # the replica count adds the replicas' updates (each took 1/N of the stream's steps).
    server_lr: float = Field(1.0, gt=0)
    # Checkpoints are taken at a sync round (a barrier): every this many rounds, or sooner
    # when a replica's checkpoint.every_samples / every_seconds fell due. 40 rounds of 25
    # steps: a checkpoint every 1,000 steps, as 20 rounds of 50 took before.
    checkpoint_every_rounds: int = Field(40, ge=1)
    # Rendezvous; None: from the environment torchrun sets.
    master_addr: str | None = None
    master_port: int | None = Field(None, ge=1, le=65535)
    rank: int | None = Field(None, ge=0)
    world_size: int | None = Field(None, ge=1)
    # A new generation of the group (at the start, and after a replica died or joined)
    # waits this long for all world_size replicas, then forms with those there if they are
    # at least min_replicas: a replica that does not come back costs this wait, not the
    # group's learning, and it joins again when it comes (docs/scaling.md, "Membership
    # changes"). Above a replica's usual restart (a learner's start: seconds; a pod's,
    # image pulled: tens of seconds), so a restart rejoins the group it left instead of
    # making it form twice. min_replicas = world_size: the group learns only when whole.
    min_replicas: int = Field(1, ge=1)
    form_wait_s: float = Field(60.0, ge=1)
    # How long a collective (and the rendezvous) waits for a peer before the replica exits,
    # so that the group re-forms from its newest checkpoint.
    timeout_s: float = Field(120.0, gt=0)
    # A replica whose heartbeat (counted by its learner loop, through the store) stood
    # still this long is lost: the others leave the group and form it again. Above the
    # longest learning step or checkpoint write.
    peer_timeout_s: float = Field(30.0, gt=0)
    # gloo on CPU, nccl on CUDA; auto picks by the engine's device.
    backend: str = Field("auto", pattern="^(auto|gloo|nccl)$")
