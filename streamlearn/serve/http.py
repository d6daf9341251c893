"""The HTTP front end: Open Inference Protocol v2 under /v2, streamlearn's own API under /v1.

Handlers translate JSON (and, for infer, the binary tensor data extension: binary.py) to
:class:`ServingCore` calls and back; they never touch the learner. Every error body is
``{"error": "..."}`` (the v2 error format). The OpenAPI document is at /openapi.json,
rendered at /docs (Swagger UI) and /redoc (ReDoc) from assets the daemon serves itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

from streamlearn._version import __version__
from streamlearn.core.errors import RequestError
from streamlearn.core.logging import get_logger
from streamlearn.serve import binary, schemas
from streamlearn.serve.asgi import TRANSPORT, BodyLimit, RequestMetrics
from streamlearn.serve.auth import Scope
from streamlearn.serve.core import CHECKPOINT_WAIT_S, InferAnswer, ServingCore
from streamlearn.serve.tensors import TensorIn

log = get_logger(__name__)

# How long POST /v1/learn waits for the learner to queue the samples (it answers from its
# IPC thread, not its learning loop: milliseconds unless the process is starved).
LEARNER_WAIT_S = 10.0
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorBody} for code in (400, 401, 403, 404, 413, 422, 429, 503)
}
_bearer = HTTPBearer(auto_error=False, description="serve.auth_token")
_REF = "#/components/schemas/{model}"
_BINARY_SCHEMA = {"type": "string", "format": "binary"}
_INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    200: {
        "description": "JSON; or, when outputs are asked for as binary, the JSON header "
        f"({binary.HEADER} bytes) followed by those outputs' bytes",
        "content": {binary.MEDIA_TYPE: {"schema": _BINARY_SCHEMA}},
    },
}
_INFER_EXTRA: dict[str, Any] = {
    "parameters": [
        {
            "name": binary.HEADER,
            "in": "header",
            "required": False,
            "schema": {"type": "integer", "minimum": 0},
            "description": "binary tensor data extension: the body is this many bytes "
            "of JSON followed by the binary inputs' data",
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": _REF.format(model="InferRequest")}},
            binary.MEDIA_TYPE: {"schema": _BINARY_SCHEMA},
        },
    },
}
_LEARN_EXTRA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="LearnRequest")}}},
    }
}
# What `curl -d` (a form) and some clients (text) label JSON with: taken when the body
# parses as JSON, which a real form or text never does.
_LENIENT_TYPES = frozenset({"application/x-www-form-urlencoded", "text/plain"})
_SEND_JSON = "send a JSON object with the header Content-Type: application/json"
# Where the documentation pages' scripts, styles and icon are served from.
DOCS_ASSETS = "/docs/assets"
Body = TypeVar("Body", bound=BaseModel)


def create_app(core: ServingCore, exposition: Callable[[], bytes] | None = None) -> FastAPI:
    # strict_content_type off: v2 clients may send JSON without a Content-Type header.
    # The documentation pages load their assets from this app, not from a CDN: a daemon
    # often runs where nothing outside is reachable. validatorUrl off: Swagger UI would
    # send the document to validator.swagger.io for a badge.
    app = FastAPIOffline(
        title="streamlearn",
        version=__version__,
        strict_content_type=False,
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"validatorUrl": None},
        description="Open Inference Protocol v2 (/v2) and streamlearn's own "
        "endpoints (/v1) over a model that keeps learning.",
    )
    read, write = _auth(core, "read"), _auth(core, "write")
    _error_handlers(app, core)
    _v2_routes(app, core, read)
    _v1_routes(app, core, read, write)
    _document(app, core, read)

    expose = exposition or (lambda: generate_latest(core.metrics.registry))

    @app.get("/metrics", response_class=PlainTextResponse, tags=["operations"])
    def metrics() -> Response:
        return Response(expose(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(
        BodyLimit,
        max_bytes=core.serve.max_body_bytes,
        on_reject=lambda reason: _rejected(core, reason),
    )
    app.add_middleware(RequestMetrics, metrics=core.metrics)
    return app


def _rejected(core: ServingCore, reason: str) -> None:
    core.metrics.requests_rejected.labels(transport=TRANSPORT, reason=reason).inc()


def _auth(core: ServingCore, scope: Scope) -> Any:
    def check(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        header = f"{credentials.scheme} {credentials.credentials}" if credentials else None
        core.auth.check(scope, header)

    return Depends(check)


def _error_handlers(app: FastAPI, core: ServingCore) -> None:
    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> Response:
        _rejected(core, exc.reason)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"error": exc.message}, exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        # A union reports one error per member: the deepest is from the member whose shape
        # the input has (x as an object with a bad value: not "x: must be a list").
        deepest = max(errors, key=lambda e: len(e["loc"]))
        first = next((e for e in errors if e["type"] == "finite_number"), deepest)
        if first["type"] == "json_invalid":
            _rejected(core, "malformed_json")
            position = first["loc"][-1]
            reason = first.get("ctx", {}).get("error", "cannot parse")
            return JSONResponse({"error": f"malformed JSON at character {position}: {reason}"}, 400)
        _rejected(core, "non_finite" if first["type"] == "finite_number" else "schema")
        if tuple(first["loc"]) == ("body",):
            return JSONResponse(
                {"error": "body: must be a JSON object (Content-Type: application/json)"}, 422
            )
        # Union members show up in loc as type names ("list[float]"): not the user's field.
        where = ".".join(str(p) for p in first["loc"][1:] if isinstance(p, int) or p.isidentifier())
        return JSONResponse({"error": f"{where}: {first['msg']}"}, 422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        # Its headers too: a 405 must say which methods are allowed (Allow, RFC 9110).
        return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=exc.headers)


def _v2_routes(app: FastAPI, core: ServingCore, auth_read: Any) -> None:
    read = [auth_read]

    @app.get(
        "/v2",
        response_model=schemas.ServerMetadata,
        tags=["v2"],
        dependencies=read,
        responses=_ERRORS,
    )
    async def server_metadata() -> Response:
        return JSONResponse(core.server_metadata())

    @app.get("/v2/health/live", response_model=schemas.LiveBody, tags=["v2"])
    async def live() -> Response:
        return JSONResponse({"live": core.live()})

    @app.get(
        "/v2/health/ready",
        response_model=schemas.ReadyBody,
        tags=["v2"],
        responses={503: {"model": schemas.ReadyBody}},
    )
    async def ready() -> Response:
        ok = core.ready()
        return JSONResponse({"ready": ok}, 200 if ok else 503)

    @app.get(
        "/v2/models/{name}",
        response_model=schemas.ModelMetadata,
        tags=["v2"],
        dependencies=read,
        responses=_ERRORS,
    )
    async def model_metadata(name: str) -> Response:
        return JSONResponse(core.model_metadata(name))

    # 503 is "not ready" here, answered as a ReadyBody like 200, not an error.
    @app.get(
        "/v2/models/{name}/ready",
        response_model=schemas.ReadyBody,
        tags=["v2"],
        dependencies=read,
        responses={**_ERRORS, 503: {"model": schemas.ReadyBody}},
    )
    async def model_ready(name: str) -> Response:
        ok = core.model_ready(name)
        return JSONResponse({"name": name, "ready": ok}, 200 if ok else 503)

    @app.post(
        "/v2/models/{name}/infer",
        response_model=schemas.InferResponse,
        tags=["v2"],
        dependencies=read,
        responses=_INFER_RESPONSES,
        openapi_extra=_INFER_EXTRA,
    )
    async def infer(name: str, request: Request) -> Response:
        # The body is read here rather than declared: it may be binary (see binary.py).
        parsed, inputs = _infer_request(await request.body(), request.headers)
        binary_out = binary.binary_outputs(parsed.parameters, parsed.outputs)
        outputs = [o.name for o in parsed.outputs] if parsed.outputs else None
        rows = inputs[0].shape[0] if inputs and inputs[0].shape else 0
        if rows <= core.serve.inline_max_rows:
            answer = core.infer(name, inputs, outputs, parsed.id)
        else:
            answer = await run_in_threadpool(core.infer, name, inputs, outputs, parsed.id)
        return _infer_response(answer, binary_out)


def _infer_request(
    body: bytes, headers: Headers
) -> tuple[schemas.InferRequest | schemas.InferHeader, list[TensorIn]]:
    header_length = headers.get(binary.HEADER)
    if header_length is None:
        request = _validated(schemas.InferRequest, _json_body(body, headers.get("content-type")))
        return request, [TensorIn(t.name, t.datatype, t.shape, t.data) for t in request.inputs]
    header, data = binary.split(body, header_length)
    parsed = _validated(schemas.InferHeader, binary.parse_header(header))
    return parsed, binary.tensors_in(parsed.inputs, data)


def _json_body(body: bytes, content_type: str | None) -> Any:
    """The body parsed as JSON, as FastAPI parses a declared JSON body (so its errors read
    as they always did), and also when a form or text type labels it (``curl -d``). Any
    other type is refused with a 422 that names the header to send."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if not body:
        return body  # validation answers "must be a JSON object"
    if media_type in _LENIENT_TYPES:
        return _lenient_json(body, media_type)
    if media_type and not _is_json(media_type):
        hint = (
            f"; binary tensor data also needs the {binary.HEADER} header"
            if media_type == binary.MEDIA_TYPE
            else ""
        )
        raise RequestError(
            422, "schema", f"body: Content-Type {media_type} is not JSON; {_SEND_JSON}{hint}"
        )
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": exc.msg},
                }
            ]
        ) from None
    except UnicodeDecodeError:
        raise HTTPException(400, "There was an error parsing the body") from None


