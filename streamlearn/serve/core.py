"""What serving does, independent of transport; HTTP and gRPC only translate to and from it.

Every method reads the current snapshot once (one reference read) and works on that object
alone, so a response is always one complete model version. Nothing here touches the
learner's state: it lives in another process, reached through a :class:`LearnerClient`
(labeled samples, rows to adapt on and checkpoint requests go in; what the learner last
published about itself comes back as a :class:`LearnerView`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from streamlearn._version import __version__
from streamlearn.core.codecs import Codec
from streamlearn.core.errors import CodecError, RequestError
from streamlearn.core.predictor import Output
from streamlearn.core.types import Sample
from streamlearn.metrics import ServingMetrics
from streamlearn.serve.auth import TokenAuth
from streamlearn.serve.board import SnapshotBoard
from streamlearn.serve.served_ids import ServedRow, served_rows
from streamlearn.serve.snapshot import Snapshot
from streamlearn.serve.tensors import TensorIn, TensorOut, label_datatype, label_tensor, to_features
from streamlearn.settings import Settings

# How long POST /v1/checkpoint and a forget (HTTP or gRPC) wait for the learner to take and
# finish the request.
CHECKPOINT_WAIT_S = 30.0
OUTPUTS_CLASSIFICATION = ("predictions", "probabilities", "classes")
OUTPUTS_REGRESSION = ("predictions",)
# Returned only when asked for by name: the expert that answered each row, and each row's
# predictive variance (a Kalman head's: model.head kalman).
OUTPUTS_ON_REQUEST = ("experts", "variance")


@dataclasses.dataclass(slots=True)
class InferAnswer:
    """An inference result before HTTP or gRPC encodes it."""

    model_name: str
    model_version: str
    id: str | None
    outputs: list[TensorOut]
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LearnerView:
    """What the learner last published about itself (it may be a moment old)."""

    progress: dict[str, Any] | None = None  # the learner's Progress, JSON-safe
    pid: int | None = None  # the learner's process
    learn_queue: dict[str, int] = field(default_factory=dict)  # samples, capacity
    drift_events: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    expert_events: list[dict[str, Any]] = field(default_factory=list)


class LearnerClient(Protocol):
    """Serving's only way to the learner, which runs in another process."""

    @property
    def up(self) -> bool: ...  # connected: the learner is running and answering

    def learn(self, samples: list[Sample]) -> Future[dict[str, int]]: ...

    def adapt_on(self, rows: list[list[float]]) -> None: ...

    def keep_served(self, rows: list[ServedRow]) -> None: ...  # best effort, never waits

    def checkpoint(self) -> Future[dict[str, Any]]: ...

    def forget(self, samples: list[Sample], expert: str | None) -> Future[dict[str, Any]]: ...

    def view(self) -> LearnerView: ...


