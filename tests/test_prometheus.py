"""A real Prometheus (the Debian package, on loopback) scrapes the live server; metrics arrive and move."""

import shutil
import subprocess
import time

import httpx
import pytest
import yaml

from tests.live_server import free_port

PROMETHEUS = shutil.which("prometheus")


@pytest.fixture(scope="module")
def prometheus(live_session, tmp_path_factory):
    assert PROMETHEUS, "the prometheus binary is missing: `make test` installs the Debian package `prometheus`"
    folder = tmp_path_factory.mktemp("prometheus")
    target = live_session.metrics_url.removeprefix("http://").removesuffix("/metrics")
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "rebq-serve", "static_configs": [{"targets": [target]}]}],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--web.listen-address={address}",
            f"--storage.tsdb.path={folder / 'data'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://{address}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def query(prometheus: str, expression: str) -> float | None:
    try:
        answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expression}, timeout=5).json()
    except (httpx.HTTPError, ValueError):  # not listening yet, or still starting (a plain-text 503)
        return None
    results = answer.get("data", {}).get("result", [])
    return float(results[0]["value"][1]) if results else None


def wait_for(prometheus: str, expression: str, condition, timeout_s: float = 60) -> float:
    deadline, value = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        value = query(prometheus, expression)
        if value is not None and condition(value):
            return value
        time.sleep(1)
    raise AssertionError(f"{expression} = {value} after {timeout_s} s")


def test_metrics_reach_prometheus_and_move_after_requests(live_server, prometheus):
    requests = 'sum(ray_rebq_requests_total{route="/v1/predict", status="200"})'
    live_server.post("/v1/predict", json={"text": "a red dog"})
    before = wait_for(prometheus, requests, lambda value: value >= 1)
    for _ in range(5):
        assert live_server.post("/v1/predict", json={"text": "a blue bus"}).status_code == 200
    wait_for(prometheus, requests, lambda value: value >= before + 5)
    assert wait_for(prometheus, "max(ray_rebq_model_version)", lambda value: value >= 1) == live_server.version()
    assert wait_for(prometheus, "sum(ray_rebq_batch_size_count)", lambda value: value >= 1) >= 1