def _lenient_json(body: bytes, media_type: str) -> Any:
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise RequestError(
            422,
            "schema",
            f"body: sent as {media_type} and not JSON "
            f"(character {exc.pos}: {exc.msg}); {_SEND_JSON}",
        ) from None
    except UnicodeDecodeError:
        raise RequestError(
            422, "schema", f"body: sent as {media_type} and not UTF-8 JSON; {_SEND_JSON}"
        ) from None


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _validated(model: type[Body], value: Any) -> Body:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        # Located under "body" as FastAPI does, for the RequestValidationError handler.
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        ) from None


def _infer_response(answer: InferAnswer, binary_out: binary.BinaryOutputs) -> Response:
    content = _infer_json(answer)
    encoded = binary.encode(content, answer.outputs, binary_out)
    if encoded is None:
        return JSONResponse(content)
    body, header_length = encoded
    return Response(body, media_type=binary.MEDIA_TYPE, headers={binary.HEADER: str(header_length)})


def _infer_json(answer: InferAnswer) -> dict[str, Any]:
    return {
        "model_name": answer.model_name,
        "model_version": answer.model_version,
        "id": answer.id,
        "parameters": answer.parameters,
        "outputs": [
            {"name": t.name, "datatype": t.datatype, "shape": t.shape, "data": t.data}
            for t in answer.outputs
        ],
    }


