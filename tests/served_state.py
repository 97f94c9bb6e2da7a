"""Tiny published PromptStates and app configs for the serving tests."""

from __future__ import annotations

from pathlib import Path

import torch

from model.backbone import Backbone
from model.config import BackboneConfig, LearnerConfig
from model.continual import ContinualModel
from model.published import load_published
from model.state import PromptState
from serving.config import AppConfig, RayConfig, ServerConfig
from tests.learning_data import samples
from updater.trainer import TrainerConfig, train_task

SMALL = LearnerConfig(components_per_task=3, prompt_length=2, memory_components_per_task=3, memory_prompt_length=2)


def learn_and_publish(backbone: Backbone, state_dir: Path, name: str, classes: list[str]) -> PromptState:
    """Train one more task on top of the published version (if any) and publish it."""
    published = load_published(state_dir)
    model = ContinualModel.from_state(backbone, published) if published else ContinualModel(backbone, SMALL)
    images, texts, labels = samples(classes, per_class=4)
    batch = model.encode(images, texts)
    train_task(model, name, classes, batch, labels, TrainerConfig(epochs=2), progress=False)
    return model.save(state_dir)


def only_text_only_rows_known(model: ContinualModel) -> None:
    """Calibrate `model` so that a row with an image ranks above every held-back row (unknown), while
    text-only rows, whose pattern has no quantiles, are all known."""
    calibration = model.learner.calibration
    knots = torch.zeros_like(calibration.knots)  # (P, M, K) complete, image only, text only
    knots[2] = float("inf")
    calibration.knots = knots
    calibration.cut = torch.tensor(1e-3)


def tiny_app_config(backbone: BackboneConfig, state_dir: Path, **server) -> AppConfig:
    return AppConfig(
        backbone=backbone,
        learner=SMALL,
        server=ServerConfig(state_dir=state_dir, **server),
        ray=RayConfig(),
    )
