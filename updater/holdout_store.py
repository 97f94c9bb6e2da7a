"""The held-back samples of each task learned through feedback, which the gate and calibration test with.

Their offsets in the feedback log are kept in `holdout.json` beside it, written atomically; a damaged
file is set aside and read as empty (`updater/state_files.py`). Their records and encodings are kept
once read: the towers are frozen, so a sample encodes the same at every training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pydantic import TypeAdapter

from model.batch import EncodedBatch
from updater.feedback_log import FeedbackLog, FeedbackRecord
from updater.state_files import read_state, write_state

HOLDOUT_FILE = "holdout.json"
HOLDOUT_SHAPE = TypeAdapter(dict[str, list[int]])

Encoder = Callable[[Sequence[FeedbackRecord]], EncodedBatch]


@dataclass(frozen=True)
class HeldBack:
    """One task's held-back samples and their encoding (None: it has none left in the log)."""

    records: list[FeedbackRecord]
    batch: EncodedBatch | None

    @property
    def labels(self) -> list[str]:
        return [record.label for record in self.records]


class HoldoutStore:
    def __init__(self, log: FeedbackLog):
        self.log = log
        self.path = log.folder / HOLDOUT_FILE
        self.offsets: dict[str, list[int]] = read_state(self.path, HOLDOUT_SHAPE, {})
        self._kept: dict[str, HeldBack] = {}

    def add(self, task: str, records: Sequence[FeedbackRecord], batch: EncodedBatch | None = None) -> None:
        """Task `task`'s held-back samples are `records` (encoded as `batch`, if known); on disk on return."""
        offsets = {**self.offsets, task: [record.offset for record in records]}
        write_state(self.path, offsets)
        self.offsets = offsets
        self._kept.pop(task, None)
        if batch is not None:
            self._kept[task] = HeldBack(list(records), batch)

    def held_back(self, tasks: Iterable[str], encode: Encoder) -> dict[str, HeldBack]:
        """The held-back samples of each of `tasks` that has some stored, in the order they were added;
        each read from the log and encoded with `encode` the first time only."""
        wanted = set(tasks)
        return {task: self._held_back(task, encode) for task in self.offsets if task in wanted}

    def _held_back(self, task: str, encode: Encoder) -> HeldBack:
        if task not in self._kept:
            records = self.log.records(self.offsets[task])
            self._kept[task] = HeldBack(records, encode(records) if records else None)
        return self._kept[task]
