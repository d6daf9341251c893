"""The learning step: batch -> predict -> score -> learn, and predictions for unlabeled data.

Prequential (test-then-train): every labeled sample is predicted with the model as it was
before the sample, scored, and only then learned. Scaling follows the same rule for the
prediction: a batch is scaled with the statistics from before it. The statistics then take
the batch's labeled rows in and the learning step sees it scaled with them, so the very
first batches (when the statistics know nothing yet) never reach the network unscaled.
Unlabeled rows never move the statistics: they change the model only through test-time
adaptation (``adapt/``), behind its guards.

Nothing non-finite reaches the model: rows whose values are not finite in float32 are
refused on the way in, labeled rows whose loss is not finite (an output that overflows) are
refused before they are scored or learned (``non_finite``), and each expert's step is
guarded (``experts/guard.py``). The engine owns no I/O; the daemon feeds it and publishes
what it returns.

The engine orchestrates; the expert pool decides. Each labeled batch, answered and scored,
is one ``ExpertPool.step``: the pool learns it, or holds it while a decision is open and
closes the decision itself once its window is full (``experts/pool.py``). What the step did
(a ``PoolStep``) reaches the parts the engine owns: the optimizer steps move the model
version, a closed decision's events retire or re-arm drift detectors and adaptation state,
learned rows move adaptation anchors. Only a learned batch's losses (or errors) feed the
active expert's detector, and a drift there opens the pool's next decision.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from streamlearn.core.adapt import Adapter, AdaptReport
from streamlearn.core.adapt.settings import AdaptSettings
from streamlearn.core.admission import Admission, Admitted, Rejection, UnknownLabels, infer_width
from streamlearn.core.drift.input_watch import InputWatch
from streamlearn.core.drift.monitor import DriftEvent, DriftMonitor
from streamlearn.core.drift.settings import DriftSettings
from streamlearn.core.errors import ModelError
from streamlearn.core.experts.decision import GroupScores, PoolStep
from streamlearn.core.experts.expert import build_expert, resolve_device
from streamlearn.core.experts.guard import bad_rows
from streamlearn.core.experts.member import PoolEvent
from streamlearn.core.experts.pool import ExpertPool
from streamlearn.core.experts.settings import ExpertsSettings
from streamlearn.core.logging import get_logger
from streamlearn.core.models import batch_norms
from streamlearn.core.models.settings import ModelSettings
from streamlearn.core.predictor import Predictor
from streamlearn.core.preprocess import LabelIndex, Recycled, RunningStandardizer
from streamlearn.core.prequential import PrequentialStats
from streamlearn.core.protocols import Expert, StateDict, StepScaling
from streamlearn.core.settings import EngineSettings
from streamlearn.core.types import Prediction, Sample

log = get_logger(__name__)


@dataclass(slots=True)
class StepResult:
    """What one ``Engine.process`` call did: the daemon's metrics, outputs and events."""

    labeled: int = 0
    correct: int = 0
    losses: Tensor | None = None  # per labeled sample, before the step: drift detectors' food
    errors: Tensor | None = None  # per labeled sample: 1/0 wrong/right, or absolute error
    answered_by: list[str] = field(default_factory=list)  # expert per labeled sample
    predictions: list[Prediction] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    drift_events: list[DriftEvent] = field(default_factory=list)
    shift_events: list[DriftEvent] = field(default_factory=list)  # input_shift, on the rows
    pool_events: list[PoolEvent] = field(default_factory=list)
    adapt: AdaptReport = field(default_factory=AdaptReport)
    # Learning steps skipped or undone by the guards, by reason (loss, gradient, weights;
    # selector_<reason> for the routing network's).
    steps_skipped: dict[str, int] = field(default_factory=dict)
    recycled: list[Recycled] = field(default_factory=list)  # class slots handed to new labels


