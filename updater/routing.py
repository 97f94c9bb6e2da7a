"""Intake routing: which pending task each logged sample joins, and the names of automatic tasks.

A sample whose class is already learned (whatever its task field says) is counted and kept in the
log, not retrained; one with a `task` field joins that task; one without joins the task that already
holds its class, else the open automatic task (a task is open until its training starts).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from updater.feedback_log import FeedbackRecord

AUTOMATIC_PREFIX = "feedback-"


@dataclass
class PendingTask:
    name: str
    automatic: bool
    records: list[FeedbackRecord] = field(default_factory=list)
    last_received: float = 0.0  # time.monotonic()
    tried_with: int = 0  # how many samples the last refused training had

    def counts(self) -> dict[str, int]:
        return dict(Counter(record.label for record in self.records))


class Router:
    """The pending tasks, filled as samples are logged.

    `learned()` gives class -> task of the published version; `training()` the task training now, if any.
    """

    def __init__(self, learned: Callable[[], dict[str, str]], training: Callable[[], str | None]):
        self.pending: dict[str, PendingTask] = {}
        self.known_samples = 0  # samples of classes already learned, counted since the start
        self._learned = learned
        self._training = training

    def route(self, record: FeedbackRecord, now: float) -> None:
        """Add `record`, received at `now` (time.monotonic()), to its task, or count it as known."""
        if record.label in self._learned():
            self.known_samples += 1
            return
        task = self._task_for(record)
        task.records.append(record)
        task.last_received = now

    def _task_for(self, record: FeedbackRecord) -> PendingTask:
        if record.task:
            return self.pending.setdefault(record.task, PendingTask(record.task, automatic=False))
        for task in self.pending.values():
            if record.label in task.counts():
                return task
        training = self._training()
        for task in self.pending.values():
            if task.automatic and task.name != training:
                return task
        name = self.automatic_name()
        return self.pending.setdefault(name, PendingTask(name, automatic=True))

    def automatic_name(self) -> str:
        """The first `feedback-N` that no pending or learned task has."""
        taken = set(self.pending) | set(self._learned().values())
        number = 1
        while f"{AUTOMATIC_PREFIX}{number}" in taken:
            number += 1
        return f"{AUTOMATIC_PREFIX}{number}"

    def consume(self, name: str, count: int) -> None:
        """Drop the first `count` records of task `name` (trained); what arrived meanwhile stays pending."""
        task = self.pending[name]
        task.records = task.records[count:]
        task.tried_with = 0
        if not task.records:
            del self.pending[name]

    def first_waiting(self) -> int | None:
        """The lowest offset still pending, if any."""
        return min((record.offset for task in self.pending.values() for record in task.records), default=None)

    def buffered(self) -> dict[str, dict[str, int]]:
        """Samples of each class, by pending task."""
        return {name: task.counts() for name, task in self.pending.items()}
