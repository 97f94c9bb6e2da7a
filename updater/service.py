"""The updater at work, in plain Python: intake, a thread that trains each task once it is due, training
on request, dropping a task, and status; what it does is reported to an observer (serving's metrics).

`updater/actor.py` runs it as a Ray actor; a refusal is raised as an `updater.errors` exception.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from updater.errors import TaskNotBuffered, TrainingBusy

if TYPE_CHECKING:  # imported by the driver too, which stays free of torch
    from updater.feedback_log import NewFeedback
    from updater.updater import TrainingOutcome, Updater

log = logging.getLogger(__name__)

Buffered = dict[str, dict[str, int]]  # samples of each class, by pending task


class UpdaterObserver(Protocol):
    """What the service reports as it works; `refresh` is called every `refresh_s` seconds."""

    refresh_s: float

    def observe_intake(self, accepted: int, buffered: Buffered, known_added: int) -> None: ...

    def observe_buffered(self, buffered: Buffered) -> None: ...

    def observe_training(self, outcome: TrainingOutcome, buffered: Buffered, finished_task_gone: bool) -> None: ...

    def observe_dropped(self, task: str) -> None: ...

    def refresh(self) -> None: ...


class Unobserved:
    """An observer that keeps nothing."""

    refresh_s = 60.0

    def observe_intake(self, accepted: int, buffered: Buffered, known_added: int) -> None:
        pass

    def observe_buffered(self, buffered: Buffered) -> None:
        pass

    def observe_training(self, outcome: TrainingOutcome, buffered: Buffered, finished_task_gone: bool) -> None:
        pass

    def observe_dropped(self, task: str) -> None:
        pass

    def refresh(self) -> None:
        pass


def return_freed_memory() -> None:
    """Give the memory a training freed back to the system (glibc keeps it otherwise)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


class UpdaterService:
    def __init__(self, updater: Updater, observer: UpdaterObserver):
        self.updater = updater
        self.observer = observer
        self.started = time.time()  # a restart after a crash shows as a later time
        observer.observe_buffered(updater.status()["buffered"])  # what a restart recovered from the log
        self._wake = threading.Event()
        self._stopping = threading.Event()
        threading.Thread(target=self._train_when_due, name="rebq-trainer", daemon=True).start()
        threading.Thread(target=self._refresh_observer, name="rebq-gauges", daemon=True).start()

    def stop(self) -> None:
        """End the service's threads (a training under way finishes first)."""
        self._stopping.set()
        self._wake.set()

    def _refresh_observer(self) -> None:
        """Keep the gauges exported; a loop of its own, since a training holds the trainer's for minutes."""
        while not self._stopping.wait(self.observer.refresh_s):
            try:
                self.observer.refresh()
            except Exception:  # a refresher that dies would let every gauge vanish; keep it alive and loud
                log.exception("refreshing the updater's gauges failed")

    def _train_when_due(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.updater.config.poll_seconds)
            self._wake.clear()
            name = None if self._stopping.is_set() else self.updater.due()
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
        self.observer.observe_training(outcome, buffered, name not in buffered)

    def accept(self, samples: list[NewFeedback]) -> tuple[int, int]:
        """Log `samples` durably and route them: (accepted, the log's length after them)."""
        known_before = self.updater.known_samples
        accepted = self.updater.accept(samples)
        self._wake.set()
        status = self.updater.status()
        self.observer.observe_intake(accepted[0], status["buffered"], status["known_class_samples"] - known_before)
        return accepted

    def train_now(self, name: str) -> None:
        """Start training buffered task `name` on a thread of its own; raises TaskNotBuffered, or TrainingBusy
        while a task trains."""
        status = self.updater.status()
        if name not in status["buffered"]:
            raise TaskNotBuffered(name)
        if status["training"]:
            raise TrainingBusy(status["training"])
        threading.Thread(target=self._train, args=(name,), name=f"rebq-train-{name}", daemon=True).start()

    def drop_task(self, name: str) -> int:
        """Drop buffered task `name`: how many samples will never be trained. Raises TaskNotBuffered, or
        TaskTraining while it trains."""
        dropped = self.updater.drop(name)
        self.observer.observe_dropped(name)
        return dropped

    def status(self) -> dict[str, Any]:
        return {**self.updater.status(), "started": self.started}
