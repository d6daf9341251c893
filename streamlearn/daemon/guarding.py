"""The served-model guard in the daemon: keeps the rollback target, rolls back, holds.

``core/labels/guard.py`` decides; this keeps the engine states it decides about (deep
copies: a candidate, and the good one it becomes once confirmed), restores the good one
into the learner on a rollback (the next snapshot serves it), and reports every rollback
and release as an event, a metric and a log line.

After a rollback the model version and each expert's step count go on from where they
were, never back: serving's versions never decrease, and a snapshot file named by an
expert's steps is never reused for other weights. The guard's decisions and both states
(candidate, good) are checkpointed with the join store: a restart keeps the band, the last
good state and a hold in progress.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from streamlearn.core.engine import Engine
from streamlearn.core.labels.guard import GuardAction, ServedGuard, Verdict
from streamlearn.core.labels.settings import GuardSettings
from streamlearn.core.logging import get_logger
from streamlearn.daemon.endpoints import Endpoints
from streamlearn.metrics import Metrics

log = get_logger(__name__)


class GuardKeeper:
    """Judges each join's answer; returns whether the joined sample may be learned."""

    def __init__(
        self,
        settings: GuardSettings,
        engine: Engine,
        metrics: Metrics,
        endpoints: Endpoints,
        publish: Callable[[], None],
    ) -> None:
        self.enabled = settings.enabled
        self.guard = ServedGuard(settings)
        self.engine = engine
        self.metrics = metrics
        self.endpoints = endpoints
        self.publish = publish  # a snapshot of the rolled-back state, served at once
        self._candidate: dict[str, Any] | None = None
        self._good: dict[str, Any] | None = None
        self.rollbacks = 0
        self.events: list[dict[str, Any]] = []  # rollbacks and releases, for /v1/models

    def scored(self, right: bool) -> bool:
        if not self.enabled:
            return True
        verdict = self.guard.judge(right)
        action = verdict.action
        if action is GuardAction.CAPTURE:
            if self._candidate is not None and self.guard.has_good:
                self._good = self._candidate
            if self.engine.pool is not None:
                self._candidate = copy.deepcopy(self.engine.state_dict())
        elif action is GuardAction.ROLLBACK:
            self._rollback(verdict)
            return False
        elif action is GuardAction.RELEASE:
            self._report("guard_released", verdict)
            self.metrics.guard_holding.set(0)
        return action is not GuardAction.HOLD

    def forgotten(self) -> None:
        """Samples were unlearned (``POST /v1/forget``): the kept states still hold them,
        so both are dropped and confirmation restarts. Until a new state is confirmed there
        is no rollback target (damage meanwhile is not rolled back)."""
        if not self.enabled:
            return
        self._candidate = self._good = None
        self.guard.restart()
        self.metrics.guard_holding.set(0)
        log.warning("guard_restarted", reason="forget", model_version=self.engine.version)

    def promoted(self) -> None:
        """A challenger was promoted: the candidate taken before it is not what is served,
        so the promoted state becomes the candidate, confirmed by its own answers (else a
        later rollback could undo the promotion to a state confirmed by the wrong model)."""
        if not self.enabled:
            return
        self._candidate = None
        if self.engine.pool is not None:
            self._candidate = copy.deepcopy(self.engine.state_dict())
        self.guard.recapture()

    def state_dict(self) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        return {
            "guard": self.guard.state_dict(),
            "candidate": self._candidate,
            "good": self._good,
            "rollbacks": self.rollbacks,
        }

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if not self.enabled or state is None:
            return
        self.guard.load_state_dict(state["guard"])
        self._candidate, self._good = state["candidate"], state["good"]
        self.rollbacks = int(state["rollbacks"])
        self.metrics.guard_holding.set(int(self.guard.holding))

    def _rollback(self, verdict: Verdict) -> None:
        if self._good is None:  # nothing confirmed to go back to: hold only
            self._report("guard_holding", verdict)
            self.metrics.guard_holding.set(1)
            return
        restored = restore_into(self.engine, copy.deepcopy(self._good))
        self._candidate = None
        self.rollbacks += 1
        self.metrics.rollbacks.inc()
        self.metrics.guard_holding.set(1)
        self._report("served_model_rolled_back", verdict, restored_version=restored)
        self.publish()

    def _report(self, kind: str, verdict: Verdict, **extra: Any) -> None:
        payload = {
            "recent_accuracy": _round(verdict.recent),
            "good_accuracy": _round(verdict.good),
            "recent_upper_bound": _round(verdict.upper),
            "model_version": self.engine.version,
            **extra,
        }
        announce(self.endpoints, self.events, kind, payload)


def announce(
    endpoints: Endpoints, events: list[dict[str, Any]], kind: str, payload: dict[str, Any]
) -> None:
    """A promotion, rollback or release: a log line, the events topic, ``/v1/models``."""
    log.warning(kind, **payload)
    events.append({"event": kind, **payload})
    del events[:-50]
    if endpoints.sink is not None:
        endpoints.sink.event(kind, payload)


def restore_into(engine: Engine, state: dict[str, Any]) -> int:
    """Load ``state`` into the learner, versions going on; the version ``state`` had.

    The model version and each expert's step count go on from where they were, never
    back: serving's versions never decrease, and a snapshot file named by an expert's
    steps is never reused for other weights."""
    version = engine.version
    steps = {i: m.steps for i, m in engine.pool.members.items()} if engine.pool else {}
    engine.load_state_dict(state)
    restored = engine.version
    engine.version = version + 1
    if engine.pool is not None:
        # Every learning step moves the version, so an expert's steps never exceed it:
        # steps set to the new version name weights no snapshot file of that expert has
        # held before (one pruned since the good state included).
        for id_, member in engine.pool.members.items():
            member.steps = max(engine.version, steps.get(id_, 0) + 1)
    return restored


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
