"""A daemon's place in a group of replicas: restore together, sync rounds, aligned checkpoints.

The learner loop calls :meth:`Replica.stepped` after each learning step and
:meth:`Replica.maybe_sync` once per loop; both run on the learner thread, the only one that
touches the engine. docs/scaling.md is the design; this module is its daemon side:

- **when**: a replica whose steps or seconds are due asks for round ``r + 1`` by moving the
  store key ``sync/requested`` from ``r`` with ``compare_set`` (two askers make one round);
  every replica enters the round when it sees the key, so all enter the collectives in order;
- **what**: the deciding replica's engine state is the template; the rest is averaged
  (``average.py``); every replica loads the result and publishes a snapshot; new classes
  get their slots there (``labels.py``: the learner hands its held samples to
  ``Replica.pending``, and they are learned at the round through ``learn``);
- **checkpoints**: at a round that is due, every replica saves with the round as its id and
  the group's offsets, and commits them to Kafka once every replica saved (``barrier.py``
  writes the order down); on start the group restores the newest id any member holds (one
  file is the whole group's state; none anywhere: a single process's newest seeds the
  group; ``restore.py``);
- **failures**: a lost member (a collective or the store fails, or the member joins again)
  ends this learner with :class:`GroupLostError`; the supervisor starts it again, and it rejoins
  and restores with the new generation of the group;
- **handoff** (``handoff.py``): a partition revoked from one replica and assigned to another
  goes on from where the first stopped, not from the checkpoint (the first's updates are in
  the group's model at the next round): each revoke leaves its next offsets in the store,
  and a replica assigned a partition that another still held at the last round waits for
  them.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamlearn.checkpoint.state import CheckpointState
from streamlearn.checkpoint.store import load_file
from streamlearn.core.engine import Engine, StepResult
from streamlearn.core.logging import get_logger
from streamlearn.core.types import Label, Sample
from streamlearn.metrics import Metrics
from streamlearn.settings import Settings
from streamlearn.sync.average import Averager
from streamlearn.sync.barrier import save_round
from streamlearn.sync.decisions import GroupDecisions, Shared
from streamlearn.sync.group import Group, GroupLostError, rendezvous
from streamlearn.sync.handoff import Handoffs
from streamlearn.sync.labels import PendingLabels, agree
from streamlearn.sync.restore import held_ids, made_at, plan
from streamlearn.sync.settings import SyncSettings

if TYPE_CHECKING:  # the daemon's package imports this module: no cycle at run time
    from streamlearn.daemon.checkpointer import Checkpointer

log = get_logger(__name__)

_REQUESTED = "sync/requested"
# Reading the store costs a loopback round trip: between polls, at most this often.
_CHECK_EVERY_S = 0.02

Apply = Callable[[CheckpointState, Path], None]  # restore a checkpoint's state (and its path)
# Learn samples a replica held for their class slots, each with where it came from (the
# daemon's: its record and index, for dead letters).
LearnHeld = Callable[[list[Sample], list[Any]], None]


def replica_settings(settings: Settings, world: int | None = None) -> Settings:
    """The settings one replica learns with. With ``sync.split_batch``: ``engine.max_batch``
    and the backlog's ``engine.max_adaptive_batch`` divided by the world size (the group
    then steps as often per sample as one learner, a backlog included), and with Adam
    ``model.learning_rate`` times sqrt(world size) (``sync.scale_learning_rate``: each step
    then moves as far as one learner's on the whole batch). ``world``: the size of the
    group as it formed; the configured world size unless given."""
    sync = settings.sync
    if not (sync.enabled and sync.split_batch):
        return settings
    world = world or rendezvous(sync, os.environ)[3]
    batch = max(1, settings.engine.max_batch // world)
    adaptive = max(batch, settings.engine.max_adaptive_batch // world)
    engine = settings.engine.model_copy(update={"max_batch": batch, "max_adaptive_batch": adaptive})
    model = settings.model
    if sync.scale_learning_rate and model.optimizer == "adam":
        model = model.model_copy(update={"learning_rate": model.learning_rate * math.sqrt(world)})
    log.info(
        "sync_replica_settings",
        world_size=world,
        max_batch=batch,
        max_adaptive_batch=adaptive,
        learning_rate=model.learning_rate,
    )
    return settings.model_copy(update={"engine": engine, "model": model})


class Replica:
    """Joins the group, restores with it, and takes part in its sync rounds."""

    def __init__(
        self,
        settings: SyncSettings,
        engine: Engine,
        checkpointer: Checkpointer,
        metrics: Metrics,
        publish: Callable[[], None],
        report: Callable[[StepResult], None] = lambda result: None,
        learn: LearnHeld | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        # Samples whose class waits for the group's slot (labels.py), and how they are
        # learned at the round: by default straight through the engine.
        self.pending: PendingLabels[Any] = PendingLabels()
        self.learn: LearnHeld = learn or (lambda samples, _: report(engine.process(samples)))
        self.checkpointer = checkpointer
        self.metrics = metrics
        self.publish = publish
        self.decisions = GroupDecisions(engine, report)
        self.averager = Averager(settings.momentum, settings.server_lr)
        self.group: Group | None = None
        self.round = 0  # the last round taken (= the newest checkpoint id it may have)
        # In a generation that can take another round: from the join until a failure, or
        # until a last round ended the generation.
        self.live = False
        # This replica asks the generation to end at its next round (it stops, or a replica
        # sat down late): every replica saves in that last round, then they form the next.
        self._ending = False
        self._saved_round = 0  # the last round whose checkpoint this replica saved
        self._ended_saved = False  # a last round ended the generation, saved here
        self._steps = 0  # learning steps since the last round
        self._since = time.monotonic()
        self._checked = 0.0
        # Peers' heartbeat counts and when (here) each last moved: a peer that stopped
        # counting while this replica kept checking is lost, even when no round comes to
        # fail on it (its partitions may be idle).
        self._beats: list[int] = []
        self._moved: list[float] = []
        self._beaten = 0.0

    @property
    def world_max(self) -> int:
        """The group's size when whole: the configured world size."""
        return self._group().world_max

    def join(self) -> int:
        """Join this generation of the group; its size (at most :attr:`world_max`)."""
        with self._lost_on_failure("join"):
            self.group = Group(self.settings, self.engine.device)
        self.live = True
        self.handoffs = Handoffs(self.group.store, self.group.rank)
        self.checkpointer.handoff = self.handoffs
        # One lineage of pool decisions: the group's, made at rounds (decisions.py), or rank
        # 0's, which the others take at rounds while they learn on.
        together = self.settings.decisions == "group"
        self.engine.decides = together or self.group.rank == 0
        self.engine.decides_at_rounds = together
        self.engine.unknown_labels = "defer"  # class slots are given at rounds (labels.py)
        if self.engine.pool is not None:
            self.engine.pool.closes_at_window = not together
        self.metrics.sync_rank.set(self.group.rank)
        self.metrics.sync_members.set(self.group.world_size)
        self.metrics.sync_world_size.set(self.group.world_max)
        return self.group.world_size

    def close(self) -> None:
        if self.group is not None:
            self.group.close()

    # -- restore ---------------------------------------------------------------------------

    def restore(self, apply: Apply) -> None:
        """Every replica loads what the group restores (``restore.py``: the newest
        checkpoint id any member holds, else the newest single-process checkpoint, else
        rank 0's fresh state), broadcast by the replica that holds it."""
        with self._lost_on_failure("restore"):
            self._restore(apply)

    def _restore(self, apply: Apply) -> None:
        group = self._group()
        store = self.checkpointer.store
        held = held_ids(store)
        by_rank = group.all_gather_json(sorted(held))
        single = store.load_latest() if store is not None and not any(by_rank) else None
        made = group.all_gather_json(made_at(single))  # per rank: its newest's time, or None
        chosen = plan(by_rank, made, decider=self.settings.decisions == "rank0")
        agreed = chosen.checkpoint_id
        mine: dict[str, Any] | None = None
        if group.rank == chosen.source:
            if agreed is not None:
                mine = load_file(held[agreed])
            else:
                mine = single.state if single is not None else self._fresh()
        state = group.broadcast_state(mine, chosen.source)
        self._start_rounds_at(chosen.newest_id)
        if agreed is None and not chosen.seeded:
            self._load_engine(state["engine"])
            self.checkpointer.lineage = str(state["lineage"])
        else:
            restored = CheckpointState.from_dict(state)
            what = f"sync checkpoint {agreed}" if agreed else "newest checkpoint, the seed"
            apply(restored, Path(f"<{what} of rank {chosen.source}>"))
            if agreed is not None:
                self.averager.load_state_dict((restored.sync or {})["averager"])
                if agreed in held and store is not None:
                    # The restored id outlives pruning here until the group completes a
                    # newer one.
                    store.protect(held[agreed])
        self.decisions.restored()
        if chosen.seeded:
            path = single.path if single is not None else None
            log.info("sync_seeded", source=chosen.source, path=str(path) if path else None)
        else:
            log.info(
                "sync_restored",
                checkpoint_id=agreed,
                source=chosen.source,
                ids=by_rank,
                next_id=self.round + 1,
            )

    def _start_rounds_at(self, round_: int) -> None:
        """Rounds are counted on from ``round_``, the newest id any replica holds (the
        restored one): an id is never given to a second state, so two files of one id
        always hold one state and a replica's newest file holds its newest id. A store that
        outlived the group (torchrun's agent's) holds an older generation's count. Set,
        then meet, so all read it after."""
        group = self._group()
        self.round = self.handoffs.round = round_
        if group.rank == 0:
            group.store.set(_REQUESTED, str(round_))
        group.all_gather_ints([round_])

    def _fresh(self) -> dict[str, Any]:
        return {"engine": self.engine.state_dict(), "lineage": self.checkpointer.lineage}

    # -- rounds ----------------------------------------------------------------------------

    def stepped(self) -> None:
        """One learning step was taken."""
        self._steps += 1

    def maybe_sync(self, at_once: bool = False) -> bool:
        """Ask for a round if this replica's is due; take the round if one was asked for.
        ``at_once``: look at the store now, not at most every ``_CHECK_EVERY_S`` (a driver
        that paces replicas step by step: sync/lockstep.py). Raises
        :class:`GroupLostError` when the group lost a member."""
        now = time.monotonic()
        if not at_once and now - self._checked < _CHECK_EVERY_S:
            return False
        self._checked = now
        with self._lost_on_failure("round"):
            return self._maybe_sync(now)

    @contextmanager
    def _lost_on_failure(self, during: str) -> Iterator[None]:
        """gloo's and the store's errors (a dead peer or host) end this generation of the
        group: counted, logged, raised as :class:`GroupLostError`. A failed join or restore
        closes the group here; the learner loop's shutdown has not begun yet to do it."""
        try:
            yield
        except RuntimeError as exc:
            self.live = False
            self.metrics.sync_lost.inc()
            log.warning(
                "sync_group_lost", during=during, round=self.round, error=str(exc), action="rejoin"
            )
            if during != "round":
                self.close()
            if isinstance(exc, GroupLostError):
                raise
            raise GroupLostError(str(exc)) from exc
        except BaseException:
            # Any other error out of a round leaves it half-way, its peers inside
            # collectives this replica will not enter: no last round can follow.
            self.live = False
            raise

    def _maybe_sync(self, now: float) -> bool:
        group = self._group()
        if not self._ending and group.lost():
            if back := group.returned():
                raise GroupLostError(
                    f"replicas of rank {back} sat down again: they died, and no last round"
                    " can be taken with them"
                )
            # A replica sat down after the close (one was added, or came back after the
            # others formed without it): the group saves in a last round and forms again
            # with it, losing nothing it learned.
            log.info("sync_group_grew", round=self.round, action="last round, then rejoin")
            self._ending = True
        # A checkpoint that fell due (every_samples/every_seconds, a revoke) asks for a
        # round too: checkpoints are taken only in rounds, and the last learning steps of a
        # stream must reach one.
        due = (
            self._steps >= self.settings.every_steps
            or (self._steps > 0 and now - self._since >= self.settings.every_seconds)
            # Past the backoff only: a replica that cannot save (a full disk) would
            # otherwise ask for a checkpoint round at every turn of its loop.
            or self.checkpointer.ready
            or self.decisions.due(group.world_size)
            or len(self.pending) > 0  # a new class waits for its slot
            or self._ending
        )
        if due:
            self.ask_round()
        if int(group.store.get(_REQUESTED)) > self.round:
            self.sync()
            if not self.live:
                raise GroupLostError(
                    f"round {self.round} ended this generation of the group (a replica left"
                    " or joined): it forms again"
                )
            self._moved = [time.monotonic()] * len(self._moved)  # all were in the round
            return True
        self._watch_peers(now)
        return False

    def leave(self) -> bool:
        """This replica stops (SIGTERM): the group takes a last round, where every replica
        saves, and this generation ends with it; the others form the next, with this
        replica if it is back within ``sync.form_wait_s``. True if this replica saved it;
        False where no round could be taken (the group was lost already)."""
        if not self.live:
            return self._ended_saved
        self._ending = True
        try:
            with self._lost_on_failure("leave"):
                self.ask_round()
                self.sync()
        except GroupLostError:
            return False
        return self._saved_round == self.round

    def ask_round(self) -> None:
        """Ask the group for a round: every replica takes it at its next look."""
        self._group().store.compare_set(_REQUESTED, str(self.round), str(self.round + 1))

    def _watch_peers(self, now: float) -> None:
        timeout = self.settings.peer_timeout_s
        if now - self._beaten < timeout / 4:
            return
        if now - self._beaten > timeout / 2:  # this replica did not look for a while
            self._moved = [now] * len(self._moved)
        self._beaten = now
        beats = self._group().beat()
        if len(self._beats) != len(beats):
            self._beats, self._moved = beats, [now] * len(beats)
        for rank, (old, new) in enumerate(zip(self._beats, beats, strict=True)):
            if new != old:
                self._moved[rank] = now
            elif now - self._moved[rank] > timeout:
                raise GroupLostError(f"replica {rank} sent no heartbeat for {timeout} s")
        self._beats = beats

    def sync(self) -> None:
        """One round (collective): average, load, the group's decision, publish; checkpoint
        when due."""
        group = self._group()
        began = time.perf_counter()
        self.round += 1
        engine = self.engine
        if not engine.decides:
            # What it held is learned before the average: a round holds every update.
            engine.close_decision()
        flags = group.all_gather_ints(self._flags(int(self.checkpointer.ready)))
        last = any(f[4] for f in flags)  # a replica asked this generation to end
        shared = self.decisions.gather(group) if engine.decides_at_rounds else None
        told = group.all_gather_json(self._told())
        self.handoffs.held(self.round, [t["held"] for t in told])
        new_labels = [t["labels"] for t in told]
        nbytes = self._average(flags)
        checkpoint = (
            self.round % self.settings.checkpoint_every_rounds == 0
            or any(f[1] for f in flags)
            or last
        )
        position = flags[0][3]  # rank 0's: the template's bookkeeping counts in it
        if self._decide_and_learn(shared, new_labels, position, checkpoint):
            # What each replica just learned from its held samples joins the group's model
            # before anything is served or saved.
            nbytes += self._average(group.all_gather_ints(self._flags(0)))
        self._steps, self._since = 0, time.monotonic()
        self.publish()
        if checkpoint:
            self._checkpoint()
        if last:
            self.live = False
            self._ended_saved = self._saved_round == self.round
            log.info("sync_generation_ended", round=self.round, saved=self._ended_saved)
        took = time.perf_counter() - began
        self.metrics.sync_done(self.round, took, nbytes, self.averager.divergence)
        log.debug("sync_round", round=self.round, seconds=round(took, 4))

    def _told(self) -> dict[str, Any]:
        """What a round tells the others besides the model: the classes this replica holds
        samples of (labels.py) and the partitions it holds (handoff.py)."""
        held = [[tp.topic, tp.partition] for tp in self.checkpointer.positions]
        return {"labels": self.pending.new_labels(), "held": held}

    def _decide_and_learn(
        self,
        shared: list[Shared] | None,
        new_labels: list[list[Label]],
        position: int,
        checkpoint: bool,
    ) -> bool:
        """The group's decision, then the samples held for their classes. True when this
        replica learned what the group's model does not hold yet: the round averages again.
        Every branch turns on what every replica gathered alike (collectives stay in step)."""
        group = self._group()
        learned = shared is not None and self.decisions.settle(
            shared, position, checkpoint, group.rank
        )
        if not any(new_labels):
            return learned
        self._learn_pending(new_labels)
        if self.engine.decides_at_rounds:
            # Held samples may have gone into a window: the group settles again, so a
            # checkpoint round closes it and never saves one with samples in it.
            again = self.decisions.gather(group)
            self.decisions.settle(again, position, checkpoint, group.rank)
        return True

    def _learn_pending(self, new_labels: list[list[Label]]) -> None:
        """Slots for the group's new classes, the same on every replica; then this
        replica's held samples are learned (a class that got none refused for good)."""
        agree(self.engine.labels, new_labels)
        samples, origins = self.pending.take()
        if not samples:
            return
        self.engine.unknown_labels = "refuse"
        try:
            self.learn(samples, origins)
        finally:
            self.engine.unknown_labels = "defer"
        if not self.engine.decides:
            # sync.decisions: rank0: a window a follower opened holds them; the next load
            # drops it, so they are learned now, as at the round's start.
            self.engine.close_decision()

    def _flags(self, checkpoint_due: int) -> list[int]:
        """What a round gathers from each replica first."""
        engine = self.engine
        built = int(engine.n_features is not None)
        return [built, checkpoint_due, engine.version, engine.samples_learned, int(self._ending)]

    def _average(self, flags: list[list[int]]) -> int:
        """Broadcast the template, average, load (collective); the bytes it moved."""
        group = self._group()
        source = min((r for r, f in enumerate(flags) if f[0]), default=0)
        template = group.broadcast_state(self._fresh() if group.rank == source else None, source)
        nbytes = group.last_bytes
        if any(f[0] for f in flags):
            local = self.engine.state_dict()
            averaged = self.averager.average(template["engine"], local, group.all_reduce_sum)
            self._load_engine(averaged)
            # One version for the group's model, above every replica's: serving takes only
            # newer snapshots, and every replica then reports the same one.
            self.engine.version = max(f[2] for f in flags) + 1
            nbytes += self.averager.nbytes
            self.metrics.sync_dropped.inc(self.averager.dropped)
        return nbytes

    def _load_engine(self, state: dict[str, Any]) -> None:
        """Load the group's state; this replica's own counts, prequential scores and held
        samples stay its own.
        With ``sync.decisions: rank0`` a decision rank 0 holds open stays its own: another
        replica learns on meanwhile, or, with ``sync.follow_decisions``, holds and scores
        its own samples in a window of its own."""
        learned, predicted = self.engine.samples_learned, self.engine.samples_predicted
        stats = self.engine.stats.state_dict()  # its own scores: the gauges are per replica
        before = self.engine.pool
        held = before.decision if before is not None else None
        self.engine.load_state_dict(state)
        self.engine.stats.load_state_dict(stats)
        pool = self.engine.pool
        if self.engine.decides_at_rounds and pool is not None:
            pool.decision = held.rekeyed(list(pool.members)) if held is not None else None
        elif not self.engine.decides and pool is not None:
            deciding = pool.deciding
            pool.decision = None
            if deciding and self.settings.follow_decisions:
                pool.begin_decision(learned)  # a window of its own samples
        self.engine.samples_learned, self.engine.samples_predicted = learned, predicted

    def _checkpoint(self) -> None:
        """Every replica saves this round's state with the group's offsets, under the
        round's id (``barrier.py``)."""
        sync_state = {"averager": self.averager.state_dict()}
        if save_round(self._group(), self.checkpointer, self.round, sync_state):
            self._saved_round = self.round

    def _group(self) -> Group:
        assert self.group is not None, "join() first"
        return self.group
