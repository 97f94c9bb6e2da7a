"""`rebq-serve serve` as a user runs it: it starts, says where it is, answers, and stops cleanly on a signal."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from benchmarks.processes import processes_matching, session_processes, still_running
from tests.live_server import free_port
from tests.served_state import SMALL, learn_and_publish

TOKEN = "a-token-for-the-serve-command-test"
STOPS = {  # what a terminal's Ctrl-C, a service manager or a container runtime sends
    "SIGTERM to the group": lambda process: os.killpg(process.pid, signal.SIGTERM),
    "SIGINT to the process": lambda process: process.send_signal(signal.SIGINT),
}
STOP_LIMIT_S = 10
INFO_LINE = re.compile(r"^(INFO \d{4}-|\d{4}-\S+ \S+ INFO )")  # Ray's log lines, and ours


def not_info(output: str) -> list[str]:
    """The lines of `output` that are neither the banner nor an INFO log line (Ray prints a failed task with
    no level, "(raylet) Task ... failed", and a thread starting Ray again says "SIGTERM handler is not set")."""
    lines = output.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("rebq-serve is up"))
    last = next(i for i, line in enumerate(lines) if line == "Ctrl-C stops it.")
    return [line for line in lines[:first] + lines[last + 1 :] if not INFO_LINE.match(line)]


def write_config(path: Path, backbone_config, ray_dir: Path, metrics_port: int, proxy_port: int) -> Path:
    config = {
        "backbone": json.loads(backbone_config.model_dump_json()),
        "learner": json.loads(SMALL.model_dump_json()),
        "ray": {"temp_dir": str(ray_dir), "metrics_port": metrics_port, "num_cpus": 2},
        "server": {"proxy_port": proxy_port},
    }
    path.write_text(json.dumps(config))
    return path


def wait_for_line(path: Path, marker: str, process: subprocess.Popen, timeout_s: float) -> str:
    """The text of `path` once it holds `marker`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        if marker in (text := path.read_text()):
            return text
        time.sleep(0.2)
    raise AssertionError(f"{marker!r} not printed within {timeout_s} s: {path.read_text()[-3000:]}")


def seconds_until_gone(process: subprocess.Popen, processes: list, timeout_s: float) -> float:
    """Seconds until `process` has exited and none of `processes` runs."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if process.poll() is not None and not still_running(processes):
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"still running {timeout_s} s after the signal: {still_running(processes)}")


@pytest.mark.parametrize("stop", list(STOPS))
def test_serve_starts_answers_and_stops_on_a_signal(tmp_path, tiny_config, tiny_backbone, stop):
    state_dir = tmp_path / "state"
    learn_and_publish(tiny_backbone, state_dir, "first", ["dog", "bus"])
    ray_dir = Path(tempfile.mkdtemp(prefix="rebq-ray-"))
    port, metrics_port, proxy_port = free_port(), free_port(), free_port()
    config = write_config(tmp_path / "config.json", tiny_config, ray_dir, metrics_port, proxy_port)
    command = [sys.executable, "-m", "serving.cli", "serve", "--port", str(port), "--state-dir", str(state_dir)]
    output = tmp_path / "output.txt"
    with output.open("w") as sink:
        process = subprocess.Popen(
            [*command, "--config", str(config)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "REBQ_SERVE_TOKEN": TOKEN},
            start_new_session=True,  # its own process group, as a service manager starts it
        )
    try:
        banner = wait_for_line(output, "Ctrl-C stops it", process, timeout_s=240)
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
        started = session_processes(process.pid)  # the command, Ray's node, its workers and agents
        assert len(started) >= 6 and set(processes_matching((str(ray_dir),))) <= {p.pid for p in started}
        STOPS[stop](process)
        assert seconds_until_gone(process, started, timeout_s=60) <= STOP_LIMIT_S
        assert process.returncode == 0
        assert session_processes(process.pid) == [] and processes_matching((str(ray_dir),)) == []
        assert not_info(output.read_text()) == []
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
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
