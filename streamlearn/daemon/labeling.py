"""Late labels in the daemon: label records in, joins learned, what was served scored.

The consumer reads ``kafka.labels_topic`` beside the input topic. A label record is handled
as soon as it is polled (its effect is the store's state, which the checkpoint holds with
the record's offset); a sample record when its micro-batch is learned. So either half may
come first, and a checkpoint taken between them holds the one that came, with both topics'
offsets: a restart replays the rest and makes the join once.

A join scores the answer given back then (``streamlearn_served_accuracy``) and hands the
sample, now labeled, back to the loop to learn like any labeled sample.
"""

from __future__ import annotations

import json
import time
from typing import Any

from streamlearn.core.codecs import Codec
from streamlearn.core.engine import StepResult
from streamlearn.core.errors import CodecError
from streamlearn.core.labels import (
    Join,
    JoinStore,
    Pending,
    ServedAccuracy,
    decode_label,
    served_right,
)
from streamlearn.core.logging import get_logger
from streamlearn.core.types import DeadLetter, Label, Record, Sample
from streamlearn.daemon.challenging import ChallengerKeeper
from streamlearn.daemon.guarding import GuardKeeper
from streamlearn.metrics import Metrics
from streamlearn.settings import Settings

log = get_logger(__name__)

Origin = tuple[Record, int | None]

_GAUGES_EVERY_S = 0.5


