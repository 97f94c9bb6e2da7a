"""The server on a real local Ray: every pattern, every refusal, batching, swaps, metrics, loopback only."""

import base64
import os
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from benchmarks.processes import RAY_PROCESS_WORDS, processes_matching
from model.published import publish
from serving.http_api import BATCH_ID_HEADER, BATCH_SIZE_HEADER
from tests.images import drawn_image, image_bytes
from tests.live_server import request_counts, scrape_until
from tests.served_state import learn_and_publish
from tests.sockets import listening_ports, off_loopback, tcp_endpoints

PNG = image_bytes(drawn_image("disk", 48))
B64 = base64.b64encode(PNG).decode()


def test_conflict_before_the_first_task(live_server):
    assert live_server.first_answer.status_code == 409
    assert "no task has been learned" in live_server.first_answer.json()["detail"]


@pytest.mark.parametrize(
    ("body", "missing"),
    [({"text": "a red dog", "image": B64}, []), ({"text": "a blue bus"}, ["image"]), ({"image": B64}, ["text"])],
)
def test_each_missing_pattern_is_answered(live_server, body, missing):
    response = live_server.post("/v1/predict", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["missing"] == missing and answer["reconstructed"] == bool(missing)
    served = live_server.get("/v1/model").json()
    assert answer["label"] in {name for task in served["tasks"] for name in task["classes"]}
    assert answer["model_version"] >= 1
    assert answer["top_k"][0] == {"label": answer["label"], "score": answer["score"]}


def test_multipart_upload(live_server):
    form = {"text": "a red dog", "top_k": "1"}
    response = live_server.post("/v1/predict", data=form, files={"image": ("d.png", PNG)})
    assert response.status_code == 200 and len(response.json()["top_k"]) == 1


@pytest.mark.parametrize(
    ("kwargs", "status", "field"),
    [
        ({"json": {"text": None, "image": None}}, 422, "image"),
        ({"json": {"image": "***"}}, 422, "image"),
        ({"json": {"image": base64.b64encode(b"GIF? no").decode()}}, 422, "image"),
        ({"json": {"text": "x", "unknown": True}}, 422, "unknown"),
        ({"json": {"text": "x", "top_k": 1000}}, 422, "top_k"),
        ({"json": {"text": "x" * 2001}}, 413, "text"),
        ({"content": b" " * (9 * 1024 * 1024), "headers": {"content-type": "application/json"}}, 413, None),
        ({"data": {"text": "x", "colour": "red"}, "files": {"image": ("d.png", PNG)}}, 422, "colour"),
    ],
)
def test_refusals_through_the_proxy(live_server, kwargs, status, field):
    response = live_server.post("/v1/predict", **kwargs)
    assert response.status_code == status and response.json()["field"] == field, response.text


def test_concurrent_requests_are_batched(live_server):
    bodies = [{"text": f"a red dog {'.' * i}", "image": B64 if i % 2 else None} for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda body: live_server.post("/v1/predict", json=body), bodies))
    assert [response.status_code for response in responses] == [200] * 16
    sizes = [int(response.headers[BATCH_SIZE_HEADER]) for response in responses]
    assert max(sizes) > 1 and max(sizes) <= live_server.config.server.batching.max_batch_size
    batches: dict[str, list] = {}
    for response in responses:
        batches.setdefault(response.headers[BATCH_ID_HEADER], []).append(response)
    for members in batches.values():  # one batch: one size, one version
        assert {int(r.headers[BATCH_SIZE_HEADER]) for r in members} == {len(members)}
        assert len({r.json()["model_version"] for r in members}) == 1


def test_a_published_version_reaches_the_replica_and_rollback_returns(live_server):
    before = live_server.version()
    new = learn_and_publish(live_server.torch_backbone, live_server.state_dir, "second", ["tree", "cake"]).version
    assert live_server.wait_for_version(new) < 5
    info = live_server.get("/v1/model").json()
    assert [task["name"] for task in info["tasks"]][-1] == "second"
    assert live_server.post("/v1/predict", json={"text": "a green tree"}).json()["model_version"] == new
    publish(live_server.state_dir, before)
    live_server.wait_for_version(before)
    answer = live_server.post("/v1/predict", json={"text": "a green tree"}).json()
    assert answer["model_version"] == before
    publish(live_server.state_dir, new)
    live_server.wait_for_version(new)


def test_health_and_docs(live_server):
    assert live_server.get("/healthz").status_code == 200
    assert "/v1/predict" in live_server.get("/openapi.json").json()["paths"]


def test_the_replica_itself_listens_on_the_api_port_and_the_proxy_answers_too(live_server):
    server = live_server.config.server
    assert any(server.port in listening_ports(pid) for pid in processes_matching(("ServeReplica",)))
    assert any(server.serve_proxy_port in listening_ports(pid) for pid in processes_matching(("ProxyActor",)))
    direct = live_server.get("/healthz").json()
    proxied = httpx.get(f"http://127.0.0.1:{server.serve_proxy_port}/healthz", timeout=30).json()
    assert (direct["replica"], direct["version"]) == (proxied["replica"], proxied["version"])


def test_metrics_arrive_on_the_metrics_port_and_move(live_server):
    before = request_counts(httpx.get(live_server.metrics_url, timeout=10).text)
    key = ("200", "image_missing")
    for _ in range(3):
        assert live_server.post("/v1/predict", json={"text": "a blue bus"}).status_code == 200
    live_server.post("/v1/predict", json={})
    text = scrape_until(
        live_server.metrics_url,
        lambda text: request_counts(text).get(key, 0) >= before.get(key, 0) + 3
        and request_counts(text).get(("422", "invalid"), 0) >= before.get(("422", "invalid"), 0) + 1,
    )
    assert "ray_rebq_model_version" in text and "ray_rebq_batch_size_bucket" in text


def test_ray_listens_and_talks_on_loopback_only(live_server):
    pids = [os.getpid(), *processes_matching(RAY_PROCESS_WORDS)]
    endpoints = tcp_endpoints(pids)
    assert len(endpoints) > 10  # the node's servers and their connections were found
    assert off_loopback(endpoints) == []
