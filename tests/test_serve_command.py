"""`rebq-serve serve` as a user runs it: it starts, says where it is, answers, and stops cleanly on a signal."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from benchmarks.processes import processes_matching
from tests.live_server import free_port
from tests.served_state import SMALL, learn_and_publish

TOKEN = "a-token-for-the-serve-command-test"


def write_config(path: Path, backbone_config, ray_dir: Path, metrics_port: int, proxy_port: int) -> Path:
    config = {
        "backbone": json.loads(backbone_config.model_dump_json()),
        "learner": json.loads(SMALL.model_dump_json()),
        "ray": {"temp_dir": str(ray_dir), "metrics_port": metrics_port, "num_cpus": 2},
        "server": {"proxy_port": proxy_port},
    }
    path.write_text(json.dumps(config))
    return path


def read_until(process: subprocess.Popen, marker: str, timeout_s: float) -> str:
    seen, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"{marker!r} not printed within {timeout_s} s: {''.join(seen)[-3000:]}")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM])
def test_serve_starts_answers_and_stops_on_a_signal(tmp_path, tiny_config, tiny_backbone, stop_signal):
    state_dir = tmp_path / "state"
    learn_and_publish(tiny_backbone, state_dir, "first", ["dog", "bus"])
    ray_dir = Path(tempfile.mkdtemp(prefix="rebq-ray-"))
    port, metrics_port, proxy_port = free_port(), free_port(), free_port()
    config = write_config(tmp_path / "config.json", tiny_config, ray_dir, metrics_port, proxy_port)
    command = [sys.executable, "-m", "serving.cli", "serve", "--port", str(port), "--state-dir", str(state_dir)]
    process = subprocess.Popen(
        [*command, "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "REBQ_SERVE_TOKEN": TOKEN},
    )
    try:
        banner = read_until(process, "Ctrl-C stops it", timeout_s=240)
        assert f"http://127.0.0.1:{port}/v1/predict" in banner and f"http://127.0.0.1:{port}/docs" in banner
        assert f"http://127.0.0.1:{metrics_port}/metrics" in banner
        assert f"http://127.0.0.1:{proxy_port}/v1/predict" in banner
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/predict", json={"text": "a blue bus"}, timeout=30)
        assert answer.status_code == 200 and answer.json()["model_version"] == 1
        rollback = f"http://127.0.0.1:{port}/v1/model/rollback"
        assert httpx.post(rollback, json={"version": 1}, timeout=30).status_code == 401
        bearer = {"authorization": f"Bearer {TOKEN}"}
        allowed = httpx.post(rollback, json={"version": 1}, headers=bearer, timeout=30)
        assert allowed.status_code == 200
        assert processes_matching((str(ray_dir),))  # this server's Ray processes
        process.send_signal(stop_signal)
        assert process.wait(timeout=90) == 0
        deadline = time.monotonic() + 30
        while processes_matching((str(ray_dir),)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert processes_matching((str(ray_dir),)) == []
    finally:
        if process.poll() is None:
            process.kill()
        shutil.rmtree(ray_dir, ignore_errors=True)


def test_serve_refuses_an_outward_host(tmp_path):
    environment = {name: value for name, value in os.environ.items() if name != "REBQ_SERVE_TOKEN"}
    result = subprocess.run(
        [sys.executable, "-m", "serving.cli", "serve", "--host", "0.0.0.0", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )
    assert result.returncode == 2 and "host 0.0.0.0: no token is set" in result.stderr
