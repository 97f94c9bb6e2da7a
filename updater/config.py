"""How tasks are trained and when the updater trains them: plain pydantic, importable without torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from model.config import StrictModel


class TrainerConfig(StrictModel):
    """How one task is trained (see `updater/trainer.py`)."""

    epochs: int = Field(8, ge=1, le=1000)
    batch_size: int = Field(32, ge=1, le=4096)
    learning_rate: float = Field(0.001, gt=0, le=1)
    reconstruction_weight: float = Field(1.0, ge=0)
    modality_drop: float = Field(0.5, ge=0, le=1)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"  # where the towers run; auto: the GPU when there is one


class UpdaterConfig(StrictModel):
    min_samples_per_class: int = Field(10, ge=1)
    quiet_seconds: float = Field(30.0, ge=0)
    holdout_fraction: float = Field(0.2, ge=0, lt=1)  # of each class's samples, held back for the gate
    # encodings of held-back samples kept between trainings; past it, the oldest tasks' are encoded again
    holdout_memory_mb: int = Field(256, ge=0)
    min_accuracy: float = Field(50.0, ge=0, le=100)  # percent, on the new task's held-back samples
    max_forgetting: float = Field(20.0, ge=0, le=100)  # points an earlier task may lose
    poll_seconds: float = Field(1.0, gt=0)
    max_samples_per_request: int = Field(256, ge=1)
