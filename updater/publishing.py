"""The updater's side of the published version: the classes it holds, a gated model published, rollback.

Publishing and rolling back are the same one-file atomic write (`model/published.py`), so rollback
needs no updater: the HTTP layer calls `roll_back` itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model.batch import EncodedBatch
from model.continual import ContinualModel
from model.published import load_published, publish, published_version
from model.state import PromptState, StateError, list_versions
from updater.errors import VersionMissing, VersionUnservable

log = logging.getLogger(__name__)


class LearnedClasses:
    """Class -> task of the published version, read again only when the published version changes."""

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self._version: int | None = None
        self._classes: dict[str, str] = {}

    def __call__(self) -> dict[str, str]:
        version = published_version(self.state_dir)
        if version != self._version:
            state = load_published(self.state_dir)
            tasks = state.manifest.tasks if state else ()
            self._classes = {name: task.name for task in tasks for name in task.classes}
            self._version = version
        return self._classes


def publish_gated(
    model: ContinualModel,
    judged: ContinualModel,
    state_dir: Path,
    held_back: EncodedBatch,
    labels: Sequence[str],
    notes: dict[str, Any],
) -> PromptState:
    """Calibrate `judged` (`model` run by the towers replicas serve, `held_back` encoded by them) on the
    held-back samples of classes `labels`, then write `model` with that calibration as the next version in
    `state_dir` and publish it."""
    judged.calibrate(held_back, labels)
    model.take_calibration(judged)
    return model.save(state_dir, notes=notes)


def roll_back(state_dir: Path, version: int) -> None:
    """Publish `version`, one that exists and reads cleanly; raises VersionMissing or VersionUnservable
    (the reason logged)."""
    if version not in list_versions(state_dir):
        raise VersionMissing(version)
    try:
        publish(state_dir, version)
    except StateError as error:
        log.error("rollback to version %d refused: %s", version, error)
        raise VersionUnservable(version) from error
