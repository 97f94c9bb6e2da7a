"""What a replica does, in plain Python: hold the towers and the installed model, answer batches, swap versions.

A swap replaces one reference. `predict_batch` reads that reference once, so every answer of a batch
comes from one version, the one it names; a swap lands between two batches, never inside one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from model.backbone import Backbone, load_backbone
from model.continual import ContinualModel
from model.published import published_version
from model.state import (
    MANIFEST_FILE,
    TENSORS_FILE,
    PromptState,
    StateError,
    StateMismatchError,
    list_versions,
    load_state,
    read_manifest,
    version_folder,
)
from serving.config import AppConfig
from serving.decode import DecodedSample
from serving.schemas import ModelInfo, PredictResponse, Scored, TaskInfo, UnknownAnswer, VersionInfo

log = logging.getLogger(__name__)

RECENT_UNKNOWN = 50  # answers flagged unknown that a replica remembers for the console
TEXT_SHOWN = 200  # characters of a remembered text


class NoModelError(RuntimeError):
    """No task has been learned yet, so there is nothing to predict with."""


class Predictor:
    def __init__(self, backbone: Backbone, state_dir: Path):
        self.backbone = backbone
        self.state_dir = Path(state_dir)
        self._model: ContinualModel | None = None
        self._refused: set[tuple] = set()  # versions refused, as they were on disk
        self._refusals: dict[int, str] = {}  # version: why this replica refused it, in plain words
        self._refresh_lock = threading.Lock()
        self._unknown: deque[UnknownAnswer] = deque(maxlen=RECENT_UNKNOWN)

    @classmethod
    def load(cls, config: AppConfig, state_dir: Path | None = None) -> Predictor:
        """ONNX Runtime towers from the export cache, and the published version if there is one."""
        predictor = cls(load_backbone(config.backbone, runtime="onnx"), state_dir or config.server.state_dir)
        predictor.refresh()
        return predictor

    @property
    def version(self) -> int:
        model = self._model
        return model.version if model is not None else 0

    @property
    def model(self) -> ContinualModel | None:
        return self._model

    def install(self, state: PromptState) -> None:
        """Check `state` against the towers and make it the one served (refused states raise)."""
        model = ContinualModel.from_state(self.backbone, state)
        self._model = model  # the swap: one reference, read once per batch
        self._refusals.pop(state.version, None)  # written again under its number, and good now
        log.info("serving PromptState version %d (%d classes)", state.version, len(model.classes))

    def refresh(self) -> bool:
        """Install the published version if it differs from the one served; True when it swapped."""
        with self._refresh_lock:
            wanted = published_version(self.state_dir)
            if wanted is None or wanted == self.version or self._identity(wanted) in self._refused:
                return False
            if self._try_install(wanted):
                return True
            if self._model is None:  # nothing served yet: the newest version that does load
                return any(self._try_install(v) for v in reversed(list_versions(self.state_dir)) if v != wanted)
            return False

    def _identity(self, version: int) -> tuple:
        """A version's files as they are on disk: one written again under the same number is looked at afresh."""
        folder = version_folder(self.state_dir, version)
        marks: list = [version]
        for name in (MANIFEST_FILE, TENSORS_FILE):
            try:
                status = (folder / name).stat()
                marks += [status.st_ino, status.st_size, status.st_mtime_ns]
            except OSError:
                marks += [None]
        return tuple(marks)

    def _try_install(self, version: int) -> bool:
        identity = self._identity(version)
        if identity in self._refused:
            return False
        try:
            self.install(load_state(version_folder(self.state_dir, version)))
            return True
        except (StateError, StateMismatchError) as error:
            log.error("PromptState version %d refused, still serving version %d: %s", version, self.version, error)
            self._refused.add(identity)
            self._refusals[version] = (
                "it does not fit the towers or the learner this replica runs"
                if isinstance(error, StateMismatchError)
                else "its files are missing, unreadable or corrupted"
            )
            return False

    def predict_batch(self, samples: Sequence[DecodedSample]) -> list[PredictResponse]:
        """Answers in the order of `samples`, all computed by the one model installed when the batch began."""
        model = self._model
        if model is None:
            raise NoModelError("no task has been learned yet: train or feed one first")
        encoded = model.encode([sample.image for sample in samples], [sample.text for sample in samples])
        predictions = model.predict(encoded, max(sample.top_k for sample in samples))
        answers = [
            PredictResponse(
                label=prediction.labels[0],
                score=prediction.scores[0],
                top_k=[
                    Scored(label=label, score=score)
                    for label, score in zip(prediction.labels[: sample.top_k], prediction.scores, strict=False)
                ],
                known=prediction.known,
                missing=sample.missing,
                reconstructed=prediction.reconstructed,
                model_version=model.version,
            )
            for sample, prediction in zip(samples, predictions, strict=True)
        ]
        self._remember_unknown(samples, answers)
        return answers

    def _remember_unknown(self, samples: Sequence[DecodedSample], answers: list[PredictResponse]) -> None:
        now = time.time()
        for sample, answer in zip(samples, answers, strict=True):
            if not answer.known:
                text = sample.text[:TEXT_SHOWN] if sample.text else None
                self._unknown.append(
                    UnknownAnswer(
                        time=now,
                        text=text,
                        image=sample.image is not None,
                        label=answer.label,
                        score=answer.score,
                        model_version=answer.model_version,
                    )
                )

    def recent_unknown(self) -> list[UnknownAnswer]:
        """This replica's latest answers flagged unknown, newest first."""
        return list(reversed(self._unknown))

    def versions(self) -> list[VersionInfo]:
        """Every version in the state directory whose manifest reads, oldest first."""
        listed = []
        for version in list_versions(self.state_dir):
            try:
                manifest = read_manifest(version_folder(self.state_dir, version))
            except StateError as error:
                log.warning("version %d left out of the list: %s", version, error)
                continue
            gate = manifest.notes.get("gate", {})
            listed.append(
                VersionInfo(
                    version=version,
                    created=manifest.created,
                    tasks=[task.name for task in manifest.tasks],
                    classes=len(manifest.classes),
                    samples=manifest.notes.get("training", {}).get("samples"),
                    accuracy=gate.get("accuracy"),
                    forgetting=gate.get("forgetting", {}),
                    served=version == self.version,
                    refused=self._refusals.get(version),
                )
            )
        return listed

    def model_info(self) -> ModelInfo:
        model = self._model
        tasks = [TaskInfo(name=task.name, classes=list(task.classes)) for task in model.tasks] if model else []
        return ModelInfo(version=model.version if model else 0, tasks=tasks, backbone=self.backbone.describe())