class ServingCore:
    """What serving does, for both front ends; each call works on one snapshot only.

    Never touches the learner's state: learning requests go through the learner client.
    """

    def __init__(
        self,
        settings: Settings,
        board: SnapshotBoard,
        learner: LearnerClient,
        metrics: ServingMetrics,
    ) -> None:
        self.settings = settings
        self.serve = settings.serve
        self.board = board
        self.learner = learner
        self.metrics = metrics
        self.auth = TokenAuth.from_settings(settings.serve)
        # Whether "auto" adapts depends on the network; the learner drops rows it will not use.
        self._adapt_on_requests = settings.adapt.on_requests and settings.adapt.method != "none"
        labels = settings.labels
        self._keep_served = labels.enabled and labels.served_ids
        self._draining = threading.Event()
        self._started = time.time()
        self._codec = Codec.from_settings(settings.model, settings.engine)

    # -- health ----------------------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """A snapshot to answer from, a learner behind it, and not shutting down."""
        return self.board.current is not None and self.learner.up and not self._draining.is_set()

    def begin_drain(self) -> None:
        self._draining.set()

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def model_ready(self, name: str, version: str = "") -> bool:
        self._check_model(name)
        snapshot = self.board.current
        return self.ready() and snapshot is not None and version in ("", str(snapshot.version))

    # -- metadata --------------------------------------------------------------------------

    def server_metadata(self) -> dict[str, Any]:
        return {
            "name": "streamlearn",
            "version": __version__,
            "extensions": ["binary_tensor_data"],
        }

    def model_metadata(self, name: str) -> dict[str, Any]:
        self._check_model(name)
        snapshot = self.board.current
        m = self.settings.model
        n_features = snapshot.n_features if snapshot else (m.feature_count() or -1)
        features = list(m.features) if m.features is not None else None
        input_meta: dict[str, Any] = {
            "name": self.serve.input_name,
            "datatype": "FP32",
            "shape": [-1, n_features],
        }
        if features is not None:
            input_meta["parameters"] = {"feature_names": features}
        return {
            "name": self.serve.model_name,
            "versions": [str(snapshot.version)] if snapshot else [],
            "platform": "streamlearn_pytorch",
            "inputs": [input_meta],
            "outputs": self._output_metadata(snapshot),
        }

    def _output_metadata(self, snapshot: Snapshot | None) -> list[dict[str, Any]]:
        on_request = [{"name": "experts", "datatype": "BYTES", "shape": [-1]}]
        if self.settings.model.head == "kalman":
            on_request.append({"name": "variance", "datatype": "FP32", "shape": [-1]})
        if self.settings.model.task == "regression":
            return [{"name": "predictions", "datatype": "FP32", "shape": [-1]}, *on_request]
        labels = snapshot.labels if snapshot else ()
        return [
            {"name": "predictions", "datatype": label_datatype(labels), "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, -1]},
            {"name": "classes", "datatype": label_datatype(labels), "shape": [-1]},
            *on_request,
        ]

    # -- inference -------------------------------------------------------------------------

    def infer(
        self,
        name: str,
        inputs: list[TensorIn],
        outputs: list[str] | None = None,
        request_id: str | None = None,
        version: str = "",
    ) -> InferAnswer:
        self._check_model(name)
        snapshot = self.board.current  # the one read: everything below uses this object
        # Draining turns readiness off but keeps answering: load balancers need a moment
        # to stop sending, and every request they still send deserves an answer.
        if snapshot is None:
            raise RequestError(503, "not_ready", "the model is not ready: nothing learned yet")
        if version and version != str(snapshot.version):
            raise RequestError(
                404,
                "unknown_version",
                f"model version {version!r} is not "
                f"served; the current version is {snapshot.version}",
            )
        wanted = self._requested_outputs(outputs)
        x = self._features(inputs, snapshot)
        result = snapshot.predict(x, variance="variance" in wanted)
        if self._adapt_on_requests:
            self.learner.adapt_on(x.tolist())
        if self._keep_served and request_id:
            self._keep_for_labels(request_id, x, result, snapshot)
        rows = x.shape[0]
        produced: dict[str, TensorOut] = {}
        if snapshot.task == "regression":
            produced["predictions"] = TensorOut("predictions", "FP32", [rows], result.predictions)
        else:
            produced["predictions"] = label_tensor(
                "predictions", result.predictions, snapshot.labels
            )
            probabilities = result.probabilities
            assert probabilities is not None
            produced["probabilities"] = TensorOut(
                "probabilities",
                "FP32",
                list(probabilities.shape),
                probabilities.reshape(-1).tolist(),
            )
            produced["classes"] = label_tensor("classes", snapshot.labels)
        produced["experts"] = TensorOut("experts", "BYTES", [rows], result.experts)
        if "variance" in wanted:
            if result.variance is None:
                raise RequestError(
                    422,
                    "no_variance",
                    "outputs: 'variance' is given by a head with a weight covariance only "
                    "(model.head: kalman); this model's experts give none",
                )
            produced["variance"] = TensorOut("variance", "FP32", [rows], result.variance)
        # One expert answered most requests; several are named in the order they answered.
        answered = ",".join(dict.fromkeys(result.experts)) or snapshot.expert_id
        return InferAnswer(
            self.serve.model_name,
            str(snapshot.version),
            request_id,
            [produced[n] for n in wanted],
            {"expert": answered},
        )

    def _keep_for_labels(self, request_id: str, x: Any, result: Output, snapshot: Snapshot) -> None:
        """Hand the learner what was answered, to join the rows' late labels."""
        try:
            self._codec.check_id(f"{request_id}/{x.shape[0]}" if x.shape[0] > 1 else request_id)
        except CodecError:  # an id too long to join: answered, not kept
            self.metrics.served_rows_dropped.labels(reason="bad_id").inc(x.shape[0])
            return
        rows = served_rows(
            request_id, x.tolist(), result.predictions, result.experts, snapshot.version
        )
        self.learner.keep_served(rows)

    def _requested_outputs(self, outputs: list[str] | None) -> list[str]:
        available = (
            OUTPUTS_REGRESSION
            if self.settings.model.task == "regression"
            else OUTPUTS_CLASSIFICATION
        )
        if not outputs:
            return list(available)
        for i, name in enumerate(outputs):
            if name not in available + OUTPUTS_ON_REQUEST:
                raise RequestError(
                    422,
                    "unknown_output",
                    f"outputs[{i}]: unknown output "
                    f"{name!r}; available: "
                    f"{', '.join(available + OUTPUTS_ON_REQUEST)}",
                )
        return outputs

    def _features(self, inputs: list[TensorIn], snapshot: Snapshot) -> Any:
        expected = self.serve.input_name
        if len(inputs) != 1:
            raise RequestError(
                422,
                "shape",
                f"inputs: expected exactly one input tensor {expected!r}, got {len(inputs)}",
            )
        tensor = inputs[0]
        where = f"inputs[0] ({tensor.name!r})"
        if tensor.name != expected:
            raise RequestError(
                422,
                "unknown_input",
                f"{where}: unknown input; this model takes one input named {expected!r}",
            )
        return to_features(tensor, where, snapshot.n_features, self.serve.max_batch_rows)

    def _check_model(self, name: str) -> None:
        if name != self.serve.model_name:
            raise RequestError(
                404,
                "unknown_model",
                f"model {name!r} not found; this server serves {self.serve.model_name!r}",
            )

    # -- learning and admin ----------------------------------------------------------------

    def learn(self, items: list[Mapping[str, Any]]) -> Future[dict[str, int]]:
        """Validate labeled samples and hand them to the learner's queue, all or none.

        Invalid samples raise at once; the future says how many were queued, or fails with
        a :class:`RequestError` (queue full: 429; learner down: 503).
        """
        if not items:
            raise RequestError(422, "schema", "samples: empty")
        samples = [self._labeled(i, item) for i, item in enumerate(items)]
        if self.draining:
            raise RequestError(503, "draining", "the server is shutting down")
        return self.learner.learn(samples)

    def _labeled(self, index: int, item: Mapping[str, Any]) -> Sample:
        snapshot = self.board.current
        if self._codec.n_features is None and snapshot is not None:
            self._codec.n_features = snapshot.n_features
        try:
            sample = self._codec.decode_sample(item)
        except CodecError as exc:
            raise RequestError(422, exc.reason, f"samples[{index}].{exc.detail}") from None
        if sample.y is None:
            raise RequestError(422, "schema", f"samples[{index}].y: required for learning")
        # Kept for a dead letter, should the learner refuse it (a class beyond the slots).
        return dataclasses.replace(sample, raw=json.dumps(dict(item)))

    def forget(self, items: list[Mapping[str, Any]], expert: str | None) -> Future[dict[str, Any]]:
        """Validate labeled samples and ask the learner to unlearn them from an rls head;
        the future fails with a RequestError (409: the expert cannot; 503: learner down)."""
        if not items:
            raise RequestError(422, "schema", "samples: empty")
        samples = [self._labeled(i, item) for i, item in enumerate(items)]
        if self.draining:
            raise RequestError(503, "draining", "the server is shutting down")
        return self.learner.forget(samples, expert)

    def request_checkpoint(self) -> Future[dict[str, Any]]:
        return self.learner.checkpoint()

    def status(self) -> dict[str, Any]:
        snapshot = self.board.current
        view = self.learner.view()
        return {
            "ready": self.ready(),
            "draining": self.draining,
            "learner_up": self.learner.up,
            "uptime_s": round(time.time() - self._started, 3),
            "model_name": self.serve.model_name,
            "served_version": snapshot.version if snapshot else None,
            "served_created": snapshot.created if snapshot else None,
            "snapshot_age_s": round(self.board.age(), 3),
            "learn_queue": view.learn_queue,
            "processes": {"serving": os.getpid(), "learner": view.pid},
            "learner": view.progress,
        }

    def models(self) -> dict[str, Any]:
        """The served model (the champion) and its live scores from late labels; the
        challenger (``labels.challenger``) with its paired scores, when one runs."""
        snapshot = self.board.current
        progress = self.learner.view().progress or {}
        live = progress.get("served") or {}
        champion = {
            "name": self.serve.model_name,
            "role": "champion",
            "version": snapshot.version if snapshot else None,
            "live": {k: v for k, v in live.items() if k != "challenger"} or None,
        }
        models = [champion]
        if challenger := live.get("challenger"):
            # Scored on the same delayed labels as the champion: not served until promoted.
            models.append(
                {
                    "name": f"{self.serve.model_name}-challenger",
                    "role": "challenger",
                    "version": challenger["version"],
                    "live": challenger,
                }
            )
        return {"models": models}

    def experts(self, events: int = 20) -> dict[str, Any]:
        """The pool as of the served snapshot, and its latest decisions (newest last)."""
        snapshot = self.board.current
        recent = _recent(self.learner.view().expert_events, events)
        if snapshot is None:
            return {"active": None, "experts": [], "events": recent}
        return {
            "active": snapshot.expert_id,
            "experts": [dataclasses.asdict(e) for e in snapshot.experts],
            "events": recent,
        }

    def drift_events(
        self, limit: int | None = None, expert: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """The latest drift events the learner published, filtered, oldest first."""
        events = [
            e
            for e in self.learner.view().drift_events
            if (expert is None or e.get("expert") == expert)
            and (kind is None or e.get("kind") == kind)
        ]
        return _recent(events, limit)


def _recent(events: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    if limit is None:
        return events
    return events[-limit:] if limit else []
