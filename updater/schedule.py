"""When a pending task is due to train: enough samples of each class, a quiet spell, and something new."""

from __future__ import annotations

from collections.abc import Iterable

from updater.config import UpdaterConfig
from updater.routing import PendingTask


def is_due(task: PendingTask, config: UpdaterConfig, now: float) -> bool:
    """Whether `task` should train at `now` (time.monotonic()): each of its classes has
    `min_samples_per_class` samples, none arrived for `quiet_seconds`, and it holds more samples than
    its last refused training had."""
    counts = task.counts()
    enough = bool(counts) and min(counts.values()) >= config.min_samples_per_class
    quiet = now - task.last_received >= config.quiet_seconds
    return enough and quiet and len(task.records) > task.tried_with


def first_due(tasks: Iterable[PendingTask], config: UpdaterConfig, now: float) -> str | None:
    """The name of the first of `tasks` that is due, if any."""
    return next((task.name for task in tasks if is_due(task, config, now)), None)
