"""The HTTP API as a FastAPI app over a `Backend`: the replica in Serve, or an in-process one in tests.

Routes: POST /v1/predict (JSON or multipart), GET /v1/model, GET /healthz; OpenAPI at /docs.
Every refusal is an `ErrorBody` naming the field at fault.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from serving.config import LimitsConfig
from serving.decode import DecodedSample, RequestError, decode_form_request, decode_json_request
from serving.predictor import NoModelError
from serving.schemas import ErrorBody, ModelInfo, PredictRequest, PredictResponse

log = logging.getLogger(__name__)

BATCH_SIZE_HEADER = "x-rebq-batch-size"


class Backend(Protocol):
    async def predict(self, sample: DecodedSample) -> tuple[PredictResponse, int]:
        """The answer and the size of the batch that computed it; raises NoModelError before any task."""

    def model_info(self) -> ModelInfo: ...

    def observe(self, route: str, status: int, pattern: str, seconds: float) -> None:
        """Called once per request, for metrics."""


def error_response(status: int, field: str | None, detail: str) -> JSONResponse:
    return JSONResponse(ErrorBody(field=field, detail=detail).model_dump(), status_code=status)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with a 413 as soon as it is known to be over `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestError(413, None, f"body: {declared} bytes is over the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, None, f"body: over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


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
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return await decode_form(request, body, limits)
    if content_type != "application/json":
        detail = f"content-type: {content_type} is neither application/json nor multipart/form-data"
        raise RequestError(415, "content-type", detail)
    return decode_json_request(body, limits)


PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": PredictRequest.model_json_schema()},
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

ERRORS = {status: {"model": ErrorBody} for status in (409, 413, 415, 422)}


def build_http_app(backend: Backend, limits: LimitsConfig) -> FastAPI:
    app = FastAPI(title="rebq-serve", description="Predictions with missing modalities, from a continual learner.")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        return error_response(422, field, f"{field}: {first['msg']}")

    @app.post("/v1/predict", response_model=PredictResponse, responses=ERRORS, openapi_extra=PREDICT_BODY)
    async def predict(request: Request):
        """Classify one sample; the image (base64 in JSON, a file in multipart) or the text may be missing."""
        start, pattern = time.perf_counter(), "invalid"
        try:
            sample = await decode_predict_body(request, limits)
            pattern = sample.pattern
            answer, batch_size = await backend.predict(sample)
            response = JSONResponse(answer.model_dump(), headers={BATCH_SIZE_HEADER: str(batch_size)})
        except RequestError as error:
            response = error_response(error.status, error.field, error.detail)
        except NoModelError as error:
            response = error_response(409, None, str(error))
        backend.observe("/v1/predict", response.status_code, pattern, time.perf_counter() - start)
        return response

    @app.get("/v1/model", response_model=ModelInfo)
    async def model_info() -> ModelInfo:
        """The version served, its tasks and classes, and the frozen towers."""
        return backend.model_info()

    @app.get("/healthz")
    async def healthz() -> dict:
        """200 once this replica has loaded its towers."""
        return {"status": "ok", "version": backend.model_info().version}

    return app
