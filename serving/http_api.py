"""The HTTP API as a FastAPI app over a `Backend`: the replica in Serve, or an in-process one in tests.

Routes: POST /v1/predict (JSON or multipart), GET /v1/model, GET /v1/versions, GET /v1/unknown, POST
/v1/feedback, POST /v1/tasks/{name}/train, DELETE /v1/tasks/{name}, POST /v1/model/rollback, GET
/healthz; the Open Inference Protocol under /v2 (`serving/open_inference.py`); the console at /
(`serving/console.py`); OpenAPI at
/openapi.json, drawn at /docs and /redoc from assets served here (`serving/api_docs.py`).
Every refusal is an `ErrorBody` naming the field at fault.
"""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from serving.api_docs import add_api_docs
from serving.auth import CHALLENGE, authorized
from serving.backend import Backend, Overloaded, UpdaterUnavailable
from serving.config import LimitsConfig
from serving.console import add_console
from serving.decode import (
    DecodedSample,
    RequestError,
    decode_feedback,
    decode_form_request,
    decode_json_request,
    parse_json,
    read_body,
)
from serving.open_inference import add_open_inference_routes
from serving.predictor import NoModelError
from serving.refusals import refusal_answer
from serving.schemas import (
    ErrorBody,
    FeedbackAccepted,
    FeedbackRequest,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    RollbackRequest,
    RolledBack,
    TaskDropped,
    TrainStarted,
    UnknownAnswer,
    VersionInfo,
)
from updater.errors import UpdaterRefusal

log = logging.getLogger(__name__)

BATCH_SIZE_HEADER = "x-rebq-batch-size"
BATCH_ID_HEADER = "x-rebq-batch-id"


def error_response(status: int, field: str | None, detail: str) -> JSONResponse:
    return JSONResponse(ErrorBody(field=field, detail=detail).model_dump(), status_code=status)


def media_type(request: Request) -> str:
    """The request's content type without parameters; JSON when none is given."""
    return request.headers.get("content-type", "application/json").split(";")[0].strip().lower()


def replay_request(request: Request, body: bytes) -> Request:
    """A request whose body is `body`, already read, so that the form parser can read it again."""

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive=receive)


async def decode_form(request: Request, body: bytes, limits: LimitsConfig) -> DecodedSample:
    try:
        form = await replay_request(request, body).form(max_files=1, max_fields=len(("text", "top_k")) + 1)
    except (MultiPartException, StarletteHTTPException) as error:
        detail = getattr(error, "detail", None) or getattr(error, "message", str(error))
        raise RequestError(422, None, f"body: not a valid multipart form: {detail}") from error
    fields: dict[str, str] = {}
    image_bytes = None
    for name, value in form.multi_items():
        if name in fields or (name == "image" and image_bytes is not None):
            raise RequestError(422, name, f"{name}: given more than once")
        if isinstance(value, UploadFile):
            if name != "image":
                raise RequestError(422, name, f"{name}: unexpected file part (only image is a file)")
            image_bytes = await value.read()
        else:
            fields[name] = value
    return decode_form_request(fields, image_bytes, limits)


async def decode_predict_body(request: Request, limits: LimitsConfig) -> DecodedSample:
    body = await read_body(request, limits.max_body_bytes)
    content_type = media_type(request)
    if content_type == "multipart/form-data":
        return await decode_form(request, body, limits)
    if content_type != "application/json":
        detail = f"content-type: {content_type} is neither application/json nor multipart/form-data"
        raise RequestError(415, "content-type", detail)
    return decode_json_request(body, limits)


COMPONENT_REF = "#/components/schemas/{model}"


def body_schema(model: type[BaseModel]) -> tuple[dict, dict]:
    """`model`'s JSON schema, its nested models referred to in the document's components; and those models."""
    schema = model.model_json_schema(ref_template=COMPONENT_REF)
    return schema, schema.pop("$defs", {})


