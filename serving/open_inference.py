"""The Open Inference Protocol (KServe v2 REST) beside `/v1`, so that Triton and KServe clients can call us.

One model, `rebq`. Its inputs are BYTES tensors of shape `[N]` (or `[N, 1]`): `text` (UTF-8) and `image`
(the encoded picture's bytes: binary tensor data, or base64 in a JSON body); either may be left out,
and an empty element is a missing modality for that row. Its outputs, one row per sample: `label`,
`score` (FP32), `known` (BOOL), `missing` (BYTES: "", "image" or "text"), `model_version` (INT64), and
the best `top_k` (request parameter, default 5) as `top_k_labels` and `top_k_scores` of shape `[N, k]`.
Binary tensor data (Triton's extension, which `tritonclient` uses by default) is read and written.
A refusal is `{"error": "<field>: <problem>"}`, as the protocol has it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import struct
import time
from dataclasses import dataclass
from importlib.metadata import version as package_version
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from serving.auth import CHALLENGE, authorized
from serving.backend import Backend, Overloaded
from serving.config import LimitsConfig
from serving.decode import RequestError, build_sample, check_text, check_top_k, open_image, read_body
from serving.predictor import NoModelError
from serving.schemas import PredictResponse

MODEL = "rebq"
ROUTE = f"/v2/models/{MODEL}/infer"
HEADER_LENGTH = "inference-header-content-length"
INPUTS = ("text", "image")
DEFAULT_TOP_K = 5
MAX_ROWS = 64  # samples in one inference request
OUTPUTS = {  # name: datatype
    "label": "BYTES",
    "score": "FP32",
    "known": "BOOL",
    "missing": "BYTES",
    "model_version": "INT64",
    "top_k_labels": "BYTES",
    "top_k_scores": "FP32",
}
PACKED = {"FP32": "f", "INT64": "q", "BOOL": "?"}  # struct codes, little-endian


def protocol_error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"error": detail}, status_code=status)


@dataclass
class InferRequest:
    id: str | None
    columns: dict[str, list[bytes]]  # input name: one element per row
    rows: int
    top_k: int
    outputs: dict[str, bool]  # output name: sent as binary data


def split_bytes_elements(raw: bytes, name: str) -> list[bytes]:
    """A binary BYTES tensor: each element its 4-byte little-endian length, then its bytes."""
    elements, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise RequestError(400, name, f"{name}: binary data ends inside an element's length")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise RequestError(400, name, f"{name}: binary data ends inside an element")
        elements.append(raw[offset : offset + size])
        offset += size
    return elements


def split_body(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """The JSON inference header and the binary data after it."""
    if header_length is None:
        header, binary = body, b""
    else:
        if not header_length.isdigit() or int(header_length) > len(body):
            detail = f"{HEADER_LENGTH}: {header_length!r} is not a length within the body"
            raise RequestError(400, HEADER_LENGTH, detail)
        header, binary = body[: int(header_length)], body[int(header_length) :]
    try:
        parsed = json.loads(header)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RequestError(400, None, f"body: not a JSON inference request ({error.msg})") from error
    if not isinstance(parsed, dict):
        raise RequestError(400, None, "body: not a JSON object")
    return parsed, binary


def input_rows(tensor: dict) -> int:
    name = tensor["name"]
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not 1 <= len(shape) <= 2 or not all(isinstance(n, int) for n in shape):
        raise RequestError(400, f"inputs.{name}.shape", f"inputs.{name}.shape: must be [N] or [N, 1], got {shape}")
    if len(shape) == 2 and shape[1] != 1:
        raise RequestError(400, f"inputs.{name}.shape", f"inputs.{name}.shape: must be [N] or [N, 1], got {shape}")
    return shape[0]


def input_elements(tensor: dict, binary: bytes, offset: int) -> tuple[list[bytes], int]:
    """One input's elements, from its JSON `data` or from `binary` at `offset`; and the next offset."""
    name = tensor["name"]
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            detail = f"inputs.{name}.parameters.binary_data_size: {size} does not fit the binary data sent"
            raise RequestError(400, f"inputs.{name}", detail)
        return split_bytes_elements(binary[offset : offset + size], f"inputs.{name}"), offset + size
    data = tensor.get("data")
    if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
        raise RequestError(400, f"inputs.{name}.data", f"inputs.{name}.data: must be a list of strings")
    if name == "text":
        return [item.encode() for item in data], offset
    try:
        return [base64.b64decode(item, validate=True) for item in data], offset
    except (binascii.Error, ValueError) as error:
        raise RequestError(
            400, "inputs.image.data", "inputs.image.data: not base64 (in JSON, send it so)"
        ) from error


