"""Gauges and progress: what the daemon has done so far, for Prometheus and for other threads.

The learner refreshes the gauges at most every half second, and with them
:class:`Progress`, a frozen value replaced by one reference assignment, so any thread may
read it without a lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamlearn.core.engine import Engine
from streamlearn.daemon.buffer import InputBuffer
from streamlearn.daemon.checkpointer import Checkpointer
from streamlearn.daemon.endpoints import Endpoints
from streamlearn.daemon.reporting import Reporter
from streamlearn.metrics import Metrics
from streamlearn.settings import Settings

_GAUGE_INTERVAL_S = 0.5


@dataclass(frozen=True, slots=True)
class Progress:
    """What the daemon has done so far; replaced whole, safe to read from any thread."""

    samples_learned: int = 0
    samples_predicted: int = 0
    records_consumed: int = 0
    records_invalid: int = 0
    model_version: int = 0
    accuracy: float = float("nan")  # rolling window
    loss: float = float("nan")
    mae: float = float("nan")
    checkpoints: int = 0
    lag: int = 0
    paused: bool = False
    connected: bool = False  # the source is up (False while the broker is unreachable)
    drifts: int = 0  # drifts detected since start
    last_drift_sample: int | None = None  # stream position of the latest
    active_expert: str | None = None
    experts: int = 0  # alive in the pool
    spawns: int = 0  # pool decisions since start
    switches: int = 0
    adapt_method: str = "none"  # in force ("auto" resolved once the network exists)
    adapted: int = 0  # unlabeled samples test-time adaptation learned from, since start
    adapt_resets: int = 0
    # Late labels: live accuracy of what was served, the guard (None when labels are off).
    served: dict[str, Any] | None = None


class Gauges:
    """Sets the engine's, the pool's and the consumer's gauges and publishes :class:`Progress`.

    Reads the offsets and checkpoint count from the checkpointer and the counts from the
    reporter; ``paused`` (flow control) is the learner loop's and comes with each call.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        engine: Engine,
        buffer: InputBuffer,
        endpoints: Endpoints,
        checkpointer: Checkpointer,
        reporter: Reporter,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.engine = engine
        self.buffer = buffer
        self.endpoints = endpoints
        self.checkpointer = checkpointer
        self.reporter = reporter
        # Late labels' view for /v1/models (set by the daemon that has them).
        self.served_view: Callable[[], dict[str, Any] | None] = lambda: None
        self.progress = Progress()
        self.last_update = 0.0  # monotonic time the gauges were last set

    def maybe_update(self, paused: bool) -> None:
        now = time.monotonic()
        if now - self.last_update < _GAUGE_INTERVAL_S:
            return
        self.last_update = now
        stats = self.engine.stats
        for window, read in (("rolling", stats.rolling), ("cumulative", stats.cumulative)):
            self.metrics.prequential_loss.labels(window=window).set(read("loss"))
            if self.engine.is_classifier:
                self.metrics.prequential_accuracy.labels(window=window).set(read("correct"))
            else:
                self.metrics.prequential_mae.labels(window=window).set(read("abs_error"))
        self.metrics.model_version.set(self.engine.version)
        if self.engine.drift is not None:
            detector = self.settings.drift.detector
            for expert, value in self.engine.drift.statistics().items():
                self.metrics.drift_statistic.labels(detector=detector, expert=expert).set(value)
        if self.engine.input_watch is not None:
            self.metrics.input_shift_statistic.set(self.engine.input_watch.statistic)
        self._expert_gauges()
        self.metrics.buffered_samples.set(self.buffer.samples)
        self.publish_progress(paused)

    def _expert_gauges(self) -> None:
        pool = self.engine.pool
        if pool is None:
            return
        self.metrics.experts_alive.set(len(pool.members))
        for id_, member in pool.members.items():
            self.metrics.expert_active.labels(expert=id_).set(int(id_ == pool.active_id))
            if member.accuracy == member.accuracy:  # NaN until it answered
                self.metrics.expert_accuracy.labels(expert=id_).set(member.accuracy)
            if member.band.ready:
                self.metrics.expert_loss.labels(expert=id_).set(member.band.mean)
            forgetting = getattr(member.expert, "forgetting", None)  # a Kalman head's
            if forgetting is not None:
                self.metrics.head_forgetting.labels(expert=id_).set(forgetting)
        rolling, cumulative = pool.selector.accuracy
        self.metrics.selector_accuracy.labels(window="rolling").set(rolling)
        self.metrics.selector_accuracy.labels(window="cumulative").set(cumulative)
        for part, size in pool.nbytes().items():
            self.metrics.expert_memory.labels(part=part).set(size)
        if self.engine.adapter is not None:
            self.metrics.expert_memory.labels(part="adapt").set(self.engine.adapter.nbytes())

    def _lag(self) -> int:
        source = self.endpoints.source
        assert source is not None
        total = 0
        for tp, position in self.checkpointer.positions.items():
            high = source.highwater(tp)
            if high is not None:
                lag = max(0, high - position)
                self.metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(
                    lag
                )
                total += lag
        return total

    def publish_progress(self, paused: bool) -> None:
        stats = self.engine.stats
        counts = self.reporter.counts
        connected = self.endpoints.source is not None
        self.progress = Progress(
            samples_learned=self.engine.samples_learned,
            samples_predicted=self.engine.samples_predicted,
            records_consumed=counts["consumed"],
            records_invalid=counts["invalid"],
            model_version=self.engine.version,
            accuracy=stats.rolling("correct"),
            loss=stats.rolling("loss"),
            mae=stats.rolling("abs_error"),
            checkpoints=self.checkpointer.checkpoints,
            lag=self._lag() if connected else 0,
            paused=paused,
            connected=connected,
            drifts=self.reporter.drifts,
            last_drift_sample=self.reporter.last_drift_sample,
            active_expert=self.engine.pool.active_id if self.engine.pool else None,
            experts=len(self.engine.pool.members) if self.engine.pool else 0,
            spawns=counts["expert_spawn"],
            switches=counts["expert_switch"],
            adapt_method=self.engine.adapt_method,
            adapted=counts["adapted"],
            adapt_resets=counts["adapt_resets"],
            served=self.served_view(),
        )