def json_body(model: type[BaseModel]) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": body_schema(model)[0]}}}}


PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": body_schema(PredictRequest)[0]},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "text": {"type": "string"},
                        "image": {"type": "string", "format": "binary"},
                        "top_k": {"type": "integer", "minimum": 1},
                    },
                }
            },
        },
    }
}
FEEDBACK_BODY = json_body(FeedbackRequest)
ROLLBACK_BODY = json_body(RollbackRequest)
BODY_COMPONENTS = {
    name: schema
    for model in (PredictRequest, FeedbackRequest, RollbackRequest)
    for name, schema in body_schema(model)[1].items()
}

ERRORS = {status: {"model": ErrorBody} for status in (401, 409, 413, 415, 422, 503)}
NOT_FOUND = {404: {"model": ErrorBody}}


def document_bodies(app: FastAPI) -> None:
    """The OpenAPI document also holds the models that the hand-read request bodies refer to."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            components = generate().setdefault("components", {}).setdefault("schemas", {})
            components.update(BODY_COMPONENTS)
        return app.openapi_schema

    app.openapi = openapi


async def read_json_body(request: Request, limits: LimitsConfig) -> bytes:
    body = await read_body(request, limits.max_body_bytes)
    content_type = media_type(request)
    if content_type != "application/json":
        raise RequestError(415, "content-type", f"content-type: {content_type} is not application/json")
    return body


def unauthorized(token: str | None, request: Request) -> JSONResponse | None:
    """A 401 answer when `token` is set and the request does not carry it; None when it may go on."""
    if token is None or authorized(request.headers.get("authorization"), token):
        return None
    response = error_response(401, "authorization", "authorization: a valid bearer token is required")
    response.headers["www-authenticate"] = CHALLENGE
    return response


async def change_model(token: str | None, request: Request, call, status: int) -> JSONResponse:
    """`call()`'s answer (a response model) with `status`, once the request is authorised. A body that
    `call` refuses answers its `RequestError`; a refusal of the updater, its status (`serving/refusals.py`);
    no updater running, 503."""
    if (refusal := unauthorized(token, request)) is not None:
        return refusal
    try:
        answer = await call()
    except RequestError as error:
        return error_response(error.status, error.field, error.detail)
    except UpdaterRefusal as error:
        return error_response(*refusal_answer(error))
    except UpdaterUnavailable as error:
        return error_response(503, None, str(error))
    return JSONResponse(answer.model_dump(), status_code=status)


def build_http_app(
    backend: Backend,
    limits: LimitsConfig,
    max_feedback_samples: int = 256,
    token: str | None = None,
    protect_predictions: bool = False,
) -> FastAPI:
    app = FastAPI(
        title="rebq-serve",
        description="Predictions with missing modalities, from a continual learner.",
        docs_url=None,
        redoc_url=None,
    )
    add_api_docs(app)
    add_console(app)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        return error_response(422, field, f"{field}: {first['msg']}")

    @app.post("/v1/predict", response_model=PredictResponse, responses=ERRORS, openapi_extra=PREDICT_BODY)
    async def predict(request: Request):
        """Classify one sample; the image (base64 in JSON, a file in multipart) or the text may be missing."""
        start, pattern = time.perf_counter(), "invalid"
        refusal = unauthorized(token, request) if protect_predictions else None
        if refusal is not None:
            backend.observe("/v1/predict", 401, pattern, time.perf_counter() - start)
            return refusal
        try:
            sample = await decode_predict_body(request, limits)
            pattern = sample.pattern
            answer, batch = await backend.predict(sample)
            headers = {BATCH_SIZE_HEADER: str(batch.size), BATCH_ID_HEADER: batch.id}
            response = JSONResponse(answer.model_dump(), headers=headers)
        except RequestError as error:
            response = error_response(error.status, error.field, error.detail)
        except NoModelError as error:
            response = error_response(409, None, str(error))
        except Overloaded as error:
            response = error_response(503, None, str(error))
            response.headers["retry-after"] = str(error.retry_after_s)
        backend.observe("/v1/predict", response.status_code, pattern, time.perf_counter() - start)
        return response

    @app.get("/v1/model", response_model=ModelInfo)
    async def model_info() -> ModelInfo:
        """The version served, its tasks and classes, the frozen towers, and the updater's state."""
        info = backend.model_info()
        return info.model_copy(update={"updater": await backend.updater_status()})

    @app.get("/v1/versions", response_model=list[VersionInfo])
    async def versions() -> list[VersionInfo]:
        """Every version in the state directory, oldest first: its tasks, and what its gate measured."""
        return await asyncio.to_thread(backend.versions)  # reads every manifest: off the batching loop

    @app.get("/v1/unknown", response_model=list[UnknownAnswer])
    async def recent_unknown() -> list[UnknownAnswer]:
        """This replica's latest answers flagged unknown, newest first: candidates for a new task."""
        return backend.recent_unknown()

    @app.post(
        "/v1/feedback",
        status_code=202,
        response_model=FeedbackAccepted,
        openapi_extra=FEEDBACK_BODY,
        responses={**ERRORS, 503: {"model": ErrorBody}},
    )
    async def feedback(request: Request):
        """Labelled samples for the updater; answered only once they are durably in the feedback log."""
        start = time.perf_counter()
        if (refusal := unauthorized(token, request)) is not None:
            backend.observe("/v1/feedback", 401, "feedback", time.perf_counter() - start)
            return refusal
        try:
            samples = decode_feedback(await read_json_body(request, limits), limits, max_feedback_samples)
            accepted, offset = await backend.feedback(samples)
            response = JSONResponse(
                FeedbackAccepted(accepted=accepted, offset=offset).model_dump(), status_code=202
            )
        except RequestError as error:
            response = error_response(error.status, error.field, error.detail)
        except UpdaterUnavailable as error:
            response = error_response(503, None, str(error))
            response.headers["retry-after"] = "5"
        backend.observe("/v1/feedback", response.status_code, "feedback", time.perf_counter() - start)
        return response

    @app.post(
        "/v1/tasks/{name}/train", status_code=202, response_model=TrainStarted, responses={**ERRORS, **NOT_FOUND}
    )
    async def train_task(name: str, request: Request):
        """Train a buffered task now, without waiting for it to be due."""

        async def train() -> TrainStarted:
            await backend.train_task(name)
            return TrainStarted(task=name, state="training")

        return await change_model(token, request, train, 202)

    @app.delete("/v1/tasks/{name}", response_model=TaskDropped, responses={**ERRORS, **NOT_FOUND})
    async def drop_task(name: str, request: Request):
        """Drop a buffered task that is not training (one the gate refused, say): its samples are never trained."""

        async def drop() -> TaskDropped:
            return TaskDropped(task=name, dropped=await backend.drop_task(name))

        return await change_model(token, request, drop, 200)

    @app.post(
        "/v1/model/rollback",
        response_model=RolledBack,
        openapi_extra=ROLLBACK_BODY,
        responses={**ERRORS, **NOT_FOUND},
    )
    async def rollback(request: Request):
        """Publish an earlier version; every replica installs it between two batches. Needs no updater."""

        async def roll_back() -> RolledBack:
            version = parse_json(await read_json_body(request, limits), RollbackRequest).version
            await asyncio.to_thread(backend.rollback, version)  # reads the version's files: off the loop
            return RolledBack(version=version)

        return await change_model(token, request, roll_back, 200)

    @app.get("/healthz")
    async def healthz() -> dict:
        """200 once this replica has loaded its towers; which replica answered, and on which node."""
        return {"status": "ok", "version": backend.model_info().version, **backend.replica_info()}

    add_open_inference_routes(app, backend, limits, token, protect_predictions)
    document_bodies(app)
    return app
