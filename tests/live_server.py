"""One real local Ray and one deployed rebq-serve, started once per test session, all on 127.0.0.1."""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from model.backbone import Backbone
from serving.config import AppConfig, BatchingConfig, RayConfig
from tests.served_state import learn_and_publish, tiny_app_config
from updater.trainer import TrainerConfig
from updater.updater import UpdaterConfig


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class LiveServer:
    config: AppConfig
    url: str
    metrics_url: str
    state_dir: Path
    torch_backbone: Backbone
    first_answer: httpx.Response  # to a prediction sent before any task was learned
    baseline: int = 1  # the version every live test starts from: task "first" (dog, bus), nothing buffered

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return httpx.post(self.url + path, timeout=30, **kwargs)

    def version(self) -> int:
        return self.get("/v1/model").json()["version"]

    def wait_for_version(self, version: int, timeout_s: float = 30) -> float:
        """Seconds until /v1/model names `version`."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if self.get("/v1/model").json()["version"] == version:
                return time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError(f"version {version} not served within {timeout_s} s")

    def wait_for_idle_updater(self, timeout_s: float = 120) -> dict:
        """The updater's status once it is up and training nothing."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            updater = self.get("/v1/model").json()["updater"]
            if updater is not None and updater["state"] == "idle":
                return updater
            time.sleep(0.2)
        raise AssertionError(f"the updater is not idle within {timeout_s} s")

    def check_baseline(self) -> None:
        """Fail unless the server is as every live test expects to find it."""
        updater = self.wait_for_idle_updater()
        assert not updater["buffered"], updater["buffered"]
        info = self.get("/v1/model").json()
        assert info["version"] == self.baseline, f"served version {info['version']}, not {self.baseline}"
        assert [task["name"] for task in info["tasks"]] == ["first"], info["tasks"]

    def restore_baseline(self) -> None:
        """Undo what a test left: wait for the updater, drop what is buffered, serve the baseline again."""
        updater = self.wait_for_idle_updater()
        for task in updater["buffered"]:
            dropped = httpx.delete(f"{self.url}/v1/tasks/{task}", timeout=30)
            assert dropped.status_code == 200, dropped.text
        if self.version() != self.baseline:
            rolled = self.post("/v1/model/rollback", json={"version": self.baseline})
            assert rolled.status_code == 200, rolled.text
            self.wait_for_version(self.baseline)


def live_config(backbone_config, state_dir: Path, temp_dir: Path) -> AppConfig:
    config = tiny_app_config(
        backbone_config,
        state_dir,
        port=free_port(),
        proxy_port=free_port(),
        state_poll_s=0.1,
        batching=BatchingConfig(max_batch_size=8, wait_timeout_s=0.05),
    )
    ray = RayConfig(num_cpus=2, temp_dir=temp_dir, metrics_port=free_port())
    updater = UpdaterConfig(min_samples_per_class=3, quiet_seconds=3600, min_accuracy=0.0, poll_seconds=0.2)
    trainer = TrainerConfig(epochs=2)
    return config.model_copy(update={"ray": ray, "updater": updater, "trainer": trainer})


def start_live_server(backbone_config, torch_backbone: Backbone, state_dir: Path, temp_dir: Path) -> LiveServer:
    from serving.launcher import addresses, deploy, start_local_ray, wait_until_healthy

    config = live_config(backbone_config, state_dir, temp_dir)
    start_local_ray(config.ray, config.server)
    deploy(config)
    where = addresses(config)
    wait_until_healthy(where.api, timeout_s=180)
    first = httpx.post(where.api + "/v1/predict", json={"text": "a red dog"}, timeout=30)
    learn_and_publish(torch_backbone, state_dir, "first", ["dog", "bus"])
    server = LiveServer(config, where.api, where.metrics, state_dir, torch_backbone, first)
    server.wait_for_version(1)
    return server


def request_counts(metrics_text: str) -> dict[tuple[str, str], float]:
    """(status, missing) -> requests counted over all replicas, from Prometheus text."""
    counts: dict[tuple[str, str], float] = {}
    for line in metrics_text.splitlines():
        if line.startswith("ray_rebq_requests_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            key = (labels["status"], labels["missing"])
            counts[key] = counts.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def scrape_until(url: str, ready, timeout_s: float = 45) -> str:
    deadline, text = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        text = httpx.get(url, timeout=10).text
        if ready(text):
            return text
        time.sleep(0.5)
    raise AssertionError(f"metrics not as expected within {timeout_s} s: {request_counts(text)}")
