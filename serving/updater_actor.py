"""The updater as a named Ray actor, apart from the replicas: intake, a training thread, rollback.

Its methods answer `(status, body)` pairs for the HTTP layer, so that no exception crosses Ray.
It is restarted by Ray if it dies, and then recovers from the feedback log (beyond its committed
offset) and the published state.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import threading
import time
from typing import TYPE_CHECKING

import ray

from serving.config import AppConfig
from serving.metrics import GAUGE_REFRESH_S, UpdaterMetrics

if TYPE_CHECKING:  # imported by the driver too, which stays free of torch
    from updater.feedback_log import NewFeedback

log = logging.getLogger(__name__)

UPDATER_NAME = "rebq-updater"


def return_freed_memory() -> None:
    """Give the memory a training freed back to the system (glibc keeps it otherwise)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass
NAMESPACE = "rebq"


def not_buffered(name: str) -> tuple[int, dict]:
    return 404, {"field": "name", "detail": f"name: no samples are buffered for task {name!r}"}


@ray.remote(max_restarts=-1, max_concurrency=8)
class UpdaterActor:
    def __init__(self, config: AppConfig):
        from updater.trainer import training_backbone
        from updater.updater import Updater

        backbone = training_backbone(config.backbone, config.trainer)
        self.config = config
        self.started = time.time()  # a restart after a crash shows as a later time
        self.updater = Updater(config.server.state_dir, backbone, config.learner, config.trainer, config.updater)
        self.metrics = UpdaterMetrics()
        self.metrics.observe_buffered(self.updater.status()["buffered"])  # what a restart recovered from the log
        self._wake = threading.Event()
        threading.Thread(target=self._train_when_due, name="rebq-trainer", daemon=True).start()
        threading.Thread(target=self._refresh_gauges, name="rebq-gauges", daemon=True).start()

    def _refresh_gauges(self) -> None:
        """Keep the gauges exported; a loop of its own, since a training holds the trainer's for minutes."""
        while True:
            time.sleep(GAUGE_REFRESH_S)
            try:
                self.metrics.refresh()
            except Exception:  # a refresher that dies would let every gauge vanish; keep it alive and loud
                log.exception("refreshing the updater's gauges failed")

    def _train_when_due(self) -> None:
        while True:
            self._wake.wait(self.config.updater.poll_seconds)
            self._wake.clear()
            name = self.updater.due()
            if name:
                self._train(name)

    def _train(self, name: str) -> None:
        try:
            outcome = self.updater.train(name)
        except Exception:  # the trainer thread must outlive one failed training
            log.exception("training task %s failed", name)
            return
        finally:
            return_freed_memory()
        buffered = self.updater.status()["buffered"]
        self.metrics.observe_training(outcome, buffered, name not in buffered)

    def accept(self, samples: list[NewFeedback]) -> tuple[int, int]:
        known_before = self.updater.known_samples
        accepted = self.updater.accept(samples)
        self._wake.set()
        status = self.updater.status()
        self.metrics.observe_intake(accepted[0], status["buffered"], status["known_class_samples"] - known_before)
        return accepted

    def train_now(self, name: str) -> tuple[int, dict]:
        status = self.updater.status()
        if name not in status["buffered"]:
            return not_buffered(name)
        if status["training"]:
            return 409, {"field": None, "detail": f"task {status['training']} is training; try again after it"}
        threading.Thread(target=self._train, args=(name,), name=f"rebq-train-{name}", daemon=True).start()
        return 202, {"task": name, "state": "training"}

    def drop_task(self, name: str) -> tuple[int, dict]:
        try:
            dropped = self.updater.drop(name)
        except KeyError:
            return not_buffered(name)
        except RuntimeError as error:
            return 409, {"field": "name", "detail": f"name: {error}"}
        self.metrics.buffered.set(0, tags={"task": name})
        return 200, {"task": name, "dropped": dropped}

    def rollback(self, version: int) -> tuple[int, dict]:
        from model.state import StateError, list_versions

        if version not in list_versions(self.updater.state_dir):
            return 404, {"field": "version", "detail": f"version: {version} does not exist"}
        try:
            self.updater.rollback(version)
        except StateError as error:
            log.error("rollback to version %d refused: %s", version, error)
            detail = f"version: {version} cannot be served: its files are missing, unreadable or corrupted"
            return 409, {"field": "version", "detail": detail + " (the server's log says which)"}
        return 200, {"version": version}

    def status(self) -> dict:
        return {**self.updater.status(), "started": self.started}


def start_updater(config: AppConfig, gpus: float = 0.0):
    """The updater actor, created if it is not running yet (it survives the driver, not the cluster)."""
    return UpdaterActor.options(
        name=UPDATER_NAME,
        namespace=NAMESPACE,
        get_if_exists=True,
        lifetime="detached",
        num_cpus=0,
        num_gpus=gpus,
    ).remote(config)


def updater_handle():
    return ray.get_actor(UPDATER_NAME, namespace=NAMESPACE)
