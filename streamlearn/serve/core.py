"""What serving does, independent of transport; HTTP and gRPC only translate to and from it.

Every method reads the current snapshot once (one reference read) and works on that object
alone, so a response is always one complete model version. Nothing here touches the
learner's state: labeled samples and checkpoint requests go through the :class:`Inbox`.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

import streamlearn
from streamlearn.codecs import Codec
from streamlearn.drift.monitor import DriftEvent
from streamlearn.errors import CodecError, RequestError
from streamlearn.experts.member import PoolEvent
from streamlearn.history import EventHistory
from streamlearn.metrics import Metrics
from streamlearn.serve.auth import TokenAuth
from streamlearn.serve.inbox import Inbox
from streamlearn.serve.snapshot import Snapshot, SnapshotBoard
from streamlearn.serve.tensors import TensorIn, TensorOut, label_datatype, label_tensor, to_features
from streamlearn.settings import Settings
from streamlearn.types import Sample

OUTPUTS_CLASSIFICATION = ("predictions", "probabilities", "classes")
OUTPUTS_REGRESSION = ("predictions",)
# Returned only when asked for by name: the expert that answered each row.
OUTPUTS_ON_REQUEST = ("experts",)


@dataclasses.dataclass(slots=True)
class InferAnswer:
    model_name: str
    model_version: str
    id: str | None
    outputs: list[TensorOut]
    parameters: dict[str, Any]


class ServingCore:
    def __init__(self, settings: Settings, board: SnapshotBoard, inbox: Inbox,
                 metrics: Metrics, progress: Callable[[], Any] = lambda: None,
                 drift_history: EventHistory[DriftEvent] | None = None,
                 expert_history: EventHistory[PoolEvent] | None = None) -> None:
        self.settings = settings
        self.serve = settings.serve
        self.board = board
        self.inbox = inbox
        self.metrics = metrics
        self.auth = TokenAuth.from_settings(settings.serve)
        # Written by the learner as drifts happen; older events live in the events topic.
        self.drift_history = drift_history or EventHistory(settings.drift.history)
        self.expert_history = expert_history or EventHistory(settings.experts.history)
        self._progress = progress
        # Whether "auto" adapts depends on the network; the learner drops rows it will not use.
        self._adapt_on_requests = settings.adapt.on_requests and settings.adapt.method != "none"
        self._draining = threading.Event()
        self._started = time.time()
        m = settings.model
        self._codec = Codec(m.task, m.n_features, m.features, settings.engine.max_record_bytes)
        metrics.snapshot_age.set_function(board.age)
        metrics.learn_queue_samples.set_function(lambda: inbox.samples)
        metrics.serving_ready.set_function(lambda: float(self.ready()))

    # -- health ----------------------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.board.current is not None and not self._draining.is_set()

    def begin_drain(self) -> None:
        self._draining.set()

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def model_ready(self, name: str, version: str = "") -> bool:
        self._check_model(name)
        snapshot = self.board.current
        return (self.ready() and snapshot is not None
                and version in ("", str(snapshot.version)))

    # -- metadata --------------------------------------------------------------------------

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "streamlearn", "version": streamlearn.__version__, "extensions": []}

    def model_metadata(self, name: str) -> dict[str, Any]:
        self._check_model(name)
        snapshot = self.board.current
        m = self.settings.model
        n_features = snapshot.n_features if snapshot else (m.feature_count() or -1)
        features = list(m.features) if m.features is not None else None
        input_meta: dict[str, Any] = {"name": self.serve.input_name, "datatype": "FP32",
                                      "shape": [-1, n_features]}
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
        experts = {"name": "experts", "datatype": "BYTES", "shape": [-1]}  # on request
        if self.settings.model.task == "regression":
            return [{"name": "predictions", "datatype": "FP32", "shape": [-1]}, experts]
        labels = snapshot.labels if snapshot else ()
        return [{"name": "predictions", "datatype": label_datatype(labels), "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, -1]},
                {"name": "classes", "datatype": label_datatype(labels), "shape": [-1]},
                experts]

    # -- inference -------------------------------------------------------------------------

    def infer(self, name: str, inputs: list[TensorIn], outputs: list[str] | None = None,
              request_id: str | None = None, version: str = "") -> InferAnswer:
        self._check_model(name)
        snapshot = self.board.current  # the one read: everything below uses this object
        # Draining turns readiness off but keeps answering: load balancers need a moment
        # to stop sending, and every request they still send deserves an answer.
        if snapshot is None:
            raise RequestError(503, "not_ready", "the model is not ready: nothing learned yet")
        if version and version != str(snapshot.version):
            raise RequestError(404, "unknown_version", f"model version {version!r} is not "
                               f"served; the current version is {snapshot.version}")
        wanted = self._requested_outputs(outputs)
        x = self._features(inputs, snapshot)
        result = snapshot.predict(x)
        if self._adapt_on_requests:
            dropped = self.inbox.offer_rows(x.tolist())
            if dropped:
                self.metrics.tta_rows_dropped.inc(dropped)
        rows = x.shape[0]
        produced: dict[str, TensorOut] = {}
        if snapshot.task == "regression":
            produced["predictions"] = TensorOut("predictions", "FP32", [rows],
                                                result.predictions)
        else:
            produced["predictions"] = label_tensor("predictions", result.predictions)
            probabilities = result.probabilities
            assert probabilities is not None
            produced["probabilities"] = TensorOut(
                "probabilities", "FP32", list(probabilities.shape),
                probabilities.reshape(-1).tolist())
            produced["classes"] = label_tensor("classes", snapshot.labels)
        produced["experts"] = TensorOut("experts", "BYTES", [rows], result.experts)
        # One expert answered most requests; several are named in the order they answered.
        answered = ",".join(dict.fromkeys(result.experts)) or snapshot.expert_id
        return InferAnswer(self.serve.model_name, str(snapshot.version), request_id,
                           [produced[n] for n in wanted], {"expert": answered})

    def _requested_outputs(self, outputs: list[str] | None) -> list[str]:
        available = (OUTPUTS_REGRESSION if self.settings.model.task == "regression"
                     else OUTPUTS_CLASSIFICATION)
        if not outputs:
            return list(available)
        for i, name in enumerate(outputs):
            if name not in available + OUTPUTS_ON_REQUEST:
                raise RequestError(422, "unknown_output", f"outputs[{i}]: unknown output "
                                   f"{name!r}; available: "
                                   f"{', '.join(available + OUTPUTS_ON_REQUEST)}")
        return outputs

    def _features(self, inputs: list[TensorIn], snapshot: Snapshot) -> Any:
        expected = self.serve.input_name
        if len(inputs) != 1:
            raise RequestError(422, "shape", f"inputs: expected exactly one input tensor "
                               f"{expected!r}, got {len(inputs)}")
        tensor = inputs[0]
        where = f"inputs[0] ({tensor.name!r})"
        if tensor.name != expected:
            raise RequestError(422, "unknown_input", f"{where}: unknown input; this model "
                               f"takes one input named {expected!r}")
        return to_features(tensor, where, snapshot.n_features, self.serve.max_batch_rows)

    def _check_model(self, name: str) -> None:
        if name != self.serve.model_name:
            raise RequestError(404, "unknown_model", f"model {name!r} not found; this server "
                               f"serves {self.serve.model_name!r}")

    # -- learning and admin ----------------------------------------------------------------

    def learn(self, items: list[Mapping[str, Any]]) -> int:
        """Validate labeled samples and queue them for the learner, all or none."""
        if not items:
            raise RequestError(422, "schema", "samples: empty")
        samples = [self._labeled(i, item) for i, item in enumerate(items)]
        if self.draining:
            raise RequestError(503, "draining", "the server is shutting down")
        if not self.inbox.offer(samples):
            raise RequestError(429, "queue_full", f"learn queue full ({self.inbox.samples} of "
                               f"{self.inbox.capacity} samples waiting); retry later")
        return len(samples)

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
        return sample

    def request_checkpoint(self) -> Future[dict[str, Any]]:
        return self.inbox.request_checkpoint()

    def status(self) -> dict[str, Any]:
        snapshot = self.board.current
        progress = self._progress()
        return {
            "ready": self.ready(),
            "draining": self.draining,
            "uptime_s": round(time.time() - self._started, 3),
            "model_name": self.serve.model_name,
            "served_version": snapshot.version if snapshot else None,
            "snapshot_age_s": round(self.board.age(), 3),
            "learn_queue": {"samples": self.inbox.samples, "capacity": self.inbox.capacity},
            "learner": _plain(progress),
        }

    def experts(self, events: int = 20) -> dict[str, Any]:
        """The pool as of the served snapshot, and its latest decisions (newest last)."""
        snapshot = self.board.current
        recent = self.expert_history.recent(events)
        if snapshot is None:
            return {"active": None, "experts": [], "events": recent}
        return {"active": snapshot.expert_id,
                "experts": [dataclasses.asdict(e) for e in snapshot.experts],
                "events": recent}


def _plain(progress: Any) -> dict[str, Any] | None:
    """The learner's progress as JSON-safe data (NaN, meaning "not yet", becomes null)."""
    if not dataclasses.is_dataclass(progress) or isinstance(progress, type):
        return None
    return {k: None if isinstance(v, float) and math.isnan(v) else v
            for k, v in dataclasses.asdict(progress).items()}
