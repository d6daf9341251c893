"""The pool's decisions of a group of replicas, made together at sync rounds
(``sync.decisions: group``; docs/scaling.md).

One replica sees 1/N of the stream. When rank 0 alone watches and decides, its detectors
warm up and test on half the samples (a new expert's detector is often still deaf when the
next concept arrives), it decides on its own share, and meanwhile the others teach the
active expert a concept the pool may give to another: the pool's reuse of experts, its whole
point on recurring concepts, is lost. So the group watches and decides as one learner would:

1. at a round every replica feeds the group's losses since the last round (all replicas',
   merged by their place in each share: ``interleave``) to its detectors, restored first
   to their state at the last round: alike before, they stay alike and alarm on every
   replica at once, having seen the whole stream. Between rounds each replica feeds its
   own losses too, to know when to ask for a round: an alarm on its own share (a warning
   too) asks at once, so the group's test runs within a turn of the loop, not at the next
   scheduled round;
2. that alarm also opens a tentative window on the replica: it holds and scores its
   samples from there, as the pool does after a drift, and the active expert does not learn
   the new concept while the round is on its way. At the round a drift in the group's
   losses (or a window open anywhere) confirms it, keeping every sample it held, and opens
   a window on every other replica; otherwise the active expert learns what it held and
   the round averages again;
3. at the first round where the group holds ``experts.decision_window`` samples (a replica
   that holds its share asks for one), each sends its per-expert loss sums, and every
   replica makes the same choice (keep, switch or spawn, and what a spawn drops) from the
   group's mean losses: its pool is the group's since the round's load, and a spawn is
   seeded by the pool's next id, so the new expert is the same everywhere;
4. each replica learns the samples it held into the chosen expert, and the round averages
   again, so what is served and checkpointed holds them.

A round that checkpoints closes a window that holds samples, whatever their number: a
restore loads one replica's file, and the held samples of the others would be lost with it.
An empty window is kept (it is the same on every replica). The rows were scored by each
replica's local experts between rounds, not by the averaged ones: the price of not moving
the samples. Events (drift, keep, switch, spawn) are the group's: rank 0 publishes them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch

from streamlearn.core.engine import Engine, StepResult
from streamlearn.core.experts.decision import GroupScores
from streamlearn.core.protocols import StateDict
from streamlearn.sync.group import Group

# What each replica sends at a round: its window ("held": samples, -1 if none open, and
# "vote": per-expert loss sums) and the losses it kept for the detectors.
Shared = dict[str, Any]


class GroupDecisions:
    """This replica's part in the group's detectors and decisions."""

    def __init__(self, engine: Engine, report: Callable[[StepResult], None]) -> None:
        self.engine = engine
        self.report = report  # the group's events, published by rank 0 only
        # At the last round: the detectors' state, and the active expert's loss band.
        self._detectors: StateDict | None = None
        self._band: tuple[str, StateDict] | None = None

    def restored(self) -> None:
        """The group's state is loaded here: the detectors and the band are the group's."""
        drift, pool = self.engine.drift, self.engine.pool
        self._detectors = copy.deepcopy(drift.state_dict()) if drift is not None else None
        self._band = (pool.active_id, pool.active.band.state_dict()) if pool is not None else None

    def due(self, world_size: int) -> bool:
        """A round may decide: this replica's own losses alarmed, or it holds its share of
        a window."""
        engine, pool = self.engine, self.engine.pool
        if engine.suspects:
            return True
        if pool is None or pool.decision is None:
            return False
        return pool.decision.count >= math.ceil(pool.settings.decision_window / world_size)

    def gather(self, group: Group) -> list[Shared]:
        """Every replica's window and kept losses (collective)."""
        return group.all_gather_json(self.share())

    def share(self) -> Shared:
        """This replica's window and the losses it kept since the last round."""
        pool = self.engine.pool
        decision = pool.decision if pool is not None else None
        mine: Shared = {
            "held": decision.count if decision is not None else -1,
            "tentative": decision is not None and decision.tentative,
            "vote": decision.vote() if decision is not None else {},
            "losses": self.engine.take_unwatched(),
        }
        self.engine.suspects = False
        return mine

    def settle(self, shared: list[Shared], sample: int, close: bool, rank: int) -> bool:
        """After the round's load: the detectors see the group's losses; a window opens on
        every replica if one is open anywhere; once the group holds a window's worth (or
        ``close``, and it holds any) all decide alike. True if the group decided.

        ``sample``: rank 0's position, the scale of the pool's bookkeeping (the template's).
        """
        engine, pool = self.engine, self.engine.pool
        if pool is None:
            return False  # nothing learned anywhere yet
        result = StepResult()
        opened = any(s["held"] >= 0 and not s["tentative"] for s in shared)
        self._replay([] if opened else interleave([s["losses"] for s in shared]), sample, result)
        if opened or (pool.decision is not None and not pool.decision.tentative):
            pool.begin_decision(sample)  # open on every replica (the replay's drift did here)
            held = sum(max(int(s["held"]), 0) for s in shared)
            if held >= pool.settings.decision_window or (close and held):
                scores = GroupScores.combine([s["vote"] for s in shared], held)
                result.pool_events += engine.close_decision(scores, sample).pool_events
            withdrawn = False
        else:
            engine.withdraw_decision()  # an alarm of its own the group's losses did not bear out
            withdrawn = any(s["tentative"] and s["held"] > 0 for s in shared)
        self.restored()  # the state every replica now shares
        if rank == 0 and (result.drift_events or result.pool_events):
            self.report(result)
        return bool(result.pool_events) or withdrawn

    def _replay(self, losses: list[float], sample: int, result: StepResult) -> None:
        """What each replica's own losses moved since the last round goes back to the
        last round's state, and the group's losses move it: the detectors, and the active
        expert's loss band, which a decision tests the window against (fed by one replica's
        share, it would hold older, higher losses than one learner's and keep an expert
        a new concept should not reuse). With ``drift.signal: error`` the band stays the
        template's: the values kept are 0/1 errors, not losses."""
        engine, pool = self.engine, self.engine.pool
        assert pool is not None
        if engine.drift is not None and self._detectors is not None:
            engine.drift.load_state_dict(self._detectors)
        if self._band is not None and self._band[0] == pool.active_id:
            pool.active.band.load_state_dict(self._band[1])
        if not losses:
            return
        values = torch.tensor(losses)
        if not engine.watches_errors:
            pool.active.band.update(values)
        engine.watch(values, sample, result)


def interleave(per_rank: list[list[float]]) -> list[float]:
    """The replicas' losses since the last round as one stream: each replica's in its own
    order, merged by how far through its share each value lies (ties in rank order).

    Every replica read its share over the same stretch of the stream, so a value's
    fraction of its list stands for its place in time. Laid end to end instead, a change
    of concept shows in the tail of every list, parted by the next replica's older values:
    the detectors saw one replica's evidence at a time, and the group's drift came
    hundreds of samples after one learner's (docs/scaling.md)."""
    keyed = [
        ((i + 0.5) / len(values), rank, v)
        for rank, values in enumerate(per_rank)
        for i, v in enumerate(values)
    ]
    return [v for _, _, v in sorted(keyed, key=lambda k: (k[0], k[1]))]
