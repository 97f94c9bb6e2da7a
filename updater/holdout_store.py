"""The held-back samples of each task learned through feedback, which the gate and calibration test with.

Their offsets in the feedback log are kept in `holdout.json` beside it, written atomically; a damaged
file is set aside and read as empty (`updater/state_files.py`). Their records and encodings are kept
once read, the towers being frozen so that a sample encodes the same at every training, up to a memory
budget: past it, the tasks held longest are dropped from memory and encoded again when next needed (a
ViT image tower's pixel values take about 600 KB a sample).
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
    def __init__(self, log: FeedbackLog, memory_bytes: int | None = None):
        """`memory_bytes`: how much the kept encodings may hold (None: no limit)."""
        self.log = log
        self.path = log.folder / HOLDOUT_FILE
        self.memory_bytes = memory_bytes
        self.offsets: dict[str, list[int]] = read_state(self.path, HOLDOUT_SHAPE, {})
        self._kept: dict[str, HeldBack] = {}  # in the order kept, oldest first

    def add(self, task: str, records: Sequence[FeedbackRecord], batch: EncodedBatch | None = None) -> None:
        """Task `task`'s held-back samples are `records` (encoded as `batch`, if known); on disk on return."""
        offsets = {**self.offsets, task: [record.offset for record in records]}
        write_state(self.path, offsets)
        self.offsets = offsets
        self._kept.pop(task, None)
        if batch is not None:
            self._keep(task, HeldBack(list(records), batch))

    def held_back(self, tasks: Iterable[str], encode: Encoder) -> dict[str, HeldBack]:
        """The held-back samples of each of `tasks` that has some stored, in the order they were added;
        each read from the log and encoded with `encode` the first time only."""
        wanted = set(tasks)
        return {task: self._held_back(task, encode) for task in self.offsets if task in wanted}

    def _held_back(self, task: str, encode: Encoder) -> HeldBack:
        if task in self._kept:
            return self._kept[task]
        records = self.log.records(self.offsets[task])
        held = HeldBack(records, encode(records) if records else None)
        self._keep(task, held)
        return held

    def _keep(self, task: str, held: HeldBack) -> None:
        """Keep `held`, then drop the oldest kept encodings (`held`'s last) until they fit the budget."""
        self._kept[task] = held
        while self.memory_bytes is not None and self._kept_bytes() > self.memory_bytes:
            oldest = next(iter(self._kept))
            del self._kept[oldest]
            if oldest == task:
                break

    def _kept_bytes(self) -> int:
        return sum(held.batch.nbytes for held in self._kept.values() if held.batch is not None)
