"""A `rebq-serve serve` command run by a benchmark: in a session of its own, as a service manager starts it, so
that it and every process it starts (Ray's node, workers and agents) can be found, signalled or killed together."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from benchmarks.processes import kill_session, session_processes, still_running
from serving.config import AppConfig

UP_LINE = "Ctrl-C stops it."  # the last line of the banner `serve` prints once it answers
ALARM = re.compile(r"WARNING|ERROR|CRITICAL|Traceback")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerFailed(RuntimeError):
    """The server ended, or did not become healthy in time."""


class ServerProcess:
    """`rebq-serve serve --config CONFIG`, its output (stdout and stderr) written to `output`."""

    def __init__(self, config: AppConfig, config_file: Path, output: Path):
        config_file.write_text(config.model_dump_json(indent=2))
        self.url = f"http://{config.server.host}:{config.server.port}"
        self.output = output
        self.started = time.monotonic()
        with output.open("w") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "serving.cli", "serve", "--config", str(config_file)],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )

    @property
    def session(self) -> int:
        return self.process.pid  # it leads its session

    @property
    def running(self) -> bool:
        """Whether any process of its session runs yet."""
        return self.process.poll() is None or bool(session_processes(self.session))

    def alarms(self) -> list[str]:
        """The lines of its output that warn or report an error."""
        text = self.output.read_text(errors="replace")
        return [line for line in text.splitlines() if ALARM.search(line)]

    def output_tail(self, lines: int = 20) -> str:
        return "\n".join(self.output.read_text(errors="replace").splitlines()[-lines:])

    def wait_until_healthy(self, timeout_s: float) -> float:
        """Seconds from the start until the command says it is up (after its /healthz answered 200) and /healthz
        answers 200 here too; raises ServerFailed if it ends or takes longer."""
        deadline = self.started + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerFailed(f"exited with {self.process.returncode}: {self.output_tail()}")
            if UP_LINE in self.output.read_text(errors="replace"):
                try:
                    if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                        return time.monotonic() - self.started
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        raise ServerFailed(f"not healthy within {timeout_s:.0f} s: {self.output_tail()}")

    def power_cut(self) -> int:
        """SIGKILL every process of the server's session at once; how many there were."""
        killed = kill_session(self.session)
        self.process.wait(timeout=30)
        return killed

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 60) -> float:
        """Send `sig` to the server's process group; seconds until every process of its session has ended
        (SIGKILLed, and ServerFailed raised, after `timeout_s`)."""
        running = session_processes(self.session)
        start = time.monotonic()
        os.killpg(self.session, sig)
        while time.monotonic() - start < timeout_s:
            if self.process.poll() is not None and not still_running(running):
                return time.monotonic() - start
            time.sleep(0.05)
        self.power_cut()
        raise ServerFailed(f"still running {timeout_s:.0f} s after {sig.name}")
