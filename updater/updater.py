"""The updater, in plain Python: feedback in, tasks grouped, trained, gated and published.

Samples are routed as they are logged: a sample whose class is already learned (whatever its task
field says) is counted and kept in the log, not retrained; one with a `task` field joins that task;
one without joins the task that already holds its class, else the open automatic task (a task is
open until its training starts).
A task is due once each of its classes has `min_samples_per_class` samples and `quiet_seconds`
passed since its last one. Training holds back a slice of each class; the new state is published
only if the new task reaches `min_accuracy` on it and no earlier task (one learned here, with its
own held-back slice) drops more than `max_forgetting` points.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from model.backbone import Backbone
from model.batch import EncodedBatch
from model.config import LearnerConfig
from model.continual import ContinualModel
from model.durable_files import write_atomically
from model.published import load_published, publish, published_version
from updater.config import TrainerConfig, UpdaterConfig
from updater.feedback_log import FeedbackLog, FeedbackRecord, NewFeedback
from updater.holdout import split_holdout
from updater.trainer import train_task

log = logging.getLogger(__name__)

HOLDOUT_FILE = "holdout.json"
DROPPED_FILE = "dropped.json"  # offsets of samples whose pending task was dropped, above the committed offset


@dataclass
class PendingTask:
    name: str
    automatic: bool
    records: list[FeedbackRecord] = field(default_factory=list)
    last_received: float = 0.0  # time.monotonic()
    tried_with: int = 0  # how many samples the last refused training had

    def counts(self) -> dict[str, int]:
        return dict(Counter(record.label for record in self.records))


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
    ):
        self.state_dir = Path(state_dir)
        self.backbone, self.learner, self.trainer, self.config = backbone, learner, trainer, config
        self.log = FeedbackLog(self.state_dir / "feedback")
        self.pending: dict[str, PendingTask] = {}
        self.known_samples = 0
        self.training: str | None = None
        self.last_outcome: TrainingOutcome | None = None
        self._lock = threading.RLock()
        self._learned_at_version: int | None = None
        self._learned: dict[str, str] = {}  # class -> task
        self._holdout: dict[str, list[int]] = self._read_json(HOLDOUT_FILE, {})
        self._dropped: set[int] = set(self._read_json(DROPPED_FILE, []))
        for record in self.log.read(self.log.committed()):
            if record.offset not in self._dropped:
                self._route(record, time.monotonic())

    # --- what is learned -------------------------------------------------------------------------
    def learned(self) -> dict[str, str]:
        """Class -> task of the published version (re-read when the published version changes)."""
        version = published_version(self.state_dir)
        if version != self._learned_at_version:
            state = load_published(self.state_dir)
            tasks = state.manifest.tasks if state else ()
            self._learned = {name: task.name for task in tasks for name in task.classes}
            self._learned_at_version = version
        return self._learned

    def _read_json(self, name: str, missing: Any) -> Any:
        """The JSON file `name` beside the feedback log, or `missing` while it has not been written.

        An unreadable one (a disk fault: writes are atomic) is set aside as `name.unreadable` with a
        warning and read as `missing`, so that the updater still starts rather than failing every
        restart."""
        path = self.log.folder / name
        if not path.exists():
            return missing
        try:
            return json.loads(path.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            aside = path.with_name(name + ".unreadable")
            path.replace(aside)
            log.warning("%s is unreadable (%s); set aside as %s, starting without it", path, error, aside.name)
            return missing

    # --- intake ----------------------------------------------------------------------------------
    def accept(self, samples: Sequence[NewFeedback]) -> tuple[int, int]:
        """Log `samples` durably, then route them; (accepted, the log's length after them)."""
        records = self.log.append(samples)
        now = time.monotonic()
        with self._lock:
            for record in records:
                self._route(record, now)
        return len(records), records[-1].offset + 1 if records else self.log.end

    def _route(self, record: FeedbackRecord, now: float) -> None:
        if record.label in self.learned():  # kept in the log, counted, never retrained
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
        for task in self.pending.values():
            if task.automatic and task.name != self.training:
                return task
        name = self._automatic_name()
        return self.pending.setdefault(name, PendingTask(name, automatic=True))

    def _automatic_name(self) -> str:
        taken = set(self.pending) | set(self.learned().values())
        number = 1
        while f"feedback-{number}" in taken:
            number += 1
        return f"feedback-{number}"

    # --- when to train -----------------------------------------------------------------------------
    def due(self, now: float | None = None) -> str | None:
        """The first pending task ready to train, if any."""
        now = time.monotonic() if now is None else now
        with self._lock:
            for task in self.pending.values():
                counts = task.counts()
                enough = counts and min(counts.values()) >= self.config.min_samples_per_class
                quiet = now - task.last_received >= self.config.quiet_seconds
                if enough and quiet and len(task.records) > task.tried_with:
                    return task.name
        return None

    # --- training, gate, publishing -----------------------------------------------------------------
    def train(self, name: str) -> TrainingOutcome:
        """Train pending task `name` on what it holds now; publish if the gate lets it through."""
        with self._lock:
            if name not in self.pending:
                raise KeyError(name)
            if self.training:
                raise RuntimeError(f"task {self.training} is training")
            self.training = name
            records = list(self.pending[name].records)
        start = time.monotonic()
        try:
            outcome = self._train_and_gate(name, records, start)
        finally:
            with self._lock:
                self.training = None
        with self._lock:
            if outcome.published:
                self._holdout[name] = [r.offset for r in split_holdout(records, self.config.holdout_fraction)[1]]
                write_atomically(self.log.folder / HOLDOUT_FILE, json.dumps(self._holdout).encode())
                self._finish(name, len(records))
            else:
                self.pending[name].tried_with = len(records)
            self.last_outcome = outcome
        log.info("task %s: %s", name, outcome.reason)
        return outcome

    def _finish(self, name: str, consumed: int) -> None:
        """Drop the trained records; what arrived for the task meanwhile stays pending under the same name."""
        task = self.pending[name]
        task.records = task.records[consumed:]
        task.tried_with = 0
        if not task.records:
            del self.pending[name]
        self._commit_waiting()

    def _commit_waiting(self) -> None:
        """Move the committed offset up to the first sample still pending."""
        waiting = [r.offset for t in self.pending.values() for r in t.records]
        self.log.commit(min(waiting) if waiting else self.log.end)

    def drop(self, name: str) -> int:
        """Forget pending task `name`: its samples stay in the log but are never trained. How many were dropped.

        The dropped offsets are written before the committed offset moves, so a restart in between
        still skips them; offsets below the committed one are forgotten, as the log is never re-read there.
        """
        with self._lock:
            if name not in self.pending:
                raise KeyError(name)
            if self.training == name:
                raise RuntimeError(f"task {name} is training; drop it after")
            task = self.pending.pop(name)
            committed = self.log.committed()
            self._dropped = {o for o in self._dropped if o >= committed} | {r.offset for r in task.records}
            write_atomically(self.log.folder / DROPPED_FILE, json.dumps(sorted(self._dropped)).encode())
            self._commit_waiting()
        log.info("task %s dropped with its %d samples", name, len(task.records))
        return len(task.records)

    def _model(self) -> ContinualModel:
        return ContinualModel.resume(self.backbone, load_published(self.state_dir), self.learner)

    def _encode(self, model: ContinualModel, records: Sequence[FeedbackRecord]):
        images = [self._open(record) for record in records]
        return model.encode(images, [record.text for record in records])

    def _open(self, record: FeedbackRecord) -> Image.Image | None:
        path = self.log.image_path(record)
        if path is None:
            return None
        with Image.open(path) as image:
            image.load()
            return image.copy()

    def _holdout_groups(self, model: ContinualModel, held: list[FeedbackRecord]) -> dict[str | None, list]:
        """The samples the gate and the calibration test with: the new task's `held` (under None), then each
        learned task's held-back slice as the holdout store lists it."""
        known = {task.name for task in model.tasks}
        earlier = {task: offsets for task, offsets in self._holdout.items() if task in known}
        return {None: held, **{task: self.log.records(set(offsets)) for task, offsets in earlier.items()}}

    @staticmethod
    def _accuracies(model: ContinualModel, batch: EncodedBatch | None, groups: dict[str | None, list]) -> dict:
        """Percent right of each group of held-back samples, `batch` holding them all in order (None: none)."""
        if batch is None:
            return {}
        right = [
            prediction.labels[0] == record.label
            for prediction, record in zip(
                model.predict(batch, top_k=1), (r for records in groups.values() for r in records), strict=True
            )
        ]
        accuracies, start = {}, 0
        for task, records in groups.items():
            if records:
                accuracies[task] = 100.0 * sum(right[start : start + len(records)]) / len(records)
            start += len(records)
        return accuracies

    def _train_and_gate(self, name: str, records: list[FeedbackRecord], start: float) -> TrainingOutcome:
        train, held = split_holdout(records, self.config.holdout_fraction)
        model = self._model()
        learned = set(model.classes)
        train = [record for record in train if record.label not in learned]
        classes = list(dict.fromkeys(record.label for record in train))
        if not classes:
            return self._outcome(name, False, None, "no new class to learn", None, {}, train, held, start)
        groups = self._holdout_groups(model, held)
        gate_records = [record for records in groups.values() for record in records]
        gate_batch = self._encode(model, gate_records) if gate_records else None  # the towers' work, done once
        before = self._accuracies(model, gate_batch, groups) if model.tasks else {}
        labels = [record.label for record in train]
        result = train_task(model, name, classes, self._encode(model, train), labels, self.trainer, progress=False)
        after = self._accuracies(model, gate_batch, groups)
        accuracy = after.pop(None, None)
        forgetting = {task: before[task] - after[task] for task in before if task in after}
        refusal = self._gate(accuracy, forgetting)
        if refusal:
            return self._outcome(name, False, None, refusal, accuracy, forgetting, train, held, start)
        model.calibrate(gate_batch, [record.label for record in gate_records])
        gate = {"accuracy": accuracy, "forgetting": forgetting, "held_back": len(held)}
        state = model.save(self.state_dir, notes={"training": asdict(result), "gate": gate})
        reason = f"published version {state.version}"
        return self._outcome(name, True, state.version, reason, accuracy, forgetting, train, held, start)

    def _gate(self, accuracy: float | None, forgetting: dict[str, float]) -> str | None:
        if accuracy is None:
            return "refused: no held-back sample to test the new task with"
        if accuracy < self.config.min_accuracy:
            return (
                f"refused: accuracy {accuracy:.1f}% on held-back samples is under min_accuracy "
                f"{self.config.min_accuracy}%"
            )
        worst = max(forgetting.items(), key=lambda item: item[1], default=None)
        if worst and worst[1] > self.config.max_forgetting:
            return (
                f"refused: task {worst[0]} would lose {worst[1]:.1f} points, over max_forgetting "
                f"{self.config.max_forgetting}"
            )
        return None

    @staticmethod
    def _outcome(name, published, version, reason, accuracy, forgetting, train, held, start) -> TrainingOutcome:
        return TrainingOutcome(
            task=name,
            published=published,
            version=version,
            reason=reason,
            accuracy=accuracy,
            forgetting=forgetting,
            train_samples=len(train),
            held_back=len(held),
            seconds=time.monotonic() - start,
        )

    # --- rollback and status ---------------------------------------------------------------------------
    def rollback(self, version: int) -> None:
        publish(self.state_dir, version)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "state": "training" if self.training else "idle",
                "training": self.training,
                "buffered": {name: task.counts() for name, task in self.pending.items()},
                "known_class_samples": self.known_samples,
                "log_end": self.log.end,
                "committed_offset": self.log.committed(),
                "last_training": asdict(self.last_outcome) if self.last_outcome else None,
            }
