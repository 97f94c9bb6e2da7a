"""The HTTP API's bodies, as pydantic models (they also make the OpenAPI document at /docs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Missing = Literal["image", "text"]


class PredictRequest(BaseModel):
    """One sample; either modality may be null, not both. `image` is base64 of PNG, JPEG or WebP bytes."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    image: str | None = None
    top_k: int = Field(5, ge=1)


class Scored(BaseModel):
    label: str
    score: float


class PredictResponse(BaseModel):
    label: str
    score: float = Field(description="the label's calibrated probability")
    top_k: list[Scored]
    known: bool = Field(
        description="false: the sample is farther from every learned class than the held-back samples were, "
        "so it likely belongs to none of them (the label is still the nearest)"
    )
    missing: list[Missing]
    reconstructed: bool
    model_version: int


class TaskInfo(BaseModel):
    name: str
    classes: list[str]


class ModelInfo(BaseModel):
    version: int  # 0 while no task has been learned
    tasks: list[TaskInfo]
    backbone: dict[str, Any]
    updater: dict[str, Any] | None = None  # its state, buffered samples and last training


class VersionInfo(BaseModel):
    """One version in the state directory, as its manifest describes it."""

    version: int
    created: float  # seconds since the epoch
    tasks: list[str]
    classes: int
    samples: int | None  # trained on for its newest task
    accuracy: float | None  # percent, its newest task on held-back samples (None: not gated, as `train`)
    forgetting: dict[str, float]  # points each earlier task lost on its held-back samples
    served: bool  # the version this replica serves
    refused: str | None = None  # why this replica refused to serve it, if it did


class UnknownAnswer(BaseModel):
    """A recent answer flagged `known: false`: a candidate for a new task."""

    time: float  # seconds since the epoch
    text: str | None
    image: bool  # whether an image was sent
    label: str  # the nearest class
    score: float
    model_version: int


class ErrorBody(BaseModel):
    """Every 4xx answer: the field at fault (or null for the request as a whole) and what is wrong."""

    field: str | None
    detail: str


class FeedbackSample(BaseModel):
    """One labelled sample; like a prediction request, at least one of text and image."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    image: str | None = None
    label: str = Field(min_length=1, max_length=200)
    task: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    samples: list[FeedbackSample] = Field(min_length=1)


class FeedbackAccepted(BaseModel):
    accepted: int
    offset: int  # the feedback log's length once these samples are in it


class TrainStarted(BaseModel):
    task: str
    state: str


class TaskDropped(BaseModel):
    task: str
    dropped: int  # samples that will not be trained


class RolledBack(BaseModel):
    version: int  # the version now published


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
