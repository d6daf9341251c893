"""The expert pool: one active expert learns; after a drift the pool reuses or spawns.

Task identities are never given: the pool infers regimes from losses alone (TAME's idea).
The engine hands every labeled batch, answered and scored, to :meth:`ExpertPool.step`; the
pool learns it or holds it and says what happened (:class:`PoolStep`). After the drift
monitor alarms on the active expert the engine opens a decision (:meth:`begin_decision`):

1. The next ``decision_window`` labeled samples are *held*. Every expert predicts them and
   their losses are summed per expert; the expert leading so far answers them (test first,
   then train, as always). No expert learns while the pool decides.
2. Every expert whose mean window loss lies inside its own normal band (``band.py``) is a
   candidate; the lowest loss wins. The active expert winning means the alarm was a passing
   disturbance (``keep``); another expert winning means a regime came back (``switch``).
3. No candidate means a new regime. A full pool first drops its least useful expert:
   wins halved per ``idle_half_life`` samples idle (``prune``; with ``merge`` its replay
   samples and selector pairs go to its closest expert first). Then a new expert is
   spawned, fresh (seeded by its id) or as a copy of the closest expert.
4. In the same step the chosen expert learns the held samples, ``relearn_batch`` rows per
   optimizer step (no step bigger than a live batch): nothing is lost to the decision.

The pool owns the selector (routing for unlabeled and served samples) and each expert's
replay buffer, and all of it is in :meth:`state_dict`. It scales raw inputs (selector pairs,
replayed regimes) with the :class:`Scaler` it is given: the engine's statistics of now.
"""

from __future__ import annotations

import copy
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from streamlearn.core.errors import CheckpointError
from streamlearn.core.experts.band import LossBand
from streamlearn.core.experts.decision import Decision, GroupScores, Learned, PoolStep
from streamlearn.core.experts.guard import finite_or
from streamlearn.core.experts.headed import HeadExpert
from streamlearn.core.experts.member import Member, PoolEvent
from streamlearn.core.experts.prototypes import InputPrototypes, nearest
from streamlearn.core.experts.replay import ReplayBuffer
from streamlearn.core.experts.selector import (
    FrozenRouter,
    Router,
    Scaler,
    Selector,
    rows_by_expert,
    scaled,
)
from streamlearn.core.experts.settings import ExpertsSettings
from streamlearn.core.protocols import Expert, StateDict, WarmStarted

ExpertFactory = Callable[[int], Expert]  # seed -> a new expert
LossFn = Callable[[Tensor, Tensor], Tensor]  # (outputs, targets) -> per-sample losses
Forward = Callable[[Tensor], Tensor]  # an expert's predict
# Rows per relearning step after a decision unless told: engine.max_batch's default.
RELEARN_BATCH = 32


