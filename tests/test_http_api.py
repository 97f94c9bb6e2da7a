"""The HTTP layer over an in-process backend: status codes, bodies and limits, without Ray."""

import asyncio
import base64
import json
import re
import shutil

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.published import published_version
from model.state import TENSORS_FILE, version_folder
from serving.api_docs import ASSETS, ASSETS_URL
from serving.backend import AdmissionGate
from serving.config import LimitsConfig
from serving.http_api import BATCH_ID_HEADER, BATCH_SIZE_HEADER, build_http_app
from serving.predictor import Predictor
from tests.images import drawn_image, image_bytes
from tests.in_process import InProcessBackend
from tests.served_state import learn_and_publish, tiny_app_config
from updater.errors import TaskNotBuffered, TaskTraining, TrainingBusy

# what a refusal must not show: an object's repr, a traceback, an exception's class name, a module path
IMPLEMENTATION_WORDS = re.compile(
    r" object at 0x|Traceback|\b[A-Z]\w*(Error|Exception)\b|<[\w.]+[ >]|\w+\.\w+\.py"
)

LIMITS = LimitsConfig(max_body_bytes=40_000, max_image_bytes=20_000, max_image_pixels=100 * 100, max_text_chars=40)
PNG = image_bytes(drawn_image("disk", 48))


@pytest.fixture(scope="module")
def published(tmp_path_factory, tiny_backbone):
    folder = tmp_path_factory.mktemp("http-state")
    learn_and_publish(tiny_backbone, folder, "first", ["dog", "bus"])
    return folder


@pytest.fixture(scope="module")
def onnx_predictor(tiny_config, published):
    predictor = Predictor.load(tiny_app_config(tiny_config, published))
    assert predictor.version == 1
    return predictor


def call(backend, method: str, path: str, app=None, **kwargs) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=app or build_http_app(backend, LIMITS))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


@pytest.fixture
def backend(onnx_predictor):
    return InProcessBackend(onnx_predictor)


def test_json_predict_each_pattern(backend):
    b64 = base64.b64encode(PNG).decode()
    for body, missing, pattern in (
        ({"text": "a red dog", "image": b64}, [], "complete"),
        ({"text": "a red dog"}, ["image"], "image_missing"),
        ({"image": b64, "top_k": 1}, ["text"], "text_missing"),
    ):
        response = call(backend, "POST", "/v1/predict", json=body)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["missing"] == missing and answer["model_version"] == 1
        assert answer["reconstructed"] == bool(missing) and answer["label"] in {"dog", "bus"}
        assert len(answer["top_k"]) == body.get("top_k", 2) and response.headers[BATCH_SIZE_HEADER] == "1"
        assert response.headers[BATCH_ID_HEADER].startswith("in-process-")
        assert backend.observed[-1] == ("/v1/predict", 200, pattern)


def test_multipart_predict(backend):
    response = call(backend, "POST", "/v1/predict", data={"text": "a blue bus"}, files={"image": ("b.png", PNG)})
    assert response.status_code == 200 and response.json()["missing"] == []
    image_only = call(backend, "POST", "/v1/predict", files={"image": ("b.png", PNG, "image/png")})
    assert image_only.status_code == 200 and image_only.json()["missing"] == ["text"]


def assert_plain_words(detail: str) -> None:
    """A refusal names the problem, nothing of the implementation: no object reprs, no exception names."""
    assert detail and not IMPLEMENTATION_WORDS.search(detail), detail


