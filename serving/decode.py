"""From HTTP bodies to samples: JSON or multipart in, a checked `DecodedSample` out, or a `RequestError`."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image
from pydantic import ValidationError
from starlette.requests import Request

from model.modality import Modality, given_text, missing_pattern
from model.preprocess import ImageDecodeError, ImageTooLargeError, decode_image
from serving.config import LimitsConfig
from serving.schemas import FeedbackRequest, PredictRequest
from updater.feedback_log import NewFeedback

MULTIPART_FIELDS = ("text", "image", "top_k")


class RequestError(Exception):
    """Something a client sent that cannot be served: an HTTP status, the field at fault, and why."""

    def __init__(self, status: int, field: str | None, detail: str):
        super().__init__(detail)
        self.status = status
        self.field = field
        self.detail = detail


@dataclass(frozen=True)
class DecodedSample:
    image: Image.Image | None
    text: str | None
    top_k: int

    @property
    def present(self) -> Modality:
        return (Modality.IMAGE if self.image is not None else Modality.NONE) | (
            Modality.TEXT if self.text is not None else Modality.NONE
        )

    @property
    def missing(self) -> list[str]:
        return [name for name, there in (("image", self.image), ("text", self.text)) if there is None]

    @property
    def pattern(self) -> str:
        return missing_pattern(self.present)


def _field_name(loc) -> str | None:
    """`samples.3.image` as `samples[3].image`."""
    parts = [f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc]
    return "".join(parts).lstrip(".") or None


def parse_json(body: bytes, schema=PredictRequest):
    """Validate a JSON body; the first problem becomes a 422 naming its field."""
    try:
        return schema.model_validate_json(body)
    except ValidationError as error:
        problems = error.errors(include_url=False)
        first = problems[0]
        field = _field_name(first["loc"])
        if first["type"] == "extra_forbidden":
            detail = f"{field}: unknown field"
            if len(first["loc"]) == 1:
                detail += f" (allowed: {', '.join(schema.model_fields)})"
        elif first["type"] in ("json_invalid", "model_type"):
            field, detail = None, f"body: not a JSON object: {first['msg']}"
        else:
            detail = f"{field}: {first['msg']}"
        raise RequestError(422, field, detail) from error


def check_text(text: str | None, limits: LimitsConfig) -> str | None:
    """The text, or None when absent or blank (a blank text is a missing text)."""
    if text is None:
        return None
    if len(text) > limits.max_text_chars:
        detail = f"text: {len(text)} characters is over the limit of {limits.max_text_chars}"
        raise RequestError(413, "text", detail)
    return given_text(text)


def check_top_k(top_k: int, limits: LimitsConfig) -> int:
    if not 1 <= top_k <= limits.max_top_k:
        raise RequestError(422, "top_k", f"top_k: {top_k} is outside 1..{limits.max_top_k}")
    return top_k


def decode_base64_image(encoded: str, limits: LimitsConfig) -> bytes:
    if len(encoded) > (limits.max_image_bytes * 4) // 3 + 4:
        raise RequestError(413, "image", f"image: over the limit of {limits.max_image_bytes} bytes")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as error:
        raise RequestError(422, "image", f"image: not valid base64 ({error})") from error
    return data


def open_image(data: bytes, limits: LimitsConfig) -> Image.Image:
    if len(data) > limits.max_image_bytes:
        raise RequestError(413, "image", f"image: {len(data)} bytes is over the limit of {limits.max_image_bytes}")
    if not data:
        raise RequestError(422, "image", "image: empty")
    try:
        return decode_image(data, limits.max_image_pixels)
    except ImageTooLargeError as error:
        raise RequestError(413, "image", f"image: {error}") from error
    except ImageDecodeError as error:
        raise RequestError(422, "image", f"image: {error}") from error


def build_sample(image: Image.Image | None, text: str | None, top_k: int) -> DecodedSample:
    if image is None and text is None:
        raise RequestError(422, "image", "image and text are both missing: send at least one of them")
    return DecodedSample(image=image, text=text, top_k=top_k)


def decode_json_request(body: bytes, limits: LimitsConfig) -> DecodedSample:
    request = parse_json(body)
    text = check_text(request.text, limits)
    top_k = check_top_k(request.top_k, limits)
    image = open_image(decode_base64_image(request.image, limits), limits) if request.image is not None else None
    return build_sample(image, text, top_k)


def decode_form_request(form: Mapping[str, Any], image_bytes: bytes | None, limits: LimitsConfig) -> DecodedSample:
    """A multipart form already parsed: `form` its plain fields, `image_bytes` its `image` file part."""
    unknown = sorted(set(form) - set(MULTIPART_FIELDS))
    if unknown:
        allowed = ", ".join(MULTIPART_FIELDS)
        raise RequestError(422, unknown[0], f"{unknown[0]}: unknown field (allowed: {allowed})")
    if "image" in form:
        raise RequestError(422, "image", "image: must be a file part of the form, not a plain field")
    text = form.get("text")
    if text is not None and not isinstance(text, str):
        raise RequestError(422, "text", "text: must be a plain field, not a file")
    raw_top_k = form.get("top_k", "5")
    try:
        top_k = int(raw_top_k)
    except (TypeError, ValueError) as error:
        raise RequestError(422, "top_k", f"top_k: {raw_top_k!r} is not an integer") from error
    image = open_image(image_bytes, limits) if image_bytes is not None else None
    return build_sample(image, check_text(text, limits), check_top_k(top_k, limits))


SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}


def _prefixed(error: RequestError, prefix: str) -> RequestError:
    field = f"{prefix}.{error.field}" if error.field else prefix
    detail = error.detail if not error.field else error.detail.replace(error.field, field, 1)
    return RequestError(error.status, field, detail)


def decode_feedback(body: bytes, limits: LimitsConfig, max_samples: int) -> list[NewFeedback]:
    """Every sample checked before any is accepted: one bad sample refuses the request, naming it."""
    request = parse_json(body, FeedbackRequest)
    if len(request.samples) > max_samples:
        detail = f"samples: {len(request.samples)} is over the limit of {max_samples} per request"
        raise RequestError(413, "samples", detail)
    checked = []
    for index, sample in enumerate(request.samples):
        try:
            text = check_text(sample.text, limits)
            data = decode_base64_image(sample.image, limits) if sample.image is not None else None
            image = open_image(data, limits) if data is not None else None
            build_sample(image, text, 1)
        except RequestError as error:
            raise _prefixed(error, f"samples[{index}]") from error
        suffix = SUFFIXES.get(image.format, ".png") if image is not None else ".png"
        checked.append(NewFeedback(sample.label, sample.task, text, data, suffix))
    return checked


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