class ExpertPool:
    """The experts, which one is active, and the reuse-or-spawn decision after a drift.

    One labeled batch is one :meth:`step`. Owns the selector and the replay buffers;
    learner thread only.
    """

    def __init__(
        self,
        settings: ExpertsSettings,
        factory: ExpertFactory,
        loss_fn: LossFn,
        n_features: int,
        device: torch.device,
        seed: int,
        scaler: Scaler | None = None,
        relearn_batch: int = RELEARN_BATCH,
        n_classes: int | None = None,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.loss_fn = loss_fn
        self.device = device
        self.seed = seed
        self.relearn_batch = relearn_batch
        self.n_features = n_features
        self.n_classes = n_classes  # None (regression): no class prototypes
        self.members: dict[str, Member] = {}
        self.active_id = ""
        self.next_id = 0
        self.decision: Decision | None = None
        # False in a group of replicas that decides together: a decision closes at a sync
        # round, on every replica's held samples' scores (docs/scaling.md), not when this
        # replica's window is full.
        self.closes_at_window = True
        # Steps the experts' guards skipped or undone, by reason, since last taken.
        self.skips: Counter[str] = Counter()
        self.scaler = scaler  # raw inputs -> the experts' inputs, with today's statistics
        self.selector = Selector(
            settings.selector, n_features, settings.max_experts, device, seed, scaler
        )
        self.active_id = self._add(self._new_member(0), 0).id

    @property
    def active(self) -> Member:
        return self.members[self.active_id]

    @property
    def active_expert(self) -> Expert:
        """The expert learning now."""
        return self.active.expert

    @property
    def deciding(self) -> bool:
        return self.decision is not None

    def leader(self) -> Member:
        """The expert with the lowest loss on the held samples so far (the active one
        before any, and whenever no decision is open)."""
        if self.decision is None:
            return self.active
        return self.members[self.decision.leader(self.active_id)]

    def answerers(self, x: Tensor) -> list[str]:
        """Which expert answers each labeled row before it is learned: the active one; while
        deciding, the selector's pick (the regime is unknown then), else the leader; in a
        replica's tentative window the active one still."""
        if self.decision is None or self.decision.tentative:
            return [self.active_id] * x.shape[0]
        return self.selector.route(x, self._ids_by_slot(), self.leader().id, self._nearest())

    def credit(self, answerers: list[str], correct: Tensor) -> None:
        """Each expert's prequential accuracy counts the answers it gave (``correct``: per
        row of ``answerers``)."""
        first = answerers[0]
        if all(a == first for a in answerers):  # the usual case: no indexing
            self.members[first].scored(correct)
            return
        for id_, rows in rows_by_expert(answerers).items():
            self.members[id_].scored(correct[rows])

    # -- learning --------------------------------------------------------------------------

    def step(
        self, x_test: Tensor, x_train: Tensor, raw: Tensor, y: Tensor, scored: Tensor, sample: int
    ) -> PoolStep:
        """One labeled batch, answered and scored: the active expert learns it, or, while a
        decision is open, it is held; the batch that fills the window closes the decision.

        ``x_test``: the rows as they were answered; ``x_train``: as they are learned; ``raw``:
        unscaled, for the selector's pairs. ``scored``: the answering experts' losses, all
        finite; they stand in for any non-finite loss. ``sample``: labeled samples taken in
        before the batch (the stream position).
        """
        if self.decision is None:
            losses = self._learn(x_train, y, raw, sample, scored)
            return PoolStep(
                losses, held=False, steps=1, learned=[Learned(self.active_id, x_train, y)]
            )
        tentative = self.decision.tentative
        losses = finite_or(self.hold(x_test, x_train, raw, y), scored)
        outcome = PoolStep(losses, held=True, tentative=tentative)
        if self.closes_at_window and self.decision.count >= self.settings.decision_window:
            self._close(sample + y.shape[0], outcome)
        return outcome

    def _learn(
        self, x: Tensor, y: Tensor, raw: Tensor, sample: int, scored: Tensor | None
    ) -> Tensor:
        """The active expert learns ``x`` (plus replayed samples); their losses, pre-step.

        ``raw``: ``x`` before scaling, for the selector's pairs. ``scored``: the expert's
        losses on ``x`` by ``loss_fn`` before the step, if the caller has them; they feed
        the expert's loss band (computed here otherwise).
        """
        member = self.active
        n = x.shape[0]
        if scored is None:
            scored = self.loss_fn(member.expert.predict(x), y)
        x_all, y_all = x, y
        extra = round(self.settings.replay.ratio * n)
        if extra and (old := member.replay.sample(extra)) is not None:
            x_all, y_all = torch.cat([x, old[0]]), torch.cat([y, old[1]])
        # A guarded expert's losses are finite unless it skipped for the loss; a user's own
        # Expert may return anything. Checking every time costs one reduction.
        losses = finite_or(member.expert.learn(x_all, y_all)[:n], scored)
        if (skipped := member.expert.skipped) is not None:
            self.skips[skipped] += 1
        member.learned(scored, sample + n)
        if self.settings.replay.ratio > 0:
            member.replay.add(x, y)
        if member.prototypes is not None:
            member.prototypes.update(x, y)
        self.selector.observe(x, raw, member.slot, self._slots())
        if self.selector.skipped is not None:
            self.skips[f"selector_{self.selector.skipped}"] += 1
        return losses

    def take_skips(self) -> dict[str, int]:
        taken, self.skips = dict(self.skips), Counter()
        return taken

    def close_decision(self, sample: int, group: GroupScores | None = None) -> PoolStep:
        """Close an open decision now, on the samples held so far, or on a group's scores
        (docs/scaling.md): every replica's pool, alike before, makes the same choice from
        them and learns the samples it holds itself."""
        outcome = PoolStep(torch.zeros(0), held=True)
        if self.decision is not None and group is not None and group.count:
            self.decision.loss_sums = {
                e: group.means.get(e, math.inf) * group.count for e in self.members
            }
            self.decision.count = group.count
        if self.decision is not None and self.decision.count:
            self._close(sample, outcome)
        self.decision = None
        return outcome

    def begin_decision(self, sample: int, tentative: bool = False) -> None:
        """Hold the next ``decision_window`` samples to decide on (a drift was detected).
        ``tentative``: a replica's own alarm, until its group confirms it; a window open
        already is confirmed by a call without it."""
        if self.decision is None:
            self.decision = Decision(sample, list(self.members), tentative)
        elif not tentative:
            self.decision.tentative = False

    def withdraw_decision(self, sample: int) -> PoolStep:
        """Close an open decision without deciding: the active expert learns the held
        samples, as if never held (a replica's alarm its group did not confirm)."""
        outcome = PoolStep(torch.zeros(0), held=True)
        decision, self.decision = self.decision, None
        if decision is not None and decision.x:
            x, y = torch.cat(decision.x), torch.cat(decision.y)
            self._relearn(x, y, torch.cat(decision.raw), sample, outcome)
        return outcome

    def hold(self, x_test: Tensor, x_train: Tensor, raw: Tensor, y: Tensor) -> Tensor:
        """Keep a labeled batch for the decision, scored by every expert on ``x_test``;
        the losses of the expert leading after it. ``x_train`` is what will be learned."""
        assert self.decision is not None
        scored = {
            id_: self.loss_fn(self.members[id_].expert.predict(x_test), y)
            for id_ in self._contenders(x_test, y)
        }
        for id_ in self.decision.loss_sums.keys() - scored.keys():
            self.decision.loss_sums[id_] = math.inf  # off the shortlist: never chosen
        for id_, losses in scored.items():
            total = float(losses.double().sum())
            # An expert that cannot give a finite loss on the window is never the one chosen
            # (NaN would make every comparison false and the choice arbitrary).
            self.decision.loss_sums[id_] += total if math.isfinite(total) else math.inf
        self.decision.x.append(x_train)
        self.decision.raw.append(raw)
        self.decision.y.append(y)
        self.decision.count += x_train.shape[0]
        if self.decision.tentative and self.active_id in scored:  # nothing decided yet
            return scored[self.active_id]
        return scored[self.decision.leader(self.active_id)]

    def _contenders(self, x: Tensor, y: Tensor) -> list[str]:
        """The experts a decision scores by their networks: every one, or with
        ``prototypes.shortlist`` the active one and the shortlist's size of others with the
        lowest prototype loss on the window's first batch (the rest are out from then on)."""
        assert self.decision is not None
        if self.decision.count:
            return [e for e, loss in self.decision.loss_sums.items() if math.isfinite(loss)]
        size = self.settings.prototypes.shortlist
        others = [m for m in self.members.values() if m.id != self.active_id]
        if size is None or len(others) <= size or self.n_classes is None:
            return list(self.members)

        def prototype_loss(member: Member) -> float:
            assert member.prototypes is not None
            return float(member.prototypes.losses(x, y).mean())

        ranked = sorted(others, key=prototype_loss)
        return [self.active_id] + [m.id for m in ranked[:size]]

    def _close(self, sample: int, outcome: PoolStep) -> None:
        """Decide, then the chosen expert learns every held sample, ``relearn_batch`` rows a
        step, all at the decision's position."""
        events, x, y, raw = self._decide(sample)
        outcome.events += events
        if x is not None:
            self._relearn(x, y, raw, sample, outcome)

    def _relearn(self, x: Tensor, y: Tensor, raw: Tensor, sample: int, outcome: PoolStep) -> None:
        """The active expert learns held samples, ``relearn_batch`` rows a step."""
        size = self.relearn_batch
        for start in range(0, x.shape[0], size):
            rows = slice(start, start + size)
            self._learn(x[rows], y[rows], raw[rows], sample, None)
            outcome.learned.append(Learned(self.active_id, x[rows], y[rows]))
        outcome.steps += len(outcome.learned)

    def _decide(self, sample: int) -> tuple[list[PoolEvent], Tensor | None, Tensor, Tensor]:
        """End the decision: the events, and the held samples the chosen expert must learn
        (None: this replica of a group held none)."""
        assert self.decision is not None
        decision, self.decision = self.decision, None
        scores = decision.means()
        n = decision.count
        s = self.settings
        inside = [
            e
            for e, loss in scores.items()
            if self.members[e].band.ready
            and loss <= self.members[e].band.upper(n, s.band_z, s.band_tolerance)
        ]
        previous = self.active_id
        events: list[PoolEvent] = []
        if inside:
            chosen = min(inside, key=lambda e: (scores[e], e != previous))
            self.members[chosen].wins += 1
            events.append(
                self._event(
                    "keep" if chosen == previous else "switch", chosen, previous, sample, scores
                )
            )
        else:
            chosen, dropped = self._spawn(sample, closest=min(scores, key=scores.__getitem__))
            events += dropped
            events.append(self._event("spawn", chosen, previous, sample, scores))
        self.active_id = chosen
        if not decision.x:
            return events, None, torch.zeros(0), torch.zeros(0)
        return (events, torch.cat(decision.x), torch.cat(decision.y), torch.cat(decision.raw))

    # -- what the engine hands on ----------------------------------------------------------

    def live_ids(self) -> set[str]:
        """The ids of the experts in the pool now."""
        return set(self.members)

    def experts(self) -> dict[str, Expert]:
        """The live experts, by id."""
        return {id_: m.expert for id_, m in self.members.items()}

    def forwards(self) -> dict[str, Forward]:
        """Each live expert's forward pass, by id: what a ``Predictor`` answers with."""
        return {id_: m.expert.predict for id_, m in self.members.items()}

    def variances(self) -> dict[str, Forward]:
        """The predictive variance of each live expert whose head gives one, by id."""
        return {
            id_: m.expert.variance
            for id_, m in self.members.items()
            if isinstance(m.expert, HeadExpert) and m.expert.module.has_variance
        }

    def modules(self) -> dict[str, nn.Module]:
        """The live experts' networks, by id; an expert without one is left out."""
        found = {id_: m.expert.module for id_, m in self.members.items()}
        return {id_: module for id_, module in found.items() if module is not None}

    # -- routing ---------------------------------------------------------------------------

    def route(self, x: Tensor) -> list[str]:
        """The expert per row for unlabeled samples: the selector's, or the active one."""
        return self.selector.route(x, self._ids_by_slot(), self.active_id, self._nearest())

    def frozen_router(self) -> FrozenRouter | None:
        prototypes = self._prototypes()
        if prototypes is not None:  # the learner goes on updating its own
            prototypes = {id_: w.clone() for id_, w in prototypes.items()}
        return self.selector.freeze(self._ids_by_slot(), self.active_id, prototypes)

    def _prototypes(self) -> dict[str, Tensor] | None:
        """Each expert's prototype weights when they route unsure rows (else None)."""
        if not self.settings.prototypes.fallback or self.n_classes is None:
            return None
        return {m.id: m.prototypes.weights() for m in self.members.values() if m.prototypes}

    def _nearest(self) -> Router | None:
        prototypes = self._prototypes()
        return None if prototypes is None else partial(nearest, prototypes)

    def nbytes(self) -> dict[str, int]:
        """Memory held, by part: expert weights and optimizers, replay, selector."""
        replay = sum(m.replay.nbytes for m in self.members.values())
        experts = sum(m.nbytes() for m in self.members.values()) - replay
        return {"experts": experts, "replay": replay, "selector": self.selector.nbytes}

    # -- spawning and dropping -------------------------------------------------------------

    def _spawn(self, sample: int, closest: str) -> tuple[str, list[PoolEvent]]:
        warm = (
            copy.deepcopy(self.members[closest].expert.state_dict())
            if self.settings.spawn == "warm_start"
            else None
        )
        dropped = []
        if len(self.members) >= self.settings.max_experts:
            dropped = self._drop_least_useful(sample)
        member = self._new_member(sample)
        if warm is not None:
            member.expert.load_state_dict(warm)
            if isinstance(member.expert, WarmStarted):
                member.expert.after_warm_start()
        return self._add(member, sample).id, dropped

    def _drop_least_useful(self, sample: int) -> list[PoolEvent]:
        half_life = self.settings.idle_half_life
        victim = min(
            self.members.values(),
            key=lambda m: (m.usefulness(sample, half_life), m.last_active_sample),
        )
        del self.members[victim.id]
        if self.settings.when_full == "merge" and self.members:
            heir = self._closest_to(victim)
            heir.replay.absorb(victim.replay)
            self.selector.move(victim.slot, heir.slot)
            return [self._event("merge", victim.id, heir.id, sample, {})]
        self.selector.forget(victim.slot)
        return [self._event("prune", victim.id, None, sample, {})]

    def _closest_to(self, victim: Member) -> Member:
        """The remaining expert whose outputs are nearest the victim's on inputs of the
        victim's regime (its selector pairs)."""
        pairs = self.selector.pairs.get(victim.slot)
        held = pairs.rows() if pairs is not None else None
        if held is None:
            return (
                self.active if self.active_id in self.members else next(iter(self.members.values()))
            )
        x = scaled(self.scaler, held[0][:256]).to(self.device)
        theirs = victim.expert.predict(x)

        def distance(member: Member) -> float:
            return float((member.expert.predict(x) - theirs).pow(2).mean())

        return min(self.members.values(), key=distance)

    def _new_member(self, sample: int) -> Member:
        id_ = str(self.next_id)
        used = {m.slot for m in self.members.values()}
        slot = min(set(range(self.settings.max_experts)) - used)
        member_seed = self.seed + self.next_id
        with torch.random.fork_rng(devices=[]):
            expert = self.factory(member_seed)
        prototypes = (
            InputPrototypes(self.n_features, self.n_classes) if self.n_classes is not None else None
        )
        return Member(
            id_,
            slot,
            expert,
            LossBand(self.settings.band_memory),
            ReplayBuffer(self.settings.replay, member_seed),
            sample,
            prototypes,
        )

    def _add(self, member: Member, sample: int) -> Member:
        self.members[member.id] = member
        self.next_id = max(self.next_id, int(member.id) + 1)
        member.last_active_sample = sample
        return member

    def _event(
        self, kind: str, expert: str, previous: str | None, sample: int, scores: dict[str, float]
    ) -> PoolEvent:
        return PoolEvent(
            kind, expert, previous, sample, time.time(), {e: round(v, 6) for e, v in scores.items()}
        )

    def _slots(self) -> list[int]:
        return sorted(m.slot for m in self.members.values())

    def _ids_by_slot(self) -> dict[int, str]:
        return {m.slot: m.id for m in self.members.values()}

    # -- state -----------------------------------------------------------------------------

    def state_dict(self) -> StateDict:
        return {
            "active": self.active_id,
            "next_id": self.next_id,
            "members": {i: m.state_dict() for i, m in self.members.items()},
            "selector": self.selector.state_dict(),
            "decision": self.decision.state_dict() if self.decision else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._check_fits(state)
        self.members = {}
        for id_, member_state in state["members"].items():
            self.next_id = int(id_)
            member = self._new_member(int(member_state["last_active_sample"]))
            member.slot = int(member_state["slot"])
            member.load_state_dict(member_state, self.device)
            self.members[member.id] = member
        self.active_id = str(state["active"])
        self.next_id = int(state["next_id"])
        self.selector.load_state_dict(state["selector"])
        self.decision = (
            Decision.from_state(state["decision"], self.device)
            if state["decision"] is not None
            else None
        )

    def _check_fits(self, state: Mapping[str, Any]) -> None:
        """A checkpoint written with a bigger pool or another selector cannot be loaded into
        this one: say which settings it needs instead of failing inside torch."""
        held = len(state["members"])
        saved = {k: tuple(v.shape) for k, v in state["selector"]["net"].items()}
        here = {k: tuple(v.shape) for k, v in self.selector.net.state_dict().items()}
        problems = []
        if held > self.settings.max_experts:
            problems.append(
                f"it holds {held} experts, experts.max_experts allows "
                f"{self.settings.max_experts} (experts.enabled: false allows 1)"
            )
        if saved != here:
            problems.append(
                "its selector network has another shape (experts.max_experts or "
                "experts.selector.hidden changed)"
            )
        if problems:
            raise CheckpointError(
                "checkpoint does not fit the expert pool settings: "
                + "; ".join(problems)
                + ". Restore those settings, or move "
                "the checkpoint directory away to start fresh."
            )