class LateLabels:
    """The join store, fed by label records and by the answers the engine gives."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        codec: Codec,
        guard: GuardKeeper | None = None,
        challenger: ChallengerKeeper | None = None,
    ) -> None:
        cfg = settings.labels
        self.enabled = cfg.enabled
        self.topic = settings.kafka.labels_topic
        self.metrics = metrics
        self.codec = codec
        self.guard = guard  # judges each served answer; may hold a joined sample back
        self.challenger = challenger  # answers the same samples; scored in pairs
        self.is_classifier = settings.model.task == "classification"
        self.store = JoinStore(cfg.ttl_s, cfg.max_pending, cfg.max_waiting)
        # Classification: 1/0 per join (right/wrong); regression: the absolute error.
        self.served = ServedAccuracy(cfg.windows)
        # Where a joined sample's dead letter points: the labels topic (its value is the
        # sample's own JSON, ``Sample.raw``).
        self.origin = Record(self.topic, -1, -1, b"")
        self.joins = 0
        self._last_gauges = 0.0

    def is_label(self, record: Record) -> bool:
        return self.enabled and record.topic == self.topic

    def take(self, records: list[Record]) -> tuple[list[Sample], list[Origin], list[DeadLetter]]:
        """Label records: each joins its sample (returned, to learn) or waits for it."""
        samples: list[Sample] = []
        origins: list[Origin] = []
        dead: list[DeadLetter] = []
        for record in records:
            try:
                label = decode_label(self.codec, record.value)
            except CodecError as exc:
                dead.append(DeadLetter(record.value, exc.reason, exc.detail, record))
                continue
            join = self.store.labeled(label.id, label.y, _event_time(record, None))
            if join is not None and (sample := self._joined(join)) is not None:
                samples.append(sample)
                origins.append((record, None))
        self._outcomes()
        return samples, origins, dead

    def answered(
        self,
        chunk: list[Sample],
        result: StepResult,
        origins: list[Origin],
        rivals: dict[str, Label | None] | None = None,
    ) -> list[Sample]:
        """The engine answered ``chunk``'s unlabeled samples: those with an id wait for
        their label, or join the label that came first (returned, to learn). ``rivals``:
        the challenger's answers to the same samples, by id."""
        if not self.enabled or not result.predictions:
            return []
        refused = {r.index for r in result.rejections}
        answered = [i for i, s in enumerate(chunk) if s.y is None and i not in refused]
        joined: list[Sample] = []
        for i, prediction in zip(answered, result.predictions, strict=False):
            sample = chunk[i]
            if sample.id is None or prediction.id != sample.id:
                continue
            entry = Pending(
                sample.x,
                prediction.prediction,
                prediction.model_version,
                prediction.expert,
                _event_time(origins[i][0], sample.ts),
                sample.task,
                (rivals or {}).get(sample.id),
            )
            join = self.store.predicted(sample.id, entry)
            if join is not None and (labeled := self._joined(join)) is not None:
                joined.append(labeled)
        self._outcomes()
        return joined

    def from_serving(self, rows: list[dict[str, Any]]) -> list[Sample]:
        """Rows a serving process answered for a request with an id (``labels.served_ids``):
        each waits for its label, or joins the label that came first (returned, to learn)."""
        if not self.enabled:
            return []
        joined: list[Sample] = []
        rivals = (
            self.challenger.answer([row["x"] for row in rows])
            if self.challenger is not None
            else [None] * len(rows)
        )
        for row, rival in zip(rows, rivals, strict=True):
            entry = Pending(
                [float(v) for v in row["x"]],
                row["prediction"],
                int(row["version"]),
                str(row["expert"]),
                float(row["ts"]),
                challenger=rival,
            )
            join = self.store.predicted(str(row["id"]), entry)
            if join is not None and (labeled := self._joined(join)) is not None:
                joined.append(labeled)
        self._outcomes()
        return joined

    def _joined(self, join: Join) -> Sample | None:
        """Score the answer served then; the sample, labeled, to learn (None: the guard
        holds it back)."""
        self.joins += 1
        learn = True
        if self.is_classifier:
            right = served_right(join.prediction, join.y)
            self.served.add(right)
            result = "right" if right else "wrong"
            if self.guard is not None:
                learn = self.guard.scored(right)
            self._pair(join, right, learn)
        else:
            result = "scored"
            self.served.add(_absolute_error(join.prediction, join.y))
        self.metrics.served_joins.labels(expert=join.expert, result=result).inc()
        self.metrics.label_delay.labels(expert=join.expert).observe(join.delay_s)
        if not learn:
            self.metrics.label_outcomes.labels(outcome="held").inc()
            return None
        raw = json.dumps({"x": join.x, "y": join.y, "id": join.id})
        return Sample(join.x, join.y, join.id, join.task, raw=raw)

    def _pair(self, join: Join, right: bool, learn: bool) -> None:
        """Score the challenger's answer beside the champion's. Not while the guard holds a
        rollback: the labels then are the damage (a challenger that learned it agrees with
        them and would look better than the good model); the open block restarts."""
        if self.challenger is None or join.challenger is None:
            return
        if not learn:
            self.challenger.judge.restart()
            return
        self.challenger.scored(right, served_right(join.challenger, join.y))

    def _outcomes(self) -> None:
        out = self.store.take_outcomes()
        if not out.total():
            return
        for name, count in (
            ("expired", out.expired),
            ("unknown", out.unknown),
            ("evicted_sample", out.evicted_pending),
            ("evicted_label", out.evicted_waiting),
            ("replaced", out.replaced),
        ):
            if count:
                self.metrics.label_outcomes.labels(outcome=name).inc(count)

    def update_gauges(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last_gauges < _GAUGES_EVERY_S):
            return
        self._last_gauges = now
        self.metrics.pending_labels.labels(area="samples").set(len(self.store.pending))
        self.metrics.pending_labels.labels(area="labels").set(len(self.store.waiting))
        self.metrics.pending_labels_bytes.set(self.store.nbytes())
        gauge = self.metrics.served_accuracy if self.is_classifier else self.metrics.served_error
        for window in self.served.windows:
            score = self.served.accuracy(window)
            if score is not None:
                gauge.labels(window=str(window)).set(score)

    def view(self) -> dict[str, Any] | None:
        """Live scores of what was served, for ``/v1/models`` (JSON-safe)."""
        if not self.enabled:
            return None
        guard = self.guard
        scores = {str(w): self.served.accuracy(w) for w in self.served.windows}
        return {
            "served_accuracy" if self.is_classifier else "served_mean_abs_error": scores,
            "joins": self.served.joins if self.is_classifier else self.joins,
            "pending_samples": len(self.store.pending),
            "waiting_labels": len(self.store.waiting),
            "guard": None
            if guard is None or not guard.enabled
            else {
                "holding": guard.guard.holding,
                "good_accuracy": guard.guard.good_level,
                "rollbacks": guard.rollbacks,
                "events": guard.events[-10:],
            },
            "challenger": None if self.challenger is None else self.challenger.view(),
        }

    # -- checkpoints -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        return {
            "store": self.store.state_dict(),
            "served": self.served.state_dict(),
            "guard": None if self.guard is None else self.guard.state_dict(),
            "challenger": None if self.challenger is None else self.challenger.state_dict(),
        }

    def restored(self) -> dict[str, int]:
        """What the restored store holds, for the ``checkpoint_restored`` log line."""
        if not self.enabled:
            return {}
        return {
            "pending_samples": len(self.store.pending),
            "waiting_labels": len(self.store.waiting),
        }

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if not self.enabled or state is None:
            return
        self.store.load_state_dict(state["store"])
        self.served.load_state_dict(state["served"])
        # Absent from checkpoints written before the guard and the challenger were kept.
        if self.guard is not None:
            self.guard.load_state_dict(state.get("guard"))
        if self.challenger is not None:
            self.challenger.load_state_dict(state.get("challenger"))
        self.update_gauges(force=True)


def _absolute_error(prediction: Label | None, y: Label) -> float:
    """Regression: how far the answer served was (no answer yet: the label's own size)."""
    return abs(float(y) - float(prediction if prediction is not None else 0.0))


def _event_time(record: Record, fallback: float | None) -> float:
    """A record's Kafka timestamp (seconds); the sample's own ``ts``, or now, without one."""
    if record.timestamp_ms is not None and record.timestamp_ms >= 0:
        return record.timestamp_ms / 1000
    return fallback if fallback is not None else time.time()
