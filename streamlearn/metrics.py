"""Every Prometheus metric streamlearn exports, defined once.

Each daemon owns a :class:`Metrics` with its own registry, so tests can run several daemons
in one process without metrics bleeding between them. docs/operations.md lists them all.
"""

from __future__ import annotations

import platform
import threading
import time

import torch
from prometheus_client import (
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
    start_http_server,
)

from streamlearn._version import __version__

_LATENCY_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0)
_CHECKPOINT_BUCKETS = (1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The learner's Prometheus metrics, in a registry of its own.

    One per daemon, so daemons in one process (tests) never share counts.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.records_consumed = Counter(
            "streamlearn_records_consumed", "Records polled from Kafka.", ["topic"], registry=r
        )
        self.records_invalid = Counter(
            "streamlearn_records_invalid",
            "Records or samples that could not be used, sent to the dead-letter topic.",
            ["reason"],
            registry=r,
        )
        self.samples_learned = Counter(
            "streamlearn_samples_learned",
            "Labeled samples learned (one optimizer step each batch).",
            registry=r,
        )
        self.predictions = Counter(
            "streamlearn_predictions", "Predictions made.", ["kind"], registry=r
        )
        # Right answers among the prequential ones: summed over replicas, over the summed
        # prequential predictions, it is a group's accuracy (each replica's gauge is its own).
        self.prequential_correct = Counter(
            "streamlearn_prequential_correct",
            "Prequential (labeled) predictions that were right, classifiers only.",
            registry=r,
        )
        self.learn_latency = Histogram(
            "streamlearn_learn_latency_seconds",
            "Time to predict, score and learn one micro-batch.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "streamlearn_batch_samples",
            "Samples per micro-batch.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=r,
        )
        self.prequential_accuracy = Gauge(
            "streamlearn_prequential_accuracy", "Test-then-train accuracy.", ["window"], registry=r
        )
        self.prequential_loss = Gauge(
            "streamlearn_prequential_loss", "Test-then-train loss.", ["window"], registry=r
        )
        self.prequential_mae = Gauge(
            "streamlearn_prequential_mae",
            "Test-then-train mean absolute error (regression).",
            ["window"],
            registry=r,
        )
        self.checkpoint_duration = Histogram(
            "streamlearn_checkpoint_duration_seconds",
            "Time to write one checkpoint durably.",
            buckets=_CHECKPOINT_BUCKETS,
            registry=r,
        )
        self.checkpoints = Counter(
            "streamlearn_checkpoints", "Checkpoint attempts by result.", ["result"], registry=r
        )
        self.checkpoint_fallbacks = Counter(
            "streamlearn_checkpoint_fallbacks",
            "Checkpoint files skipped on load because they were torn or corrupt.",
            registry=r,
        )
        self.checkpoint_bytes = Gauge(
            "streamlearn_checkpoint_bytes", "Size of the newest checkpoint.", registry=r
        )
        self.checkpoint_age = Gauge(
            "streamlearn_checkpoint_age_seconds",
            "Seconds since the last durable checkpoint.",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "streamlearn_consumer_lag",
            "Records in the partition not yet learned.",
            ["topic", "partition"],
            registry=r,
        )
        self.partitions_paused = Gauge(
            "streamlearn_partitions_paused",
            "1 while input is paused because the learner is behind.",
            registry=r,
        )
        self.batch_target = Gauge(
            "streamlearn_batch_target_samples",
            "The learning step's batch size now: engine.max_batch, more while behind.",
            registry=r,
        )
        self.buffered_samples = Gauge(
            "streamlearn_buffered_samples", "Samples decoded and waiting to be learned.", registry=r
        )
        self.sink_errors = Counter(
            "streamlearn_sink_errors",
            "Output records that failed to land and were retried.",
            ["topic"],
            registry=r,
        )
        self.outputs_pending = Gauge(
            "streamlearn_outputs_pending",
            "Outputs that failed to land, waiting to be sent "
            "again; input pauses at kafka.max_pending_outputs.",
            registry=r,
        )
        self.outputs_dropped = Counter(
            "streamlearn_outputs_dropped",
            "Outputs that can never land (too large for the "
            "producer or the broker), dropped instead of retried for ever.",
            ["topic", "reason"],
            registry=r,
        )
        self.outputs_truncated = Counter(
            "streamlearn_outputs_truncated",
            "Dead letters sent with their value cut to fit "
            "kafka.max_message_bytes (header truncated=true).",
            ["topic"],
            registry=r,
        )
        self.rebalances = Counter(
            "streamlearn_rebalances", "Partition assignment changes.", ["kind"], registry=r
        )
        self.model_version = Gauge(
            "streamlearn_model_version",
            "Weight changes so far: optimizer steps on labeled "
            "samples plus test-time adaptation steps and resets.",
            registry=r,
        )
        self._drift(r)
        self._experts(r)
        self._adapt(r)
        self._guard(r)
        self._serving(r)
        self._labels(r)
        self.info = Info("streamlearn", "Build and runtime information.", registry=r)
        self.info.info(
            {
                "version": __version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
            }
        )
        self._last_checkpoint = time.monotonic()
        self.checkpoint_age.set_function(lambda: time.monotonic() - self._last_checkpoint)
        if registry is None:
            r.register(PROCESS_COLLECTOR)
            r.register(PLATFORM_COLLECTOR)

    def _drift(self, r: CollectorRegistry) -> None:
        self.drift_events = Counter(
            "streamlearn_drift_events",
            "Drifts detected in an expert's losses.",
            ["detector", "expert"],
            registry=r,
        )
        self.drift_warnings = Counter(
            "streamlearn_drift_warnings",
            "Times a drift test passed its warning level.",
            ["detector", "expert"],
            registry=r,
        )
        self.drift_statistic = Gauge(
            "streamlearn_drift_statistic",
            "Drift test statistic over its threshold: 0 calm, "
            "1 drift (0 during warm-up and refractory).",
            ["detector", "expert"],
            registry=r,
        )
        self.input_shift_events = Counter(
            "streamlearn_input_shift_events",
            "Changes of domain detected in the input rows (drift.input_shift), labels or not.",
            registry=r,
        )
        self.input_shift_statistic = Gauge(
            "streamlearn_input_shift_statistic",
            "Input-shift test statistic over its threshold: 0 calm, 1 shift (0 during warm-up).",
            registry=r,
        )

    def _experts(self, r: CollectorRegistry) -> None:
        self.expert_events = Counter(
            "streamlearn_expert_events",
            "Decisions of the expert pool: switch (a regime came "
            "back), spawn, keep (the drift passed), prune, merge.",
            ["kind"],
            registry=r,
        )
        self.expert_active = Gauge(
            "streamlearn_expert_active",
            "1 for the expert learning now, 0 for the others.",
            ["expert"],
            registry=r,
        )
        self.experts_alive = Gauge("streamlearn_experts_alive", "Experts in the pool.", registry=r)
        self.expert_accuracy = Gauge(
            "streamlearn_expert_accuracy",
            "Prequential accuracy of each expert's answers, over about its last 1000.",
            ["expert"],
            registry=r,
        )
        self.expert_loss = Gauge(
            "streamlearn_expert_loss",
            "Each expert's loss while it learned: the mean of its "
            "normal band (about its last 500 losses as the active expert).",
            ["expert"],
            registry=r,
        )
        self.head_forgetting = Gauge(
            "streamlearn_head_forgetting",
            "The Kalman head's forgetting per sample, learned online (model.head: kalman): "
            "it falls when the expert's residuals outgrow what its filter predicted.",
            ["expert"],
            registry=r,
        )
        self.selector_accuracy = Gauge(
            "streamlearn_selector_accuracy",
            "How often the selector routes a labeled sample to the expert that then learns it.",
            ["window"],
            registry=r,
        )
        self.expert_memory = Gauge(
            "streamlearn_expert_memory_bytes",
            "Memory held by the pool: expert weights and "
            "optimizer state, replay buffers, the selector and its pairs, and test-time "
            "adaptation state.",
            ["part"],
            registry=r,
        )

    def _adapt(self, r: CollectorRegistry) -> None:
        self.tta_adapted = Counter(
            "streamlearn_tta_adapted_samples",
            "Unlabeled samples test-time adaptation learned from.",
            registry=r,
        )
        self.tta_skipped = Counter(
            "streamlearn_tta_skipped_samples",
            "Unlabeled samples the entropy filter kept out of adaptation (too uncertain to teach).",
            registry=r,
        )
        self.tta_resets = Counter(
            "streamlearn_tta_resets",
            "Experts put back to their last labeled state: entropy, "
            "marginal or guard_set collapse, or periodic.",
            ["reason"],
            registry=r,
        )
        self.tta_entropy = Gauge(
            "streamlearn_tta_prediction_entropy",
            "Mean prediction entropy (0..1 of its maximum) of the latest adaptation batch.",
            registry=r,
        )

    def _guard(self, r: CollectorRegistry) -> None:
        """What kept hostile or broken input from poisoning the model."""
        self.steps_skipped = Counter(
            "streamlearn_steps_skipped",
            "Learning steps skipped (a non-finite loss or "
            "gradient) or undone (non-finite weights after the step), by reason: loss, "
            "gradient, weights; features, covariance for the closed-form heads' solvers; "
            "selector_<reason> for the routing network.",
            ["reason"],
            registry=r,
        )
        self.classes_recycled = Counter(
            "streamlearn_classes_recycled",
            "Class slots handed to a new label because every "
            "slot was taken and the old class was learned fewer than "
            "model.rare_class_samples times.",
            registry=r,
        )

    def _serving(self, r: CollectorRegistry) -> None:
        """The learner's side of serving: snapshots it publishes, requests it was handed."""
        self.snapshot_publishes = Counter(
            "streamlearn_snapshot_publishes",
            "Serving snapshots built, by result.",
            ["result"],
            registry=r,
        )
        self.learn_queue_samples = Gauge(
            "streamlearn_learn_queue_samples",
            "Samples from POST /v1/learn waiting for the learner.",
            registry=r,
        )

    def _labels(self, r: CollectorRegistry) -> None:
        """Late labels joined by id, the live accuracy of what was served, the guard."""
        self.served_accuracy = Gauge(
            "streamlearn_served_accuracy",
            "Accuracy of the answers given to unlabeled samples, scored when their late "
            "label joined, over the last N joins (window).",
            ["window"],
            registry=r,
        )
        self.served_joins = Counter(
            "streamlearn_served_joins",
            "Late labels joined to the sample they label, by the expert that answered and "
            "whether the answer was right (regression: scored).",
            ["expert", "result"],
            registry=r,
        )
        self.label_outcomes = Counter(
            "streamlearn_label_outcomes",
            "What became of pending samples and late labels that did not join: expired, "
            "unknown, evicted_sample, evicted_label, replaced.",
            ["outcome"],
            registry=r,
        )
        self.label_delay = Histogram(
            "streamlearn_label_delay_seconds",
            "Event time from a sample to its label, per join (0 when the label came first), "
            "by the expert that answered the sample.",
            ["expert"],
            buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400),
            registry=r,
        )
        self.pending_labels = Gauge(
            "streamlearn_pending_labels",
            "Unlabeled samples waiting for their label (samples), and labels waiting for "
            "their sample (labels).",
            ["area"],
            registry=r,
        )
        self.pending_labels_bytes = Gauge(
            "streamlearn_pending_labels_bytes",
            "Estimated memory of the samples and labels waiting to join.",
            registry=r,
        )
        self.served_error = Gauge(
            "streamlearn_served_error",
            "Regression: mean absolute error of the answers given to unlabeled samples, "
            "scored when their late label joined, over the last N joins (window).",
            ["window"],
            registry=r,
        )
        self.promotions = Counter(
            "streamlearn_promotions",
            "Challenger promoted: its state moved into the served model (labels.challenger).",
            registry=r,
        )
        self.challenger_accuracy = Gauge(
            "streamlearn_challenger_accuracy",
            "Accuracy of the champion's and the challenger's answers to the same samples, "
            "over the last full block of paired late labels (role).",
            ["role"],
            registry=r,
        )
        self.rollbacks = Counter(
            "streamlearn_rollbacks",
            "Served model (and learner) rolled back to the last good state by the guard.",
            registry=r,
        )
        self.guard_holding = Gauge(
            "streamlearn_guard_holding",
            "1 while the guard holds the rolled-back model (joined labels not learned).",
            registry=r,
        )
        self._sync_metrics(r)

    def _sync_metrics(self, r: CollectorRegistry) -> None:
        """Scale-out (docs/scaling.md): each replica exports its own, labelled by its rank."""
        self.sync_rounds = Counter(
            "streamlearn_sync_rounds", "Sync rounds this replica took part in.", registry=r
        )
        self.sync_duration = Histogram(
            "streamlearn_sync_duration_seconds",
            "Time of one sync round: broadcast, all-reduce and loading the averaged state.",
            buckets=_CHECKPOINT_BUCKETS,
            registry=r,
        )
        self.sync_bytes = Gauge(
            "streamlearn_sync_bytes",
            "Bytes this replica sent or received in the last round (template + averaged vector).",
            registry=r,
        )
        self.sync_divergence = Gauge(
            "streamlearn_sync_divergence",
            "RMS distance of this replica's expert weights from the group's mean, before the "
            "last round (how far replicas drift apart between rounds).",
            registry=r,
        )
        self.sync_round = Gauge(
            "streamlearn_sync_round",
            "The last sync round (= coordinated checkpoint id).",
            registry=r,
        )
        self.sync_rank = Gauge(
            "streamlearn_sync_rank", "This replica's rank in its generation.", registry=r
        )
        self.sync_members = Gauge(
            "streamlearn_sync_members",
            "Replicas in this replica's generation of the group: below "
            "streamlearn_sync_world_size while one that left has not come back.",
            registry=r,
        )
        self.sync_world_size = Gauge(
            "streamlearn_sync_world_size",
            "The group's full size (sync.world_size or WORLD_SIZE).",
            registry=r,
        )
        self.sync_dropped = Counter(
            "streamlearn_sync_dropped",
            "Local tensors dropped at a round because the deciding replica's pool lacks them "
            "(an expert spawned only here).",
            registry=r,
        )
        self.sync_lost = Counter(
            "streamlearn_sync_lost",
            "Times this replica's generation of the group ended (a dead peer or store, or a "
            "last round as a replica left or joined): the learner exits, rejoins and "
            "restores the group's newest checkpoint.",
            registry=r,
        )
        self._last_sync = time.monotonic()
        self.sync_lag = Gauge(
            "streamlearn_sync_lag_seconds", "Seconds since the last sync round.", registry=r
        )
        self.sync_lag.set_function(lambda: time.monotonic() - self._last_sync)

    def sync_done(self, round_: int, seconds: float, nbytes: int, divergence: float) -> None:
        self._last_sync = time.monotonic()
        self.sync_rounds.inc()
        self.sync_round.set(round_)
        self.sync_duration.observe(seconds)
        self.sync_bytes.set(nbytes)
        self.sync_divergence.set(divergence)

    def checkpoint_done(self) -> None:
        self._last_checkpoint = time.monotonic()

    def forget_expert(self, expert: str) -> None:
        """Drop every series of an expert that left the pool: a gone expert must not keep
        its last values on dashboards and in alerts for ever."""
        for metric in (
            self.expert_active,
            self.expert_accuracy,
            self.expert_loss,
            self.head_forgetting,
            self.drift_events,
            self.drift_warnings,
            self.drift_statistic,
        ):
            _forget(metric, expert=expert)

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop the series of a partition this member no longer owns (its lag is the new
        owner's to report; a frozen one here would fire stalled-learner alerts)."""
        _forget(self.consumer_lag, topic=topic, partition=str(partition))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, host: str, port: int) -> tuple[int, threading.Thread]:
        """Expose ``/metrics`` on a background thread; returns the bound port."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port), thread


def _forget(metric: Counter | Gauge, **match: str) -> None:
    """Remove every labelled series of ``metric`` whose labels include ``match``."""
    found = set()
    for family in metric.collect():
        for sample in family.samples:
            if all(sample.labels.get(k) == v for k, v in match.items()):
                found.add(tuple(sample.labels.values()))
    for values in found:
        metric.remove(*values)


class ServingMetrics:
    """What serving processes count, summed or combined across all of them.

    Serving runs in ``serve.workers`` processes that come and go, so these live in
    prometheus-client's multiprocess mode (values in files under ``PROMETHEUS_MULTIPROC_DIR``,
    set by the parent before a serving process starts): counters and histograms add up over
    every process that ever served, gauges say how each is combined. The learner's metrics
    (:class:`Metrics`) stay in the learner's own registry; ``/metrics`` shows both.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry or CollectorRegistry()
        self.registry = r
        self.requests = Counter(
            "streamlearn_requests",
            "Serving requests answered, by transport, endpoint "
            "(route template or gRPC method) and status code.",
            ["transport", "endpoint", "code"],
            registry=r,
        )
        self.request_latency = Histogram(
            "streamlearn_request_latency_seconds",
            "Time to answer one serving request.",
            ["transport", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.requests_rejected = Counter(
            "streamlearn_requests_rejected",
            "Serving requests refused, by reason.",
            ["transport", "reason"],
            registry=r,
        )
        self.requests_in_flight = Gauge(
            "streamlearn_requests_in_flight",
            "Serving requests being answered now, over all serving processes.",
            ["transport"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.served_model_version = Gauge(
            "streamlearn_served_model_version",
            "Model version of the snapshot being served (the oldest any serving process holds).",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.snapshot_age = Gauge(
            "streamlearn_snapshot_age_seconds",
            "Seconds since the served snapshot was last "
            "known to match the learner (the largest over serving processes).",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.serving_ready = Gauge(
            "streamlearn_serving_ready",
            "1 while every serving process answers ready.",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.learner_up = Gauge(
            "streamlearn_learner_up",
            "1 while every serving process is connected to the "
            "learner; 0 while the learner is down or restarting (serving is not ready then).",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.tta_rows_dropped = Counter(
            "streamlearn_tta_request_rows_dropped",
            "Served rows not adapted on because the "
            "queue to the learner was full or the learner was down (adapt.on_requests).",
            registry=r,
        )
        self.served_rows_dropped = Counter(
            "streamlearn_served_rows_dropped",
            "Served rows with an id not kept for their late label (labels.served_ids): "
            "backlog (serving's queue), queue_full (the learner's), learner_down, bad_id.",
            ["reason"],
            registry=r,
        )
        self.serving_processes = Gauge(
            "streamlearn_serving_processes",
            "Serving processes alive.",
            registry=r,
            multiprocess_mode="livesum",
        )
