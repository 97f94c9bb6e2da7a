"""A learner bound to its backbone, class registry and version: what the trainer grows and a replica serves."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from model.backbone import Backbone
from model.batch import EncodedBatch, encode_batch, with_halves_hidden
from model.calibration import OBSOLETE, Calibration
from model.config import LearnerConfig
from model.published import next_version, publish
from model.rebq import LearnerOutput, RebQLearner
from model.state import PromptState, TaskRecord, check_compatible, refuse_changed_learner, save_state

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    labels: list[str]  # best first
    scores: list[float]  # calibrated probabilities, best first
    reconstructed: bool
    known: bool  # within the open-set threshold of a class learned: False means none of them, likely


def _calibrated(state: PromptState) -> PromptState:
    """`state`, or a version saved before calibration, or with the open-set threshold of earlier releases,
    with what it lacks filled in as uncalibrated."""
    missing = {name: tensor for name, tensor in Calibration.uncalibrated().items() if name not in state.tensors}
    if not missing:
        return state
    kept = {name: tensor for name, tensor in state.tensors.items() if name not in OBSOLETE}
    if "calibration.temperature" in kept:
        log.warning(
            "PromptState version %d has an open-set threshold of an earlier form: every answer known",
            state.version,
        )
    else:
        log.warning(
            "PromptState version %d has no calibration: scores are uncalibrated, every answer known", state.version
        )
    return replace(state, tensors={**kept, **missing})


class ContinualModel:
    def __init__(self, backbone: Backbone, config: LearnerConfig):
        self.backbone = backbone
        self.config = config
        self.learner = RebQLearner(backbone.image, backbone.text, config)
        self.tasks: list[TaskRecord] = []
        self.version = 0

    @classmethod
    def from_state(cls, backbone: Backbone, state: PromptState) -> ContinualModel:
        """A model serving `state`; refused with a message naming the difference if it does not fit."""
        state = _calibrated(state)
        model = cls(backbone, state.manifest.learner)
        expected = model.learner.expected_shapes(len(state.manifest.tasks), len(state.manifest.classes))
        check_compatible(state, backbone.fingerprint, state.manifest.learner, expected)
        model.learner.import_tensors(state.tensors)
        model.tasks = list(state.manifest.tasks)
        model.version = state.version
        return model

    @classmethod
    def resume(cls, backbone: Backbone, state: PromptState | None, config: LearnerConfig) -> ContinualModel:
        """The model that goes on learning: `state`'s, refused if `config` differs from the learner it was
        trained with; a new one of `config` when nothing was published."""
        if state is None:
            return cls(backbone, config)
        refuse_changed_learner(config, state)
        return cls.from_state(backbone, state)

    @property
    def classes(self) -> list[str]:
        return [name for task in self.tasks for name in task.classes]

    def run_by(self, backbone: Backbone) -> ContinualModel:
        """This model's learned parts on `backbone`, the same towers run another way (int8 ONNX, say): what a
        replica serving it answers. Its calibration can be fitted there and taken back (`take_calibration`)."""
        if backbone is self.backbone:
            return self
        if backbone.fingerprint != self.backbone.fingerprint:
            raise ValueError("run_by: the backbone's towers are not the ones this model was trained on")
        served = ContinualModel(backbone, self.config)
        served.learner.import_tensors(self.learner.export_tensors())
        served.tasks, served.version = list(self.tasks), self.version
        return served

    def take_calibration(self, other: ContinualModel) -> None:
        """Use the temperatures and thresholds fitted on `other` (this model run by other towers)."""
        self.learner.calibration.import_tensors(other.learner.calibration.export_tensors())

    def encode(self, images: Sequence[Image.Image | None], texts: Sequence[str | None]) -> EncodedBatch:
        return encode_batch(self.backbone.image, self.backbone.text, images, texts)

    def forward(self, batch: EncodedBatch) -> LearnerOutput:
        return self.learner(batch)

    def predict(self, batch: EncodedBatch, top_k: int) -> list[Prediction]:
        if not self.tasks:
            raise RuntimeError("no task has been learned yet")
        with torch.no_grad():
            output = self.learner(batch)
            probabilities, novelty = self.scores(output, batch)  # (B, C), (B,)
        k = min(top_k, probabilities.shape[1])
        scores, indices = probabilities.topk(k, dim=-1)  # (B, k)
        classes = self.classes
        return [
            Prediction([classes[i] for i in row_indices], row_scores, bool(rebuilt), bool(known))
            for row_indices, row_scores, rebuilt, known in zip(
                indices.tolist(),
                scores.tolist(),
                output.reconstructed.tolist(),
                (novelty <= 1).tolist(),
                strict=True,
            )
        ]

    def scores(self, output: LearnerOutput, batch: EncodedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Calibrated probabilities `(B, C)` and novelty `(B,)` (above 1: unknown) of the learner's `output`."""
        learner, has_image, has_text = self.learner, batch.has_image, batch.has_text
        probabilities = learner.calibration.probabilities(output.logits, has_image, has_text)
        distances = learner.lda.distance(output.fused, has_image, has_text)  # (B,)
        return probabilities, learner.calibration.novelty(distances, probabilities, has_image, has_text)

    def calibrate(self, batch: EncodedBatch, labels: Sequence[str]) -> None:
        """Fit the temperatures and open-set thresholds on held-back samples of learned classes, each
        complete one also with either half hidden, so that every pattern is fitted where samples allow."""
        index = {name: position for position, name in enumerate(self.classes)}
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise ValueError(f"calibration samples of classes not learned: {unknown}")
        rows, view = with_halves_hidden(batch)
        targets = torch.tensor([index[label] for label in labels])[rows]  # (M,)
        with torch.no_grad():
            output = self.learner(view)
            distances = self.learner.lda.distance(output.fused, view.has_image, view.has_text)  # (M,)
        self.learner.calibration.fit(output.logits, distances, targets, view.has_image, view.has_text)

    def save(self, directory: Path, notes: dict[str, Any] | None = None, publish_it: bool = True) -> PromptState:
        """Write the current tensors as the next version in `directory` and, unless told not to, publish it."""
        state = save_state(
            directory,
            self.learner.export_tensors(),
            version=next_version(directory),
            backbone_fingerprint=self.backbone.fingerprint,
            backbone=self.backbone.describe(),
            learner=self.config,
            tasks=self.tasks,
            notes=notes,
        )
        self.version = state.version
        if publish_it:
            publish(directory, state.version)
        return state