def _document(app: FastAPI, core: ServingCore, auth_read: Any) -> None:
    """What FastAPI cannot see, added to the OpenAPI document.

    InferRequest goes into the components: infer reads its body itself, so FastAPI does not
    see the model, and the requestBody of _INFER_EXTRA refers to it. And unless
    serve.auth_infer is set, the read endpoints' token is optional (``{}`` among their
    security requirements): they answer without one, and a client (or a fuzzer) reading the
    document must not expect a 401 there.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            components = document.setdefault("components", {}).setdefault("schemas", {})
            # Infer and learn read their bodies themselves: FastAPI sees neither model.
            for model in (schemas.InferRequest, schemas.LearnRequest):
                schema = model.model_json_schema(ref_template=_REF)
                components.update(schema.pop("$defs", {}))
                components[model.__name__] = schema
            if not core.auth.protect_reads:
                _optional_token(app, document, auth_read)
        return app.openapi_schema  # type: ignore[return-value]  # set by generate()

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def _optional_token(app: FastAPI, document: dict[str, Any], auth_read: Any) -> None:
    for route in app.routes:
        if isinstance(route, APIRoute) and auth_read in route.dependencies:
            for method in route.methods or ():
                operation = document["paths"][route.path_format][method.lower()]
                operation["security"] = [{}, *operation.get("security", [])]


def _v1_routes(app: FastAPI, core: ServingCore, auth_read: Any, auth_write: Any) -> None:
    read, write = [auth_read], [auth_write]

    @app.get("/v1/status", tags=["v1"], dependencies=read, responses=_ERRORS)
    async def status() -> Response:
        return JSONResponse(core.status())

    @app.get("/v1/models", tags=["v1"], dependencies=read, responses=_ERRORS)
    async def models() -> Response:
        return JSONResponse(core.models())

    @app.get(
        "/v1/experts",
        response_model=schemas.Experts,
        tags=["v1"],
        dependencies=read,
        responses=_ERRORS,
    )
    async def experts(
        events: Annotated[int, Query(ge=0, le=1_000, description="newest pool decisions")] = 20,
    ) -> Response:
        return JSONResponse(core.experts(events))

    @app.get(
        "/v1/drift-events",
        response_model=schemas.DriftEvents,
        tags=["v1"],
        dependencies=read,
        responses=_ERRORS,
    )
    async def drift_events(
        limit: Annotated[int | None, Query(ge=0, description="newest this many")] = None,
        expert: Annotated[str | None, Query(description="only this expert's")] = None,
        kind: Annotated[Literal["drift", "warning", "input_shift"] | None, Query()] = None,
    ) -> Response:
        return JSONResponse({"events": core.drift_events(limit, expert, kind)})

    @app.post(
        "/v1/learn",
        response_model=schemas.LearnAccepted,
        status_code=202,
        tags=["v1"],
        dependencies=write,
        responses=_ERRORS,
        openapi_extra=_LEARN_EXTRA,
    )
    async def learn(request: Request) -> Response:
        # Read here rather than declared, as infer's: JSON may come labeled as a form.
        body = _validated(
            schemas.LearnRequest,
            _json_body(await request.body(), request.headers.get("content-type")),
        )
        future = core.learn([s.model_dump() for s in body.samples])
        try:
            queued = await asyncio.wait_for(asyncio.wrap_future(future), LEARNER_WAIT_S)
        except TimeoutError:
            raise RequestError(
                503,
                "learner_busy",
                f"the learner did not take the samples within {LEARNER_WAIT_S:.0f} s; retry later",
            ) from None
        return JSONResponse(queued, 202)

    @app.post(
        "/v1/forget",
        response_model=schemas.Forgotten,
        tags=["v1"],
        dependencies=write,
        responses={**_ERRORS, 409: {"model": schemas.ErrorBody}},
    )
    async def forget(request: Request) -> Response:
        body = _validated(
            schemas.ForgetRequest,
            _json_body(await request.body(), request.headers.get("content-type")),
        )
        future = core.forget([s.model_dump() for s in body.samples], body.expert)
        try:
            done = await asyncio.wait_for(asyncio.wrap_future(future), CHECKPOINT_WAIT_S)
        except TimeoutError:
            raise RequestError(
                503,
                "learner_busy",
                f"the learner did not take the request within {CHECKPOINT_WAIT_S:.0f} s",
            ) from None
        return JSONResponse(done)

    @app.post(
        "/v1/checkpoint",
        response_model=schemas.CheckpointDone,
        tags=["v1"],
        dependencies=write,
        responses=_ERRORS,
    )
    async def checkpoint() -> Response:
        future = core.request_checkpoint()
        try:
            done = await asyncio.wait_for(asyncio.wrap_future(future), CHECKPOINT_WAIT_S)
        except TimeoutError:
            future.cancel()
            raise RequestError(
                503,
                "learner_busy",
                f"the learner did not take the checkpoint request within {CHECKPOINT_WAIT_S:.0f} s",
            ) from None
        if not done["saved"]:
            raise RequestError(503, "checkpoint_failed", done.get("error", "not saved"))
        return JSONResponse(done)
