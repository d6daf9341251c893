"""The challenger in the daemon: a shadow engine learning what the champion learns.

The challenger is the champion's configuration with ``labels.challenger.model`` changed
(learning rate, momentum, weight decay, seed). It takes every learning step the champion
takes (and adapts on served rows when the champion does; a forget is mirrored with one
expert each, else the challenger is rebuilt from the champion's state) and answers the
same unlabeled samples at the same moment; each late label then scores both answers as a
pair (``core/labels/challenger.py`` decides). When a block of
pairs shows it better by the margin with the confidence asked, its state is moved into the
champion (versions go on, never back) and served at once: an event, a metric and a log
line. The champion keeps its own configuration, learning on from the promoted state.

Costs one more learning step per step while enabled. Its state is checkpointed with the
join store, so a restart keeps the challenger and the open block.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch

from streamlearn.core.engine import Engine
from streamlearn.core.errors import ModelError
from streamlearn.core.labels.challenger import ChallengerJudge, PairedBlock
from streamlearn.core.logging import get_logger
from streamlearn.core.models.settings import ModelSettings
from streamlearn.core.types import Label, Sample
from streamlearn.daemon.endpoints import Endpoints
from streamlearn.daemon.guarding import GuardKeeper, announce, restore_into
from streamlearn.metrics import Metrics
from streamlearn.settings import Settings

log = get_logger(__name__)


class ChallengerKeeper:
    """Runs the shadow engine, scores pairs, promotes it into the champion."""

    def __init__(
        self,
        settings: Settings,
        champion: Engine,
        metrics: Metrics,
        endpoints: Endpoints,
        publish: Callable[[], None],
        guard: GuardKeeper | None = None,
    ) -> None:
        cfg = settings.labels.challenger
        self.enabled = (
            cfg.enabled and settings.labels.enabled and settings.model.task == "classification"
        )
        self.config = cfg.model
        self.pooled = settings.experts.enabled  # expert ids then differ between engines
        self.champion = champion
        self.metrics = metrics
        self.endpoints = endpoints
        self.publish = publish
        self.guard = guard  # told of each promotion: its candidate is no longer served
        self.judge = ChallengerJudge(cfg.window, cfg.margin, cfg.confidence)
        self.engine: Engine | None = None
        if self.enabled:
            model = ModelSettings.model_validate({**settings.model.model_dump(), **cfg.model})
            self.engine = Engine(
                model, settings.engine, settings.drift, settings.experts, settings.adapt
            )
        self.promotions = 0
        self.events: list[dict[str, Any]] = []

    def shadow(self, chunk: Sequence[Sample]) -> dict[str, Label | None]:
        """The challenger's step on what the champion just learned; its answers to the
        chunk's unlabeled samples, by id."""
        if self.engine is None:
            return {}
        result = self.engine.process(chunk)
        return {p.id: p.prediction for p in result.predictions if p.id is not None}

    def adapt(self, rows: list[list[float]]) -> None:
        """Served rows the champion adapted on (``adapt.on_requests``): the challenger too."""
        if self.engine is not None:
            self.engine.adapt(rows)

    def forget(self, samples: list[Sample], expert: str) -> None:
        """Samples the champion's ``expert`` unlearned (``POST /v1/forget``): the
        challenger's same expert too where the two provably correspond, else the
        challenger is rebuilt from the champion's state, which no longer holds them."""
        if self.engine is None:
            return
        if not self._corresponds(expert):
            self._rebuild("experts do not correspond")
            return
        try:
            self.engine.forget(samples, expert)
        except ModelError as exc:
            self._rebuild(str(exc))

    def _corresponds(self, expert: str) -> bool:
        # Ids name different experts in two pools that spawn and switch on their own
        # drifts; only pools that never do (one expert each, learning every step the
        # champion learns) hold the champion's expert under the same id.
        assert self.engine is not None
        pool = self.engine.pool
        return not self.pooled and pool is not None and expert in pool.members

    def _rebuild(self, reason: str) -> None:
        """The challenger restarts from the champion's state (its own configuration kept)
        and its open block starts over: no promotion before a full block of the rebuilt
        challenger's answers. A forgotten sample left in its head could be promoted back."""
        assert self.engine is not None
        self.engine.load_state_dict(copy.deepcopy(self.champion.state_dict()))
        self.judge.restart()
        log.warning("challenger_rebuilt", reason=reason, version=self.engine.version)

    def answer(self, rows: list[list[float]]) -> list[Label | None]:
        """The challenger's answers to rows serving answered (None: nothing learned yet)."""
        if self.engine is None or self.engine.pool is None or not self.engine.labels.labels:
            return [None] * len(rows)
        out = self.engine.predictor().predict(torch.tensor(rows, dtype=torch.float32))
        return list(out.predictions)

    def scored(self, champion_right: bool, challenger_right: bool) -> None:
        block = self.judge.add(champion_right, challenger_right)
        if self.judge.last is not None and self.judge.n == 0:
            self._gauges(self.judge.last)
        if block is not None:
            self._promote(block)

    def _promote(self, block: PairedBlock) -> None:
        assert self.engine is not None
        restored = restore_into(self.champion, copy.deepcopy(self.engine.state_dict()))
        self.promotions += 1
        self.judge.restart()
        if self.guard is not None:
            self.guard.promoted()
        self.metrics.promotions.inc()
        payload = {**_figures(block), "challenger_version": restored}
        payload["model_version"] = self.champion.version
        announce(self.endpoints, self.events, "challenger_promoted", payload)
        self.publish()

    def _gauges(self, block: PairedBlock) -> None:
        self.metrics.challenger_accuracy.labels(role="champion").set(block.champion)
        self.metrics.challenger_accuracy.labels(role="challenger").set(block.challenger)

    def view(self) -> dict[str, Any] | None:
        """The challenger's entry of ``/v1/models`` (JSON-safe); None when off."""
        if self.engine is None:
            return None
        last = self.judge.last
        return {
            "config": self.config,
            "version": self.engine.version,
            "open_block": _figures(self.judge.block()),
            "last_block": None if last is None else _figures(last),
            "promotions": self.promotions,
            "events": self.events[-10:],
        }

    # -- checkpoints -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any] | None:
        if self.engine is None:
            return None
        return {
            "engine": self.engine.state_dict(),
            "judge": self.judge.state_dict(),
            "promotions": self.promotions,
        }

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.engine is None or state is None:
            return
        try:
            self.engine.load_state_dict(state["engine"])
        except (RuntimeError, KeyError, ValueError) as exc:  # its config changed
            log.warning("challenger_state_dropped", error=str(exc))
            return
        self.judge.load_state_dict(state["judge"])
        self.promotions = int(state["promotions"])


def _figures(block: PairedBlock) -> dict[str, Any]:
    return {
        "pairs": block.pairs,
        "champion_accuracy": round(block.champion, 4),
        "challenger_accuracy": round(block.challenger, 4),
        "only_challenger_right": block.only_challenger,
        "only_champion_right": block.only_champion,
        "difference_lower_bound": round(block.lower_bound, 4),
    }