class Engine:
    """Learns from batches of samples, test-then-train, and predicts the unlabeled ones.

    Owns the model and no I/O; not thread-safe: one thread (the learner's) calls it, and
    serving reads only the snapshots published from it.
    """

    def __init__(
        self,
        model: ModelSettings,
        engine: EngineSettings | None = None,
        drift: DriftSettings | None = None,
        experts: ExpertsSettings | None = None,
        adapt: AdaptSettings | None = None,
    ) -> None:
        self.settings = model
        self.adapt_settings = adapt or AdaptSettings(method="none")
        self.adapt_method = "none"  # resolved when the network is built
        self.engine_settings = engine or EngineSettings()
        drift = drift or DriftSettings()
        self.experts_settings = experts or ExpertsSettings()
        self.drift = DriftMonitor(drift) if drift.enabled else None
        # Whether a drift opens the pool's decision here. A scale-out replica that is not the
        # group's decider (sync.decisions: rank0; docs/scaling.md) watches but never decides.
        self.decides = True
        # A replica of a group that decides together (sync.decisions: group): its losses
        # wait in ``unwatched`` for the round, where every replica's feed the detectors,
        # and a decision closes at the round where the group holds enough, not here. Its
        # own detectors, fed meanwhile, say when to ask for a round (``suspects``) and
        # open a tentative window until then.
        self.decides_at_rounds = False
        self.unwatched: list[Tensor] = []
        self.suspects = False
        self.input_shift_settings = drift.input_shift
        self.input_watch: InputWatch | None = None
        self._watch_errors = drift.signal == "error"  # else the per-sample losses
        self.device = resolve_device(model.device)
        self.labels = LabelIndex(model.max_classes, model.rare_class_samples)
        self._admission = Admission(self.labels, self.is_classifier, model.max_features)
        self.stats = PrequentialStats(self.engine_settings.rolling_window)
        self.version = 0  # optimizer steps taken; served and published as the model version
        self.samples_learned = 0  # labeled samples taken in: the stream position
        self.samples_predicted = 0
        self.created_at = time.time()
        self.last_learned_at: float | None = None
        self.n_features: int | None = None
        self.step_factor = 1.0  # on every expert's step size (scale_step)
        self.pool: ExpertPool | None = None
        self.adapter: Adapter | None = None
        self.scaler: RunningStandardizer | None = None
        self.target_scaler: RunningStandardizer | None = None
        if (count := model.feature_count()) is not None:
            self._build(count)

    def reconfigure(self, model: ModelSettings, engine: EngineSettings) -> None:
        """Other step settings (batch, learning rate) before anything is learned: a
        scale-out replica's, once its group formed smaller than planned. A network already
        built is built again from them."""
        if self.samples_learned or self.version:
            raise ModelError("the engine's settings change only before it learns")
        self.settings, self.engine_settings = model, engine
        if self.n_features is not None:
            self._build(self.n_features)

    @property
    def is_classifier(self) -> bool:
        return self.settings.task == "classification"

    @property
    def expert(self) -> Expert | None:
        """The active expert: the one learning now."""
        return self.pool.active_expert if self.pool is not None else None

    def _build(self, n_features: int) -> None:
        if self.settings.feature_count() is None and n_features > self.settings.max_features:
            # One hostile record must not allocate every expert at its width.
            raise ModelError(
                f"{n_features} features > model.max_features="
                f"{self.settings.max_features}: raise it, or set model.n_features"
            )
        self.n_features = n_features
        if self.input_shift_settings.enabled:
            self.input_watch = InputWatch(self.input_shift_settings, n_features)
        if self.settings.standardize:
            self.scaler = RunningStandardizer(n_features)
            if not self.is_classifier:
                self.target_scaler = RunningStandardizer(1)
        experts = self.experts_settings
        if not experts.enabled:
            experts = experts.model_copy(update={"max_experts": 1})
        self.pool = ExpertPool(
            experts,
            lambda seed: self._at_step_scale(
                build_expert(self.settings, n_features, self.device, seed)
            ),
            self.scoring_loss,
            n_features,
            self.device,
            self.settings.seed,
            self.scaler,
            # Held samples are relearned in steps no bigger than a live batch's.
            self.engine_settings.max_batch,
            self.settings.max_classes if self.is_classifier else None,
        )
        self.pool.closes_at_window = not self.decides_at_rounds
        module = self.pool.active_expert.module
        has_batch_norm = module is not None and bool(batch_norms(module))
        self.adapt_method = self.adapt_settings.method_for(self.settings.task, has_batch_norm)
        if self.adapt_method == "norm" and not has_batch_norm:
            log.warning(
                "adapt_without_effect",
                method="norm",
                why="the network has no batch norm: set model.norm: batch",
            )
        if self.adapt_method != "none":
            self.adapter = Adapter(
                self.adapt_settings,
                self.adapt_method,
                self.settings.seed,
                self.settings.image_shape,
            )

    def _scale(self, x: Tensor) -> Tensor:
        return self.scaler.transform(x) if self.scaler is not None else x

    def scale_step(self, factor: float) -> None:
        """Every expert, and each one spawned later, learns at ``factor`` times its
        configured step size (the daemon's adaptive batches; 1.0 is as configured)."""
        self.step_factor = factor
        if self.pool is not None:
            for expert in self.pool.experts().values():
                self._at_step_scale(expert)

    def _at_step_scale(self, expert: Expert) -> Expert:
        if isinstance(expert, StepScaling):
            expert.scale_step(self.step_factor)
        return expert

    @property
    def unknown_labels(self) -> UnknownLabels:
        """What a labeled sample of a class with no slot meets: ``add`` (a slot, as one
        learner gives it), ``defer`` or ``refuse`` (a replica of a group, whose slots are
        agreed at rounds: streamlearn.sync.labels)."""
        return self._admission.unknown_labels

    @unknown_labels.setter
    def unknown_labels(self, mode: UnknownLabels) -> None:
        self._admission.unknown_labels = mode

    def scoring_loss(self, out: Tensor, y: Tensor) -> Tensor:
        """Per-sample loss of an expert's outputs: what the pool compares experts with."""
        if self.is_classifier:
            n = max(len(self.labels), int(y.max()) + 1 if y.numel() else 1)
            return nn.functional.cross_entropy(out[:, :n], y, reduction="none")
        return nn.functional.mse_loss(out.reshape(-1), y.reshape(-1), reduction="none")

    def process(self, samples: Sequence[Sample]) -> StepResult:
        result = StepResult()
        width = infer_width(samples, self.settings.max_features) if self.pool is None else None
        if width is not None:
            self._build(width)
        admitted = self._admission.admit(samples, self.n_features, result.rejections)
        if admitted.kept:
            self._process(samples, admitted, result)
        result.recycled = self.labels.take_recycled()
        if self.pool is not None:
            result.steps_skipped = self.pool.take_skips()
        return result

    def _process(self, samples: Sequence[Sample], admitted: Admitted, result: StepResult) -> None:
        kept, targets, x = admitted.kept, admitted.targets, admitted.x
        labeled = [j for j, i in enumerate(kept) if targets[i] is not None]
        unlabeled = [j for j, i in enumerate(kept) if targets[i] is None]
        new_domain = self._watch_inputs(x, unlabeled, result)
        x_test, x_train = x, x
        if self.scaler is not None:
            # Only labeled rows move the statistics: unlabeled traffic changes the model
            # through test-time adaptation alone, where the guards can see it.
            x_test = self.scaler.transform(x)
            if labeled:
                self.scaler.update(x[labeled])
            x_train = self.scaler.transform(x)
        x_test, x_train = x_test.to(self.device), x_train.to(self.device)
        if labeled:
            y = [targets[kept[j]] for j in labeled]
            self._learn(
                x_test[labeled], x_train[labeled], x[labeled], y, [kept[j] for j in labeled], result
            )
        if unlabeled:
            ids = [samples[kept[j]].id for j in unlabeled]
            rows = x_train[unlabeled]
            experts = self.pool.route(rows) if self.pool is not None else []
            result.predictions = self._answer_and_adapt(rows, ids, experts, new_domain, result)

    def _answer_and_adapt(
        self,
        rows: Tensor,
        ids: list[str | None],
        experts: list[str],
        new_domain: int,
        result: StepResult,
    ) -> list[Prediction]:
        """Answer the unlabeled rows and adapt on those from the last alarm on (index
        ``new_domain``). While a restart waits in an expert those rows are routed to, they
        are adapted on first and answered after: otherwise a whole batch of the new domain
        is answered with the old domain's statistics. The rows before the alarm are the old
        domain's: they are answered before the restart, with its statistics. Predictions
        keep the rows' order."""
        new_rows, new_experts = rows[new_domain:], experts[new_domain:]
        if self.adapter is None or not self.adapter.switch_pending(new_experts):
            predictions = self._predict(rows, ids, experts)
            self._adapt(new_rows, new_experts, result.adapt)
            return predictions
        before = rows[:new_domain], ids[:new_domain], experts[:new_domain]
        old = self._predict(*before) if new_domain else []
        self._adapt(new_rows, new_experts, result.adapt)
        return old + self._predict(new_rows, ids[new_domain:], new_experts)

    def _watch_inputs(self, x: Tensor, unlabeled: list[int], result: StepResult) -> int:
        """Watch the raw rows for a change of domain; on one, adaptation restarts. The
        index in ``unlabeled`` of the first unlabeled row at or after the last alarm (0
        without one)."""
        if self.input_watch is None:
            return 0
        watched = unlabeled if self.input_shift_settings.rows == "unlabeled" else None
        rows = x if watched is None else x[watched]
        events, alarms = self.input_watch.observe(rows, self.version)
        if not alarms:
            return 0
        result.shift_events += events
        if self.adapter is not None:
            self.adapter.shifted()
        last = alarms[-1] if watched is None else unlabeled[alarms[-1]]
        return sum(1 for j in unlabeled if j < last)

    def forget(self, samples: Sequence[Sample], expert: str | None = None) -> dict[str, Any]:
        """Remove labeled samples from an expert's rls head exactly (``POST /v1/forget``):
        ``expert`` (the active one if None) then has the head it would have without them, on
        the body and scaling of now. The body, the replay buffer and the selector are not
        unlearned (docs/api.md). Raises ModelError when it cannot."""
        if self.pool is None or self.n_features is None:
            raise ModelError("forget: no model yet")
        id_ = self.pool.active_id if expert is None else expert
        member = self.pool.members.get(id_)
        forget = getattr(member.expert, "forget", None) if member is not None else None
        if member is None or forget is None:
            raise ModelError(f"forget: expert {id_!r} has no rls head (model.head: rls)")
        if any(len(s.x) != self.n_features for s in samples):
            raise ModelError(f"forget: every x must have {self.n_features} features")
        x = self._scale(torch.tensor([s.x for s in samples], dtype=torch.float32))
        y = self._forget_targets(samples)
        count = int(forget(x.to(self.device), y.to(self.device)))
        member.steps += 1  # changed weights: the next snapshot carries them
        self.version += 1
        return {"forgotten": count, "expert": id_}

    def _forget_targets(self, samples: Sequence[Sample]) -> Tensor:
        if not self.is_classifier:
            y = torch.tensor([[float(s.y)] for s in samples])  # type: ignore[arg-type]
            scaled = self.target_scaler.transform(y) if self.target_scaler is not None else y
            return scaled.reshape(-1)
        indices = [self.labels.find(s.y) for s in samples]  # type: ignore[arg-type]
        if None in indices:
            raise ModelError("forget: a label this model never learned")
        return torch.tensor(indices, dtype=torch.int64)

    def adapt(self, rows: Sequence[Sequence[float]]) -> AdaptReport:
        """Adapt on unlabeled inputs that need no answer (served requests' rows)."""
        report = AdaptReport()
        if self.adapter is None or self.pool is None or not rows:
            return report
        usable = [r for r in rows if len(r) == self.n_features]
        if usable:
            x = torch.tensor(usable, dtype=torch.float32)
            x = x[torch.isfinite(x).all(dim=1)]  # finite in JSON is not finite in float32
            if x.shape[0]:
                x = self._scale(x).to(self.device)
                self._adapt(x, self.pool.route(x), report)
        return report

    def _adapt(self, x: Tensor, experts: list[str], report: AdaptReport) -> None:
        """Guarded adaptation of each routed expert; every step is a new model version."""
        if self.adapter is not None and self.pool is not None:
            self.version += self.adapter.offer_routed(
                self.pool.members, x, experts, len(self.labels), report
            )

    def _learn(
        self,
        x_test: Tensor,
        x_train: Tensor,
        raw: Tensor,
        y_values: list[Any],
        origin: list[int],
        result: StepResult,
    ) -> None:
        """Test with the answering expert, score, then learn (or hold while deciding).
        ``origin``: each row's index in the batch given to ``process``."""
        assert self.pool is not None
        answerers = self.pool.answerers(x_test)
        out = self._routed_outputs(x_test, answerers)
        y, errors, quality = self._score(out, y_values)
        scored = self.scoring_loss(out.to(self.device), y)
        # A class error is 0 or 1 whatever the outputs; an absolute error can overflow.
        if bad := bad_rows(scored) if self.is_classifier else bad_rows(scored, errors):
            rows = sorted(set(range(len(origin))) - set(bad))
            result.rejections += [
                Rejection(
                    origin[r],
                    "non_finite",
                    "the model's loss on this sample is not finite (an output overflows)",
                )
                for r in bad
            ]
            if not rows:
                return
            x_test, x_train, raw, y = x_test[rows], x_train[rows], raw[rows], y[rows]
            errors, scored = errors[rows], scored[rows]
            quality = {k: v[rows] for k, v in quality.items()}
            answerers = [answerers[r] for r in rows]
            y_values = [y_values[r] for r in rows]
        if self.is_classifier:
            self.pool.credit(answerers, errors == 0)
            result.correct = int((errors == 0).sum())
        position = self.samples_learned
        outcome = self.pool.step(x_test, x_train, raw, y, scored, position)
        self._follow(outcome, result)
        if not outcome.held or outcome.tentative:
            self._watch(errors if self._watch_errors else outcome.losses, position, result)
        self.version += outcome.steps  # after the watch: its events name the version before
        losses = outcome.losses
        self.stats.update(losses.cpu(), **quality)
        self.samples_learned += len(y_values)
        self.last_learned_at = time.time()
        result.labeled = len(y_values)
        result.losses = losses
        result.errors = errors
        result.answered_by = answerers

    def _score(self, out: Tensor, y_values: list[Any]) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Targets as the experts learn them, each sample's error (0/1 or absolute) and
        the prequential scores to record."""
        if self.is_classifier:
            y = torch.tensor(y_values, dtype=torch.long)
            correct = out[:, : len(self.labels)].argmax(dim=1) == y
            return y.to(self.device), (~correct).float(), {"correct": correct}
        y_raw = torch.tensor(y_values, dtype=torch.float32).unsqueeze(1)
        pred, y_scaled = out.cpu().reshape(-1, 1), y_raw
        if self.target_scaler is not None:
            pred = self.target_scaler.inverse(pred)
            self.target_scaler.update(y_raw)
            y_scaled = self.target_scaler.transform(y_raw)
        abs_error = (pred - y_raw).abs().squeeze(1)
        return y_scaled.squeeze(1).to(self.device), abs_error, {"abs_error": abs_error}

    def _watch(self, values: Tensor, position: int, result: StepResult) -> None:
        """Feed the active expert's detector; a drift opens the pool's decision."""
        if self.drift is None:
            return
        if self.decides_at_rounds:
            self.unwatched.append(values.detach().float().cpu())
            assert self.pool is not None
            events = self.drift.observe(self.pool.active_id, values, position, self.version)
            if events and self.experts_settings.enabled:
                # Held from here until the round the alarm asks for tests the group's
                # losses: a window the group opens then holds them already, and the active
                # expert has not learned the new concept meanwhile (docs/scaling.md).
                self.pool.begin_decision(position + len(values), tentative=True)
            self.suspects |= bool(events)
            return
        self.watch(values, position, result)

    @property
    def watches_errors(self) -> bool:
        """Whether the detectors are fed 0/1 errors (``drift.signal: error``), not losses."""
        return self._watch_errors

    def take_unwatched(self) -> list[float]:
        """The values a replica of a group kept for the round's detectors, in order."""
        taken, self.unwatched = self.unwatched, []
        return torch.cat(taken).tolist() if taken else []

    def watch(self, values: Tensor, position: int, result: StepResult) -> None:
        """Feed the active expert's detector ``values`` learned up to ``position``; a drift
        opens the pool's decision."""
        if self.drift is None:
            return
        assert self.pool is not None
        events = self.drift.observe(self.pool.active_id, values, position, self.version)
        result.drift_events += events
        if (
            self.experts_settings.enabled
            and self.decides
            and any(e.kind == "drift" for e in events)
        ):
            self.pool.begin_decision(position + len(values))

    def close_decision(
        self, group: GroupScores | None = None, sample: int | None = None
    ) -> StepResult:
        """Close the pool's open decision on the samples held so far, or on a group's
        scores at ``sample`` (docs/scaling.md); the samples held here are learned."""
        result = StepResult()
        if self.pool is not None and self.pool.deciding:
            at = self.samples_learned if sample is None else sample
            outcome = self.pool.close_decision(at, group)
            self._follow(outcome, result)
            self.version += outcome.steps
        return result

    def withdraw_decision(self) -> StepResult:
        """A window this replica opened on its own alarm, which its group did not confirm:
        the active expert learns what it held."""
        result = StepResult()
        if self.pool is not None and self.pool.deciding:
            outcome = self.pool.withdraw_decision(self.samples_learned)
            self._follow(outcome, result)
            self.version += outcome.steps
        return result

    def _follow(self, outcome: PoolStep, result: StepResult) -> None:
        """What the pool did reaches the parts the engine owns: a closed decision's events
        retire or re-arm detectors and drop the adaptation state of experts gone; every
        chunk learned moves its expert's adaptation anchor (in that order, as they happened:
        the adapter seeds a new expert's state by how many it holds)."""
        assert self.pool is not None
        result.pool_events += outcome.events
        if self.drift is not None:
            for event in outcome.events:
                if event.kind in ("prune", "merge"):
                    self.drift.forget(event.expert)
                elif event.kind == "switch":
                    self.drift.rearm(event.expert)
        if self.adapter is not None:
            if outcome.events:
                self.adapter.forget(self.pool.live_ids())
            for chunk in outcome.learned:
                self.adapter.labeled(chunk.expert, chunk.x, chunk.y)

    def predictor(self) -> Predictor:
        """The live experts and selector behind the one forward path serving also uses."""
        assert self.pool is not None
        return Predictor(
            self.settings.task,
            self.labels.labels,
            self.pool.forwards(),
            self.pool.route,
            self.device,
            self.scaler,
            self.target_scaler,
            self.pool.variances(),
        )

    def _predict(self, x: Tensor, ids: list[str | None], experts: list[str]) -> list[Prediction]:
        predictor = self.predictor()
        answer = predictor.decode(predictor.outputs(x, experts), experts)
        self.samples_predicted += len(ids)
        spread: list[float | None] = [None] * len(ids)
        spread = list(predictor.variance(x, experts) or spread)  # the Kalman head's
        if answer.probabilities is None:  # regression
            return [
                Prediction(id_, float(v), None, self.version, e, s)
                for id_, v, e, s in zip(ids, answer.predictions, experts, spread, strict=True)
            ]
        if not answer.predictions:  # no class learned yet
            return [
                Prediction(id_, None, None, self.version, e)
                for id_, e in zip(ids, experts, strict=True)
            ]
        names = [str(label) for label in self.labels.labels]
        return [
            Prediction(id_, label, dict(zip(names, row.tolist(), strict=True)), self.version, e, s)
            for id_, label, row, e, s in zip(
                ids, answer.predictions, answer.probabilities, experts, spread, strict=True
            )
        ]

    def _routed_outputs(self, x: Tensor, experts: list[str]) -> Tensor:
        """Each row's outputs from its expert, on the CPU."""
        return self.predictor().outputs(x, experts)

    def state_dict(self) -> StateDict:
        return {
            "n_features": self.n_features,
            "version": self.version,
            "samples_learned": self.samples_learned,
            "samples_predicted": self.samples_predicted,
            "created_at": self.created_at,
            "last_learned_at": self.last_learned_at,
            "labels": self.labels.state_dict(),
            "stats": self.stats.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "target_scaler": self.target_scaler.state_dict() if self.target_scaler else None,
            "pool": self.pool.state_dict() if self.pool else None,
            "drift": self.drift.state_dict() if self.drift else None,
            "adapt": self.adapter.state_dict() if self.adapter else None,
            "input_shift": self.input_watch.state_dict() if self.input_watch else None,
            "rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state["n_features"] is not None:
            self._build(int(state["n_features"]))
        if self.pool is not None:
            if state.get("pool") is not None:
                self.pool.load_state_dict(state["pool"])
            else:  # written before the pool existed: one expert, id "0"
                self.pool.active_expert.load_state_dict(state["expert"])
        for name in ("scaler", "target_scaler"):
            part = getattr(self, name)
            if part is not None and state[name] is not None:
                part.load_state_dict(state[name])
        self.labels.load_state_dict(state["labels"])
        self.stats.load_state_dict(state["stats"])
        self.version = int(state["version"])
        self.samples_learned = int(state["samples_learned"])
        self.samples_predicted = int(state["samples_predicted"])
        # Absent from checkpoints written before serving existed.
        self.created_at = float(state.get("created_at", self.created_at))
        self.last_learned_at = state.get("last_learned_at")
        if self.drift is not None and state.get("drift") is not None:  # absent before drift
            self.drift.load_state_dict(state["drift"])
        if self.input_watch is not None and state.get("input_shift") is not None:
            self.input_watch.load_state_dict(state["input_shift"])  # absent before it existed
        if self.adapter is not None and self.pool is not None and state.get("adapt"):
            self.adapter.load_state_dict(state["adapt"], self.pool.modules())
        torch.set_rng_state(state["rng"])
