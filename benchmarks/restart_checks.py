"""What a server must show after its power was cut: healthy and its updater up within a bound, every acknowledged
sample in its feedback log, the published version served, and, while it runs, answers only from versions that
were published and load, and an updater that does not restart."""

from __future__ import annotations

import json
import threading
import time
from functools import cache
from pathlib import Path

import httpx

from benchmarks.feedback_ledger import FeedbackLedger, lost_samples
from benchmarks.server_process import ServerFailed, ServerProcess
from model.published import POINTER_FILE
from model.state import StateError, list_versions, load_state, version_folder
from updater.feedback_log import LOG_FILE

SWAP_WINDOW_S = 10.0  # a version published just before a check may take this long to be served


def published_pointer(state_dir: Path) -> int:
    """The version `current.json` names; 0 while none was published."""
    try:
        return json.loads((state_dir / POINTER_FILE).read_text())["version"]
    except FileNotFoundError:
        return 0


@cache
def version_loads(state_dir: Path, version: int) -> bool:
    """Whether the version folder reads cleanly (its manifest, and tensors that match their checksum)."""
    try:
        load_state(version_folder(state_dir, version))
    except (StateError, OSError, ValueError):
        return False
    return True


def torn_versions(state_dir: Path) -> list[int]:
    """Version folders that do not load: a save cut short by a kill, never to be served."""
    version_loads.cache_clear()  # a folder still being written at an earlier look may be whole now
    return [version for version in list_versions(state_dir) if not version_loads(state_dir, version)]


def model_info(url: str) -> dict | None:
    try:
        response = httpx.get(url + "/v1/model", timeout=10)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def wait_for_updater(server: ServerProcess, timeout_s: float) -> dict:
    """/v1/model once it reports the updater; ServerFailed if not within `timeout_s` of the start."""
    while time.monotonic() < server.started + timeout_s:
        info = model_info(server.url)
        if info and info["updater"] is not None:
            return info
        time.sleep(0.2)
    raise ServerFailed(f"no updater within {timeout_s:.0f} s: {server.output_tail()}")


def served_after_publication(server: ServerProcess, state_dir: Path, info: dict) -> tuple[int, int]:
    """(served, published) once they agree, or as they stand after `SWAP_WINDOW_S`."""
    deadline = time.monotonic() + SWAP_WINDOW_S
    served, published = info["version"], published_pointer(state_dir)
    while served != published and time.monotonic() < deadline:
        time.sleep(0.2)
        latest = model_info(server.url)
        served, published = (latest["version"] if latest else served), published_pointer(state_dir)
    return served, published


def lost_since_start(ledger: FeedbackLedger, folder: Path) -> int:
    """Acknowledged samples missing from the log, or differing from what was sent (all, without a log)."""
    if not (folder / LOG_FILE).is_file():
        return ledger.acknowledged_samples
    return lost_samples(ledger.acknowledged, folder)


def check_start(server: ServerProcess, ledger: FeedbackLedger, state_dir: Path, timeout_s: float) -> dict:
    """A start of the server, checked; ServerFailed when it is not healthy with its updater within `timeout_s`."""
    healthy_s = server.wait_until_healthy(timeout_s)
    info = wait_for_updater(server, timeout_s)
    updater_s = time.monotonic() - server.started
    served, published = served_after_publication(server, state_dir, info)
    return {
        "healthy_s": round(healthy_s, 2),
        "updater_s": round(updater_s, 2),
        "acknowledged_before": ledger.acknowledged_samples,
        "lost_samples": lost_since_start(ledger, state_dir / "feedback"),
        "served_version": served,
        "published_version": published,
        "served_is_published": served == published and (served == 0 or version_loads(state_dir, served)),
        "updater_started": info["updater"]["started"],
    }


class Watcher:
    """A thread asking, every `interval_s`, which version answers a prediction, which one is published, and when
    the updater started (a later time: Ray restarted it)."""

    def __init__(self, url: str, state_dir: Path, updater_started: float, published: int, interval_s: float = 0.5):
        self.url, self.state_dir, self.interval_s = url, state_dir, interval_s
        self.versions_answered: set[int] = set()
        self.versions_published: set[int] = {published} - {0}
        self.updater_restarts = 0
        self._updater_started = updater_started
        self._latest: dict = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="power-cut-watcher", daemon=True)

    def _look(self, client: httpx.Client) -> None:
        if published := published_pointer(self.state_dir):
            self.versions_published.add(published)
        answer = client.post(self.url + "/v1/predict", json={"text": "A red fire truck.", "top_k": 1})
        if answer.status_code == 200:
            self.versions_answered.add(answer.json()["model_version"])
        updater = (model_info(self.url) or {}).get("updater")
        if updater:
            self._latest = updater
            if updater["started"] != self._updater_started:
                self.updater_restarts += 1
                self._updater_started = updater["started"]

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.wait(self.interval_s):
                try:
                    self._look(client)
                except httpx.HTTPError:  # the power was cut under it
                    pass

    def latest(self) -> dict:
        """The updater's status at the last look."""
        return dict(self._latest)

    def invalid_answers(self) -> list[int]:
        """Versions that answered but were never published, or that do not load."""
        return sorted(
            version
            for version in self.versions_answered
            if version and (version not in self.versions_published or not version_loads(self.state_dir, version))
        )

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
