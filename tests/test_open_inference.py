"""The Open Inference Protocol routes over an in-process backend, their bodies built and read by tritonclient."""

import asyncio
import base64

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from serving.config import LimitsConfig
from serving.http_api import build_http_app
from serving.predictor import Predictor
from tests.images import drawn_image, image_bytes
from tests.in_process import InProcessBackend
from tests.served_state import learn_and_publish, tiny_app_config

LIMITS = LimitsConfig(max_body_bytes=60_000, max_image_bytes=20_000, max_image_pixels=100 * 100, max_text_chars=40)
DOG_PNG = image_bytes(drawn_image("disk", 48, (200, 30, 30)))
BUS_PNG = image_bytes(drawn_image("stripes", 48, (30, 30, 200)))
ROWS = [("a red dog", DOG_PNG), ("a blue bus", b""), ("", BUS_PNG)]  # complete, text only, image only


@pytest.fixture(scope="module")
def predictor(tmp_path_factory, tiny_backbone, tiny_config):
    folder = tmp_path_factory.mktemp("v2-state")
    learn_and_publish(tiny_backbone, folder, "first", ["dog", "bus"])
    return Predictor.load(tiny_app_config(tiny_config, folder))


@pytest.fixture
def backend(predictor):
    return InProcessBackend(predictor)


def call(backend, method: str, path: str, **kwargs) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=build_http_app(backend, LIMITS))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def v1_answer(backend, text: str, image: bytes) -> dict:
    body = {"text": text or None, "image": base64.b64encode(image).decode() if image else None, "top_k": 2}
    response = call(backend, "POST", "/v1/predict", json=body)
    assert response.status_code == 200
    return response.json()


def binary_request(rows, outputs=None, **parameters):
    """A request body as tritonclient sends it: both inputs as binary BYTES tensors."""
    inputs = []
    for index, name in enumerate(("text", "image")):
        column = np.array(
            [row[index].encode() if name == "text" else row[index] for row in rows], dtype=np.object_
        )
        inputs.append(triton.InferInput(name, [len(rows)], "BYTES").set_data_from_numpy(column, binary_data=True))
    requested = [triton.InferRequestedOutput(name, binary_data=True) for name in outputs] if outputs else None
    return triton.InferenceServerClient.generate_request_body(inputs, requested, parameters=parameters or None)


def test_health_and_metadata(backend):
    assert call(backend, "GET", "/v2/health/live").status_code == 200
    assert call(backend, "GET", "/v2/health/ready").status_code == 200
    assert call(backend, "GET", "/v2/models/rebq/ready").status_code == 200
    server = call(backend, "GET", "/v2").json()
    assert server["name"] == "rebq-serve" and "binary_tensor_data" in server["extensions"]
    metadata = call(backend, "GET", "/v2/models/rebq").json()
    assert metadata["versions"] == ["1"]
    assert [(t["name"], t["datatype"]) for t in metadata["inputs"]] == [("text", "BYTES"), ("image", "BYTES")]
    assert {t["name"] for t in metadata["outputs"]} == {
        "label",
        "score",
        "known",
        "missing",
        "model_version",
        "top_k_labels",
        "top_k_scores",
    }
    unknown = call(backend, "GET", "/v2/models/resnet")
    assert unknown.status_code == 404 and unknown.json() == {
        "error": "model 'resnet': unknown; this server serves 'rebq'"
    }


def test_binary_rows_answer_as_v1_does(backend):
    body, header_length = binary_request(ROWS, top_k=2)
    response = call(
        backend,
        "POST",
        "/v2/models/rebq/infer",
        content=body,
        headers={
            "inference-header-content-length": str(header_length),
            "content-type": "application/octet-stream",
        },
    )
    assert response.status_code == 200, response.text
    result = triton.InferenceServerClient.parse_response_body(
        response.content, header_length=int(response.headers["inference-header-content-length"])
    )
    assert backend.observed[-1] == ("/v2/models/rebq/infer", 200, "mixed")
    expected = [v1_answer(backend, text, image) for text, image in ROWS]
    assert [label.decode() for label in result.as_numpy("label")] == [answer["label"] for answer in expected]
    assert result.as_numpy("score").tolist() == pytest.approx([answer["score"] for answer in expected])
    assert result.as_numpy("known").tolist() == [answer["known"] for answer in expected]
    assert [m.decode() for m in result.as_numpy("missing")] == ["", "image", "text"]
    assert result.as_numpy("model_version").tolist() == [1, 1, 1]
    assert result.as_numpy("top_k_labels").shape == (3, 2)
    assert [[label.decode() for label in row] for row in result.as_numpy("top_k_labels")] == [
        [entry["label"] for entry in answer["top_k"]] for answer in expected
    ]


def test_json_rows_and_chosen_outputs(backend):
    body = {
        "id": "request-7",
        "inputs": [
            {"name": "text", "datatype": "BYTES", "shape": [2, 1], "data": ["a red dog", ""]},
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [2, 1],
                "data": ["", base64.b64encode(BUS_PNG).decode()],
            },
        ],
        "outputs": [{"name": "label"}, {"name": "known"}],
    }
    response = call(backend, "POST", "/v2/models/rebq/infer", json=body)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    answer = response.json()
    assert answer["id"] == "request-7" and answer["model_name"] == "rebq" and answer["model_version"] == "1"
    outputs = {output["name"]: output for output in answer["outputs"]}
    assert set(outputs) == {"label", "known"} and outputs["label"]["shape"] == [2]
    assert outputs["label"]["data"] == [
        v1_answer(backend, "a red dog", b"")["label"],
        v1_answer(backend, "", BUS_PNG)["label"],
    ]
    assert all(isinstance(flag, bool) for flag in outputs["known"]["data"])