def requested_outputs(request: dict) -> dict[str, bool]:
    binary_default = bool((request.get("parameters") or {}).get("binary_data_output", False))
    asked = request.get("outputs")
    if asked is None:
        return dict.fromkeys(OUTPUTS, binary_default)
    if not isinstance(asked, list) or not all(isinstance(item, dict) and "name" in item for item in asked):
        raise RequestError(400, "outputs", "outputs: must be a list of objects with a name")
    chosen = {}
    for item in asked:
        if item["name"] not in OUTPUTS:
            detail = f"outputs.{item['name']}: unknown output (there are {', '.join(OUTPUTS)})"
            raise RequestError(400, f"outputs.{item['name']}", detail)
        chosen[item["name"]] = bool((item.get("parameters") or {}).get("binary_data", binary_default))
    return chosen


def parse_infer_request(body: bytes, header_length: str | None, limits: LimitsConfig) -> InferRequest:
    request, binary = split_body(body, header_length)
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs or not all(isinstance(t, dict) for t in inputs):
        raise RequestError(400, "inputs", "inputs: must be a list of tensors, text and/or image")
    columns, rows, offset = {}, set(), 0
    for tensor in inputs:
        name = tensor.get("name")
        if name not in INPUTS or name in columns:
            problem = "given twice" if name in columns else "unknown input (there are text and image)"
            raise RequestError(400, f"inputs.{name}", f"inputs.{name}: {problem}")
        if tensor.get("datatype") != "BYTES":
            raise RequestError(400, f"inputs.{name}.datatype", f"inputs.{name}.datatype: must be BYTES")
        count = input_rows(tensor)  # the shape is checked before any element is decoded
        columns[name], offset = input_elements(tensor, binary, offset)
        rows.add(count)
        if len(columns[name]) != count:
            detail = f"inputs.{name}: {len(columns[name])} elements for shape {tensor['shape']}"
            raise RequestError(400, f"inputs.{name}", detail)
    if len(rows) != 1:
        raise RequestError(400, "inputs", f"inputs: text and image must have as many rows, got {sorted(rows)}")
    (count,) = rows
    if not 1 <= count <= MAX_ROWS:
        raise RequestError(400, "inputs", f"inputs: {count} rows is outside 1..{MAX_ROWS}")
    top_k = (request.get("parameters") or {}).get("top_k", DEFAULT_TOP_K)
    if not isinstance(top_k, int) or isinstance(top_k, bool):
        raise RequestError(400, "parameters.top_k", f"parameters.top_k: {top_k!r} is not an integer")
    try:
        check_top_k(top_k, limits)
    except RequestError as error:
        raise RequestError(400, "parameters.top_k", f"parameters.{error.detail}") from error
    request_id = request.get("id")
    return InferRequest(
        str(request_id) if request_id is not None else None, columns, count, top_k, requested_outputs(request)
    )


def decode_rows(request: InferRequest, limits: LimitsConfig):
    """One checked sample per row; a refusal names the input and the row."""
    empty = [b""] * request.rows
    texts, images = request.columns.get("text", empty), request.columns.get("image", empty)
    samples = []
    for row, (raw_text, raw_image) in enumerate(zip(texts, images, strict=True)):
        try:
            text = check_text(decode_utf8(raw_text), limits) if raw_text else None
            image = open_image(raw_image, limits) if raw_image else None
        except RequestError as error:
            field = f"inputs.{error.field}[{row}]"
            problem = error.detail.removeprefix(f"{error.field}: ")
            raise RequestError(
                400 if error.status == 422 else error.status, field, f"{field}: {problem}"
            ) from error
        if image is None and text is None:
            detail = f"row {row}: image and text are both missing: send at least one of them"
            raise RequestError(400, "inputs", detail)
        samples.append(build_sample(image, text, request.top_k))
    return samples


