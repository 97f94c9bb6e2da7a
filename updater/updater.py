"""The updater, in plain Python: feedback in, tasks grouped, trained, gated and published.

It ties the parts together: the feedback log (`feedback_log.py`), routing samples to tasks
(`routing.py`), when a task is due (`schedule.py`), what training holds back (`holdout.py`) and the
store of it (`holdout_store.py`), the gate (`gate.py`) and publishing (`publishing.py`). Training holds
back a slice of each class; the new state is published only if the gate lets it through.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from model.backbone import Backbone
from model.config import LearnerConfig
from model.continual import ContinualModel
from model.published import load_published
from updater import gate
from updater.config import TrainerConfig, UpdaterConfig
from updater.errors import TaskNotBuffered, TaskTraining, TrainingBusy
from updater.feedback_log import FeedbackLog, FeedbackRecord, NewFeedback
from updater.gate import GateSamples
from updater.holdout import split_holdout
from updater.holdout_store import HeldBack, HoldoutStore
from updater.publishing import LearnedClasses, publish_gated
from updater.routing import PendingTask, Router
from updater.samples import encode_records
from updater.schedule import first_due
from updater.state_files import read_state, write_state
from updater.trainer import train_task

log = logging.getLogger(__name__)

DROPPED_FILE = "dropped.json"  # offsets of samples whose pending task was dropped, above the committed offset
DROPPED_SHAPE = TypeAdapter(list[int])


@dataclass
class TrainingOutcome:
    task: str
    published: bool
    version: int | None
    reason: str
    accuracy: float | None  # percent, new task, held-back samples
    forgetting: dict[str, float]  # points lost by each earlier task with held-back samples
    train_samples: int
    held_back: int
    seconds: float


class Updater:
    def __init__(
        self,
        state_dir: Path,
        backbone: Backbone,
        learner: LearnerConfig,
        trainer: TrainerConfig,
        config: UpdaterConfig,
        judging: Backbone | None = None,
    ):
        """`backbone`: the towers training runs; `judging`: those the replicas serve, which the gate and the
        calibration measure (`updater/judging.py`; the training towers when None)."""
        self.state_dir = Path(state_dir)
        self.backbone, self.learner, self.trainer, self.config = backbone, learner, trainer, config
        self.judging = judging or backbone
        self.log = FeedbackLog(self.state_dir / "feedback")
        self.training: str | None = None
        self.last_outcome: TrainingOutcome | None = None
        self._lock = threading.RLock()
        self.learned = LearnedClasses(self.state_dir)
        self.router = Router(self.learned, lambda: self.training)
        self.holdout = HoldoutStore(self.log, config.holdout_memory_mb * 2**20)
        self._dropped: set[int] = set(read_state(self.log.folder / DROPPED_FILE, DROPPED_SHAPE, []))
        for record in self.log.read(self.log.committed()):
            if record.offset not in self._dropped:
                self.router.route(record, time.monotonic())

    @property
    def pending(self) -> dict[str, PendingTask]:
        return self.router.pending

    @property
    def known_samples(self) -> int:
        return self.router.known_samples

    def accept(self, samples: Sequence[NewFeedback]) -> tuple[int, int]:
        """Log `samples` durably, then route them; (accepted, the log's length after them)."""
        records = self.log.append(samples)
        now = time.monotonic()
        with self._lock:
            for record in records:
                self.router.route(record, now)
        return len(records), records[-1].offset + 1 if records else self.log.end

    def due(self, now: float | None = None) -> str | None:
        """The first pending task ready to train, if any."""
        with self._lock:
            return first_due(self.pending.values(), self.config, time.monotonic() if now is None else now)

    def train(self, name: str) -> TrainingOutcome:
        """Train pending task `name` on what it holds now; publish if the gate lets it through.
        Raises TaskNotBuffered, or TrainingBusy while another task trains."""
        with self._lock:
            if name not in self.pending:
                raise TaskNotBuffered(name)
            if self.training:
                raise TrainingBusy(self.training)
            self.training = name
            records = list(self.pending[name].records)
        try:
            outcome, held = self._train_and_gate(name, records, time.monotonic())
        finally:
            with self._lock:
                self.training = None
        with self._lock:
            if outcome.published:
                self.holdout.add(name, held.records, held.batch)
                self.router.consume(name, len(records))
                self._commit_waiting()
            else:
                self.pending[name].tried_with = len(records)
            self.last_outcome = outcome
        log.info("task %s: %s", name, outcome.reason)
        return outcome

    def _commit_waiting(self) -> None:
        """Move the committed offset up to the first sample still pending."""
        waiting = self.router.first_waiting()
        self.log.commit(self.log.end if waiting is None else waiting)

    def drop(self, name: str) -> int:
        """Forget pending task `name`: its samples stay in the log but are never trained. How many were dropped.
        Raises TaskNotBuffered, or TaskTraining while it trains.

        The dropped offsets are written before the committed offset moves, so a restart in between
        still skips them; offsets below the committed one are forgotten, as the log is never re-read there.
        """
        with self._lock:
            if name not in self.pending:
                raise TaskNotBuffered(name)
            if self.training == name:
                raise TaskTraining(name)
            task = self.pending.pop(name)
            committed = self.log.committed()
            self._dropped = {o for o in self._dropped if o >= committed} | {r.offset for r in task.records}
            write_state(self.log.folder / DROPPED_FILE, sorted(self._dropped))
            self._commit_waiting()
        log.info("task %s dropped with its %d samples", name, len(task.records))
        return len(task.records)

    def _train_and_gate(
        self, name: str, records: list[FeedbackRecord], start: float
    ) -> tuple[TrainingOutcome, HeldBack]:
        """The outcome of training `name` on `records`, and the new task's held-back samples."""
        train, held = split_holdout(records, self.config.holdout_fraction)
        model = ContinualModel.resume(self.backbone, load_published(self.state_dir), self.learner)
        learned = set(model.classes)
        train = [record for record in train if record.label not in learned]
        classes = list(dict.fromkeys(record.label for record in train))
        outcome = TrainingOutcome(name, False, None, "", None, {}, len(train), len(held), 0.0)
        if not classes:
            return self._finished(outcome, start, "no new class to learn"), HeldBack(held, None)
        judged = model.run_by(self.judging)  # what replicas would answer: the held-back samples are encoded so
        new = HeldBack(held, self._encode(judged, held) if held else None)
        earlier = self.holdout.held_back([task.name for task in model.tasks], partial(self._encode, judged))
        tested = GateSamples({None: new, **earlier})
        before = tested.accuracies(judged) if model.tasks else {}
        labels = [record.label for record in train]
        result = train_task(model, name, classes, self._encode(model, train), labels, self.trainer, progress=False)
        judged = model.run_by(self.judging)
        after = tested.accuracies(judged)
        outcome.accuracy, outcome.forgetting = after.get(None), gate.forgetting(before, after)
        refusal = gate.refusal(outcome.accuracy, outcome.forgetting, self.config)
        if refusal:
            return self._finished(outcome, start, refusal), new
        measured = {"accuracy": outcome.accuracy, "forgetting": outcome.forgetting, "held_back": len(held)}
        notes = {"training": asdict(result), "gate": measured}
        state = publish_gated(model, judged, self.state_dir, tested.batch, tested.labels, notes)
        outcome.published, outcome.version = True, state.version
        return self._finished(outcome, start, f"published version {state.version}"), new

    def _encode(self, model: ContinualModel, records: Sequence[FeedbackRecord]):
        return encode_records(model, self.log, records)

    @staticmethod
    def _finished(outcome: TrainingOutcome, start: float, reason: str) -> TrainingOutcome:
        outcome.reason, outcome.seconds = reason, time.monotonic() - start
        return outcome

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "state": "training" if self.training else "idle",
                "training": self.training,
                "buffered": self.router.buffered(),
                "known_class_samples": self.router.known_samples,
                "log_end": self.log.end,
                "committed_offset": self.log.committed(),
                "last_training": asdict(self.last_outcome) if self.last_outcome else None,
            }