def test_one_input_may_be_left_out(backend):
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a blue bus"]}]}
    answer = call(backend, "POST", "/v2/models/rebq/infer", json=body).json()
    assert backend.observed[-1] == ("/v2/models/rebq/infer", 200, "image_missing")
    outputs = {output["name"]: output["data"] for output in answer["outputs"]}
    assert outputs["label"] == [v1_answer(backend, "a blue bus", b"")["label"]] and outputs["missing"] == ["image"]


TEXT = {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a dog"]}


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"inputs": []}, 400, "inputs: must be a list of tensors, text and/or image"),
        ({"inputs": [{**TEXT, "name": "audio"}]}, 400, "inputs.audio: unknown input (there are text and image)"),
        ({"inputs": [TEXT, TEXT]}, 400, "inputs.text: given twice"),
        ({"inputs": [{**TEXT, "datatype": "FP32"}]}, 400, "inputs.text.datatype: must be BYTES"),
        ({"inputs": [{**TEXT, "shape": [2]}]}, 400, "inputs.text: 1 elements for shape [2]"),
        ({"inputs": [{**TEXT, "shape": [1, 3]}]}, 400, "inputs.text.shape: must be [N] or [N, 1], got [1, 3]"),
        (
            {"inputs": [{**TEXT, "data": [""]}]},
            400,
            "row 0: image and text are both missing: send at least one of them",
        ),
        (
            {"inputs": [TEXT, {"name": "image", "datatype": "BYTES", "shape": [1], "data": ["not base64!"]}]},
            400,
            "inputs.image.data: not base64 (in JSON, send it so)",
        ),
        (
            {"inputs": [TEXT, {"name": "image", "datatype": "BYTES", "shape": [1], "data": ["aGVsbG8="]}]},
            400,
            "inputs.image[0]: not a PNG, JPEG or WebP image",
        ),
        ({"inputs": [{**TEXT, "data": ["x" * 41]}]}, 413, "inputs.text[0]: 41 characters is over the limit of 40"),
        ({"inputs": [TEXT], "parameters": {"top_k": 0}}, 400, "parameters.top_k: 0 is outside 1..100"),
        ({"inputs": [TEXT], "outputs": [{"name": "logits"}]}, 400, "outputs.logits: unknown output (there are "),
        (
            {"inputs": [{**TEXT, "shape": [65], "data": ["a dog"] * 65}]},
            400,
            "inputs: 65 rows is outside 1..64",
        ),
    ],
)
def test_refusals_name_the_field(backend, body, status, detail):
    response = call(backend, "POST", "/v2/models/rebq/infer", json=body)
    assert response.status_code == status
    assert response.json()["error"].startswith(detail)


def test_broken_binary_data_is_refused(backend):
    body, header_length = binary_request([("a dog", DOG_PNG)])
    for cut, headers in (
        (len(body) - 5, {"inference-header-content-length": str(header_length)}),
        (len(body), {"inference-header-content-length": "many"}),
    ):
        response = call(backend, "POST", "/v2/models/rebq/infer", content=body[:cut], headers=headers)
        assert response.status_code == 400
        assert response.json()["error"].startswith(("inputs.image", "inference-header-content-length: 'many'"))
    garbage = call(backend, "POST", "/v2/models/rebq/infer", content=b"{not json")
    assert garbage.status_code == 400 and garbage.json()["error"].startswith("body: not a JSON inference request")


def test_a_model_with_nothing_learned_is_not_ready(tmp_path, tiny_config):
    empty = InProcessBackend(Predictor.load(tiny_app_config(tiny_config, tmp_path)))
    assert call(empty, "GET", "/v2/models/rebq/ready").status_code == 503
    response = call(empty, "POST", "/v2/models/rebq/infer", json={"inputs": [TEXT]})
    assert response.status_code == 409 and "no task has been learned yet" in response.json()["error"]


@pytest.mark.parametrize(("text", "image"), ROWS, ids=["complete", "text_only", "image_only"])
def test_tritonclient_gets_the_label_v1_gives(live_server, text, image):
    """Triton's own HTTP client against the live server, beside /v1/predict on the same sample."""
    client = triton.InferenceServerClient(url=live_server.url.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("rebq")
        assert client.get_model_metadata("rebq")["versions"] == [str(live_server.version())]
        inputs = []
        if text:
            column = np.array([text.encode()], dtype=np.object_)
            inputs.append(triton.InferInput("text", [1], "BYTES").set_data_from_numpy(column))
        if image:
            column = np.array([image], dtype=np.object_)
            inputs.append(triton.InferInput("image", [1], "BYTES").set_data_from_numpy(column))
        result = client.infer("rebq", inputs)
    finally:
        client.close()
    body = {"text": text or None, "image": base64.b64encode(image).decode() if image else None}
    v1 = live_server.post("/v1/predict", json=body).json()
    assert result.as_numpy("model_version").tolist() == [v1["model_version"]]
    assert [label.decode() for label in result.as_numpy("label")] == [v1["label"]]
    assert result.as_numpy("score").tolist() == pytest.approx([v1["score"]], rel=1e-5)
    assert result.as_numpy("known").tolist() == [v1["known"]]