def decode_utf8(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError as error:
        raise RequestError(400, "text", "text: not UTF-8") from error


def output_values(name: str, answers: list[PredictResponse], k: int) -> list:
    """Output `name`, flattened row-major, for `answers` with `k` entries of top-k each."""
    if name == "top_k_labels":
        return [entry.label for answer in answers for entry in answer.top_k[:k]]
    if name == "top_k_scores":
        return [entry.score for answer in answers for entry in answer.top_k[:k]]
    if name == "missing":
        return [",".join(answer.missing) for answer in answers]
    return [getattr(answer, name) for answer in answers]


def packed(datatype: str, values: list) -> bytes:
    if datatype == "BYTES":
        encoded = [value.encode() for value in values]
        return b"".join(struct.pack("<I", len(item)) + item for item in encoded)
    return struct.pack(f"<{len(values)}{PACKED[datatype]}", *values)


def infer_response(request: InferRequest, answers: list[PredictResponse]) -> Response:
    """The protocol's answer: JSON, with binary data after it for the outputs asked as binary."""
    k = min(len(answer.top_k) for answer in answers)
    tensors, blobs = [], []
    for name, binary in request.outputs.items():
        values = output_values(name, answers, k)
        tensor: dict[str, Any] = {
            "name": name,
            "datatype": OUTPUTS[name],
            "shape": [len(answers), k] if name.startswith("top_k") else [len(answers)],
        }
        if binary:
            blobs.append(packed(OUTPUTS[name], values))
            tensor["parameters"] = {"binary_data_size": len(blobs[-1])}
        else:
            tensor["data"] = values
        tensors.append(tensor)
    header = {"model_name": MODEL, "model_version": str(max(a.model_version for a in answers)), "outputs": tensors}
    if request.id is not None:
        header["id"] = request.id
    encoded = json.dumps(header).encode()
    if not blobs:
        return Response(encoded, media_type="application/json")
    headers = {HEADER_LENGTH: str(len(encoded))}
    return Response(encoded + b"".join(blobs), media_type="application/octet-stream", headers=headers)


def model_metadata(version: int) -> dict:
    tensor = {"datatype": "BYTES", "shape": [-1]}
    outputs = [
        {"name": name, "datatype": datatype, "shape": [-1, -1] if name.startswith("top_k") else [-1]}
        for name, datatype in OUTPUTS.items()
    ]
    return {
        "name": MODEL,
        "versions": [str(version)] if version else [],
        "platform": "rebq-serve",
        "inputs": [{"name": name, **tensor} for name in INPUTS],
        "outputs": outputs,
    }


def request_pattern(samples) -> str:
    """The missing pattern a request is counted under: its rows', or `mixed`."""
    patterns = {sample.pattern for sample in samples}
    return patterns.pop() if len(patterns) == 1 else "mixed"


def add_open_inference_routes(
    app: FastAPI, backend: Backend, limits: LimitsConfig, token: str | None, protect_predictions: bool
) -> None:
    def unknown_model(name: str) -> JSONResponse | None:
        if name == MODEL:
            return None
        return protocol_error(404, f"model {name!r}: unknown; this server serves {MODEL!r}")

    @app.get("/v2", tags=["Open Inference Protocol"])
    async def server_metadata() -> dict:
        """The server's name, version and protocol extensions."""
        return {
            "name": "rebq-serve",
            "version": package_version("rebq-serve"),
            "extensions": ["binary_tensor_data"],
        }

    @app.get("/v2/health/live", tags=["Open Inference Protocol"])
    async def live() -> dict:
        """200 while the server answers."""
        return {"live": True}

    @app.get("/v2/health/ready", tags=["Open Inference Protocol"])
    async def ready() -> dict:
        """200 once this replica has loaded its towers (the model may still have nothing learned)."""
        return {"ready": True}

    @app.get("/v2/models/{name}", tags=["Open Inference Protocol"])
    async def metadata(name: str):
        """The model's inputs and outputs, and the version served."""
        return unknown_model(name) or model_metadata(backend.model_info().version)

    @app.get("/v2/models/{name}/ready", tags=["Open Inference Protocol"])
    async def model_ready(name: str):
        """200 once a task is learned; 503 before."""
        if (refusal := unknown_model(name)) is not None:
            return refusal
        if backend.model_info().version == 0:
            return protocol_error(503, "no task has been learned yet: train or feed one first")
        return {"name": MODEL, "ready": True}

    @app.post("/v2/models/{name}/infer", tags=["Open Inference Protocol"])
    async def infer(name: str, request: Request):
        """Classify N samples given as `text` and/or `image` BYTES tensors."""
        start, pattern = time.perf_counter(), "invalid"
        if (refusal := unknown_model(name)) is not None:
            return refusal
        if (
            protect_predictions
            and token is not None
            and not authorized(request.headers.get("authorization"), token)
        ):
            response = protocol_error(401, "authorization: a valid bearer token is required")
            response.headers["www-authenticate"] = CHALLENGE
        else:
            response, pattern = await answer(request)
        backend.observe(ROUTE, response.status_code, pattern, time.perf_counter() - start)
        return response

    async def answer(request: Request) -> tuple[Response, str]:
        """The answer, and the missing pattern the request is counted under."""
        try:
            body = await read_body(request, limits.max_body_bytes)
            parsed = parse_infer_request(body, request.headers.get(HEADER_LENGTH), limits)
            samples = decode_rows(parsed, limits)
        except RequestError as error:
            return protocol_error(error.status if error.status != 422 else 400, error.detail), "invalid"
        return await predictions(parsed, samples), request_pattern(samples)

    async def predictions(parsed: InferRequest, samples: list) -> Response:
        try:
            answers = await asyncio.gather(*(backend.predict(sample) for sample in samples))
            return infer_response(parsed, [answer for answer, _ in answers])
        except RequestError as error:
            return protocol_error(error.status if error.status != 422 else 400, error.detail)
        except NoModelError as error:
            return protocol_error(409, str(error))
        except Overloaded as error:
            response = protocol_error(503, str(error))
            response.headers["retry-after"] = str(error.retry_after_s)
            return response