@pytest.mark.parametrize(
    ("kwargs", "status", "field"),
    [
        ({"json": {}}, 422, "image"),
        ({"json": {"text": "x", "extra": 1}}, 422, "extra"),
        ({"json": {"image": "%%%"}}, 422, "image"),
        ({"json": {"image": base64.b64encode(b"plain text").decode()}}, 422, "image"),
        ({"json": {"text": "x", "top_k": 0}}, 422, "top_k"),
        ({"json": {"text": "x" * 41}}, 413, "text"),
        ({"json": {"image": base64.b64encode(image_bytes(drawn_image("disk", 101))).decode()}}, 413, "image"),
        ({"content": b"{" + b" " * 50_000 + b"}", "headers": {"content-type": "application/json"}}, 413, None),
        ({"content": b"t=hi", "headers": {"content-type": "text/plain"}}, 415, "content-type"),
        ({"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data"}}, 422, None),
        ({"data": {"text": "x", "mood": "happy"}, "files": {"image": ("a.png", PNG)}}, 422, "mood"),
        ({"data": {"text": "x"}, "files": {"picture": ("a.png", PNG)}}, 422, "picture"),
    ],
)
def test_refusals_name_the_field(backend, kwargs, status, field):
    response = call(backend, "POST", "/v1/predict", **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["field"] == field and body["detail"]
    assert_plain_words(body["detail"])
    if field:
        assert field in body["detail"]
    assert backend.observed[-1][1] == status


def test_conflict_before_any_task(tiny_config, tmp_path):
    empty = InProcessBackend(Predictor.load(tiny_app_config(tiny_config, tmp_path)))
    response = call(empty, "POST", "/v1/predict", json={"text": "a dog"})
    assert response.status_code == 409 and "no task has been learned" in response.json()["detail"]
    assert call(empty, "GET", "/healthz").json() == {
        "status": "ok",
        "version": 0,
        "replica": "in-process",
        "node": None,
    }


def test_model_info_and_docs(backend, published):
    info = call(backend, "GET", "/v1/model").json()
    assert info["version"] == 1 and info["tasks"] == [{"name": "first", "classes": ["dog", "bus"]}]
    assert info["backbone"]["text"]["runtime"] == "onnxruntime"
    schema = call(backend, "GET", "/openapi.json").json()
    content = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}
    for path in ("/v1/feedback", "/v1/model/rollback"):
        assert schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    document = json.dumps(schema)
    assert "$defs" not in document  # every reference resolves within the document
    assert set(re.findall(r'"#/components/schemas/(\w+)"', document)) <= set(schema["components"]["schemas"])
    page = call(backend, "GET", "/docs")
    assert page.status_code == 200 and f"{ASSETS_URL}/swagger-ui-bundle.js" in page.text
    for name, media_type in ASSETS.items():
        asset = call(backend, "GET", f"{ASSETS_URL}/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(media_type), name
        assert asset.headers["cache-control"] == "public, max-age=86400"
    unknown = call(backend, "GET", f"{ASSETS_URL}/../pyproject.toml")
    assert unknown.status_code == 404
    unknown = call(backend, "GET", f"{ASSETS_URL}/secrets.txt")
    assert unknown.status_code == 404 and unknown.json() == {
        "field": "name",
        "detail": "name: no such docs asset 'secrets.txt'",
    }


def test_rollback_shows_in_the_api(onnx_predictor, tiny_backbone, tmp_path, published):
    state = shutil.copytree(published, tmp_path / "state")
    learn_and_publish(tiny_backbone, state, "second", ["tree", "cake"])
    predictor = Predictor(onnx_predictor.backbone, state)
    predictor.refresh()
    backend = InProcessBackend(predictor)
    assert call(backend, "GET", "/v1/model").json()["version"] == 2
    assert call(backend, "POST", "/v1/predict", json={"text": "a green tree"}).json()["model_version"] == 2


def test_rollback_needs_no_updater_and_refuses_in_plain_words(onnx_predictor, tiny_backbone, tmp_path, published):
    state = shutil.copytree(published, tmp_path / "state")
    learn_and_publish(tiny_backbone, state, "second", ["tree", "cake"])
    predictor = Predictor(onnx_predictor.backbone, state)
    backend = InProcessBackend(predictor)  # it has no updater: feedback answers 503
    rolled = call(backend, "POST", "/v1/model/rollback", json={"version": 1})
    assert (rolled.status_code, rolled.json()) == (200, {"version": 1})
    assert published_version(state) == 1 and predictor.refresh() and predictor.version == 1
    missing = call(backend, "POST", "/v1/model/rollback", json={"version": 3})
    assert (missing.status_code, missing.json()) == (
        404,
        {"field": "version", "detail": "version: 3 does not exist"},
    )
    (version_folder(state, 2) / TENSORS_FILE).write_bytes(b"not the tensors its manifest names")
    broken = call(backend, "POST", "/v1/model/rollback", json={"version": 2})
    assert (broken.status_code, broken.json()) == (
        409,
        {
            "field": "version",
            "detail": "version: 2 cannot be served: its files are missing, unreadable or corrupted "
            "(the server's log says which)",
        },
    )
    assert published_version(state) == 1


class RefusingBackend(InProcessBackend):
    """An updater that refuses every training and every drop with `refusal`."""

    async def train_task(self, name):
        raise self.refusal

    async def drop_task(self, name):
        raise self.refusal


@pytest.mark.parametrize(
    ("method", "refusal", "status", "body"),
    [
        (
            "POST",
            TaskNotBuffered("pets"),
            404,
            {"field": "name", "detail": "name: no samples are buffered for task 'pets'"},
        ),
        (
            "DELETE",
            TaskNotBuffered("pets"),
            404,
            {"field": "name", "detail": "name: no samples are buffered for task 'pets'"},
        ),
        (
            "POST",
            TrainingBusy("plants"),
            409,
            {"field": None, "detail": "task plants is training; try again after it"},
        ),
        (
            "DELETE",
            TaskTraining("pets"),
            409,
            {"field": "name", "detail": "name: task pets is training; drop it after"},
        ),
    ],
)
def test_the_updaters_refusals_answer_their_status_and_body(onnx_predictor, method, refusal, status, body):
    backend = RefusingBackend(onnx_predictor)
    backend.refusal = refusal
    path = "/v1/tasks/pets/train" if method == "POST" else "/v1/tasks/pets"
    response = call(backend, method, path)
    assert (response.status_code, response.json()) == (status, body)


class AcceptingBackend(InProcessBackend):
    async def train_task(self, name):
        self.trained = name

    async def drop_task(self, name):
        return 3


def test_training_and_dropping_answer_what_the_updater_did(onnx_predictor):
    backend = AcceptingBackend(onnx_predictor)
    started = call(backend, "POST", "/v1/tasks/pets/train")
    assert (started.status_code, started.json()) == (202, {"task": "pets", "state": "training"})
    assert backend.trained == "pets"
    dropped = call(backend, "DELETE", "/v1/tasks/pets")
    assert (dropped.status_code, dropped.json()) == (200, {"task": "pets", "dropped": 3})


def test_feedback_without_an_updater_is_503_after_validation(backend):
    bad = call(backend, "POST", "/v1/feedback", json={"samples": [{"text": "a dog"}]})
    assert bad.status_code == 422 and bad.json()["field"] == "samples[0].label"
    good = call(backend, "POST", "/v1/feedback", json={"samples": [{"text": "a dog", "label": "dog"}]})
    assert good.status_code == 503 and good.headers["retry-after"] == "5"
    assert call(backend, "POST", "/v1/model/rollback", json={"version": 0}).json()["field"] == "version"


TOKEN = "a-bearer-token-for-the-tests"


@pytest.mark.parametrize(
    ("method", "path", "body", "past_the_token"),
    [  # this backend has no updater: 503, but rollback needs none
        ("POST", "/v1/feedback", {"samples": [{"text": "a dog", "label": "dog"}]}, 503),
        ("POST", "/v1/tasks/first/train", None, 503),
        ("DELETE", "/v1/tasks/first", None, 503),
        ("POST", "/v1/model/rollback", {"version": 1}, 200),
    ],
)
def test_changing_the_model_needs_the_token(backend, method, path, body, past_the_token):
    app = build_http_app(backend, LIMITS, token=TOKEN)
    for headers in ({}, {"authorization": "Bearer wrong-token-of-some-length"}):
        refused = call(backend, method, path, app=app, json=body, headers=headers)
        assert refused.status_code == 401 and refused.json()["field"] == "authorization"
        assert refused.headers["www-authenticate"] == 'Bearer realm="rebq-serve"'
    allowed = call(backend, method, path, app=app, json=body, headers={"authorization": f"Bearer {TOKEN}"})
    assert allowed.status_code == past_the_token
    assert call(backend, "POST", "/v1/predict", app=app, json={"text": "a dog"}).status_code == 200


def test_predictions_can_be_protected_too(backend):
    app = build_http_app(backend, LIMITS, token=TOKEN, protect_predictions=True)
    assert call(backend, "POST", "/v1/predict", app=app, json={"text": "a dog"}).status_code == 401
    allowed = call(
        backend,
        "POST",
        "/v1/predict",
        app=app,
        json={"text": "a dog"},
        headers={"authorization": f"Bearer {TOKEN}"},
    )
    assert allowed.status_code == 200


class SaturatedBackend(InProcessBackend):
    async def predict(self, sample):
        with self.gate:
            return await super().predict(sample)


def test_a_saturated_replica_answers_503_with_retry_after(onnx_predictor):
    backend = SaturatedBackend(onnx_predictor)
    backend.gate = AdmissionGate(limit=1)
    with backend.gate:  # one prediction already pending
        response = call(backend, "POST", "/v1/predict", json={"text": "a dog"})
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert "saturated" in response.json()["detail"] and backend.gate.pending == 0
    assert call(backend, "POST", "/v1/predict", json={"text": "a dog"}).status_code == 200
    assert backend.gate.pending == 0  # released after each answer, also after a refusal


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(  # arbitrary bodies under every content type: a 4xx, or 503 because this backend has no updater
    path=st.sampled_from(["/v1/predict", "/v1/feedback", "/v1/model/rollback", "/v1/tasks/x/train"]),
    content_type=st.sampled_from(
        ["application/json", "multipart/form-data", "text/plain", "application/json; a=1"]
    ),
    body=st.binary(max_size=300) | st.text(max_size=200).map(str.encode),
)
def test_no_body_gets_a_server_error(backend, path, content_type, body):
    response = call(backend, "POST", path, content=body, headers={"content-type": content_type})
    assert response.status_code < 500 or response.status_code == 503, response.text
    if response.is_error:  # a rollback to version 1 would be answered 200
        assert_plain_words(response.json()["detail"])
