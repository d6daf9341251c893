"""The gRPC front end: ``inference.GRPCInferenceService`` of the Open Inference Protocol v2.

Inputs are read from typed ``contents`` or from ``raw_input_contents`` (what Triton's
clients send); a request with raw inputs gets raw outputs back, as Triton does. Errors map
from the HTTP status of :class:`RequestError` to a gRPC status code. Oversized messages are
refused by gRPC itself with RESOURCE_EXHAUSTED before any of this code runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from functools import wraps
from typing import Any, TypeVar

import grpc
import numpy as np

from streamlearn.core.errors import RequestError
from streamlearn.core.logging import get_logger
from streamlearn.serve.auth import Scope
from streamlearn.serve.core import CHECKPOINT_WAIT_S, InferAnswer, ServingCore
from streamlearn.serve.proto import grpc_predict_v2_pb2 as pb
from streamlearn.serve.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from streamlearn.serve.proto import streamlearn_v1_pb2 as v1
from streamlearn.serve.proto import streamlearn_v1_pb2_grpc as v1_grpc
from streamlearn.serve.tensors import NUMPY_TYPES, TensorIn, from_raw, to_raw

log = get_logger(__name__)
TRANSPORT = "grpc"
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}
# Typed contents field for each datatype (FP16 has none: it travels as raw bytes only).
_CONTENTS = {
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
}
_OUT_CONTENTS = {"FP32": "fp32_contents", "INT64": "int64_contents", "BYTES": "bytes_contents"}

Handler = TypeVar("Handler", bound=Callable[..., Any])


def _handled(method: Handler) -> Handler:
    """Metrics for every call, and RequestError -> a gRPC status with its message."""
    name = method.__name__

    @wraps(method)
    def call(self: _Servicer, request: Any, context: grpc.ServicerContext) -> Any:
        metrics = self.core.metrics
        began = time.perf_counter()
        code = grpc.StatusCode.OK
        in_flight = metrics.requests_in_flight.labels(transport=TRANSPORT)
        in_flight.inc()
        try:
            return method(self, request, context)
        except RequestError as exc:
            code = _CODES.get(exc.status, grpc.StatusCode.INTERNAL)
            metrics.requests_rejected.labels(transport=TRANSPORT, reason=exc.reason).inc()
            context.abort(code, exc.message)
        except Exception as exc:  # a bug: answered, logged and counted, never a hang
            code = grpc.StatusCode.INTERNAL
            log.exception("request_failed", transport=TRANSPORT, endpoint=name)
            context.abort(code, f"internal error: {type(exc).__name__}")
        finally:
            in_flight.dec()
            metrics.request_latency.labels(transport=TRANSPORT, endpoint=name).observe(
                time.perf_counter() - began
            )
            metrics.requests.labels(transport=TRANSPORT, endpoint=name, code=code.name).inc()

    return call  # type: ignore[return-value]


class _Servicer:
    """A gRPC service over ``ServingCore``; calls authorize from the metadata as HTTP does
    from its header."""

    def __init__(self, core: ServingCore) -> None:
        self.core = core

    def _authorize(self, context: grpc.ServicerContext, scope: Scope = "read") -> None:
        metadata = dict(context.invocation_metadata())
        header = metadata.get("authorization")
        self.core.auth.check(scope, header if isinstance(header, str) else None)


class LearnerServicer(_Servicer):
    """``streamlearn.v1.Learner``: the /v1 calls the inference protocol has none for."""

    @_handled
    def Forget(self, request: v1.ForgetRequest, context: grpc.ServicerContext) -> v1.ForgetResponse:
        self._authorize(context, "write")
        items: list[Mapping[str, Any]] = [
            {"x": list(s.x), "y": _label(s, i)} for i, s in enumerate(request.samples)
        ]
        future = self.core.forget(items, request.expert or None)
        try:
            done = future.result(timeout=CHECKPOINT_WAIT_S)
        except FutureTimeout:
            raise RequestError(
                503,
                "learner_busy",
                f"the learner did not take the request within {CHECKPOINT_WAIT_S:.0f} s",
            ) from None
        return v1.ForgetResponse(forgotten=int(done["forgotten"]), expert=str(done["expert"]))


def _label(sample: v1.LabeledSample, index: int) -> int | str | float:
    which = sample.WhichOneof("y")
    if which is None:
        raise RequestError(422, "schema", f"samples[{index}].y: required for forgetting")
    value: int | str | float = getattr(sample, which)
    return value


class InferenceServicer(_Servicer):
    """The Open Inference Protocol v2 gRPC service, translating to and from ``ServingCore``."""

    @_handled
    def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.core.live())

    @_handled
    def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.core.ready())

    @_handled
    def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.ServicerContext
    ) -> pb.ModelReadyResponse:
        self._authorize(context)
        return pb.ModelReadyResponse(ready=self.core.model_ready(request.name, request.version))

    @_handled
    def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.ServicerContext
    ) -> pb.ServerMetadataResponse:
        self._authorize(context)
        return pb.ServerMetadataResponse(**self.core.server_metadata())

    @_handled
    def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.ServicerContext
    ) -> pb.ModelMetadataResponse:
        self._authorize(context)
        meta = self.core.model_metadata(request.name)
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[_tensor_metadata(t) for t in meta["inputs"]],
            outputs=[_tensor_metadata(t) for t in meta["outputs"]],
        )

    @_handled
    def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.ServicerContext
    ) -> pb.ModelInferResponse:
        self._authorize(context)
        raw = list(request.raw_input_contents)
        if raw and len(raw) != len(request.inputs):
            raise RequestError(
                422,
                "shape",
                f"raw_input_contents: {len(raw)} entries for {len(request.inputs)} inputs",
            )
        inputs = [_tensor_in(t, raw[i] if raw else None, i) for i, t in enumerate(request.inputs)]
        answer = self.core.infer(
            request.model_name,
            inputs,
            [o.name for o in request.outputs] or None,
            request.id or None,
            request.model_version,
        )
        return _infer_response(answer, raw=bool(raw))


def _tensor_metadata(meta: dict[str, Any]) -> pb.ModelMetadataResponse.TensorMetadata:
    out = pb.ModelMetadataResponse.TensorMetadata(
        name=meta["name"], datatype=meta["datatype"], shape=meta["shape"]
    )
    for key, value in meta.get("parameters", {}).items():
        out.parameters[key].string_param = json.dumps(value)
    return out


def _tensor_in(
    tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None, index: int
) -> TensorIn:
    datatype = tensor.datatype
    data: np.ndarray[Any, Any] = np.empty(0)
    if raw is not None:
        data = from_raw(raw, datatype, f"raw_input_contents[{index}]")
    elif datatype in _CONTENTS:
        values = getattr(tensor.contents, _CONTENTS[datatype])
        data = np.array(values, dtype=NUMPY_TYPES[datatype])
    return TensorIn(tensor.name, datatype, list(tensor.shape), data)


def _infer_response(answer: InferAnswer, raw: bool) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(
        model_name=answer.model_name, model_version=answer.model_version, id=answer.id or ""
    )
    for key, value in answer.parameters.items():
        response.parameters[key].string_param = str(value)
    for tensor in answer.outputs:
        out = response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        if raw:
            response.raw_output_contents.append(to_raw(tensor))
        else:
            values = (
                [str(v).encode() for v in tensor.data]
                if tensor.datatype == "BYTES"
                else tensor.data
            )
            getattr(out.contents, _OUT_CONTENTS[tensor.datatype]).extend(values)
    return response


class GrpcServer:
    """One serving process's gRPC server. Every serving process binds the same port with
    SO_REUSEPORT (the supervisor holds a bound socket on it so nobody else can), and the
    kernel spreads connections over them."""

    def __init__(self, core: ServingCore, host: str, port: int) -> None:
        serve = core.serve
        self.server = grpc.server(
            ThreadPoolExecutor(serve.grpc_workers, thread_name_prefix="grpc"),
            options=[
                ("grpc.max_receive_message_length", serve.grpc_max_message_bytes),
                ("grpc.max_send_message_length", serve.grpc_max_message_bytes),
                ("grpc.so_reuseport", 1),
            ],
        )
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(core), self.server)
        v1_grpc.add_LearnerServicer_to_server(LearnerServicer(core), self.server)
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.port = self.server.add_insecure_port(target)
        if self.port == 0:
            raise OSError(f"gRPC could not bind {target}")

    def start(self) -> None:
        self.server.start()

    def stop(self, grace_s: float) -> None:
        """Refuse new calls at once, give running ones ``grace_s`` to finish."""
        self.server.stop(grace_s).wait(grace_s + 1.0)
