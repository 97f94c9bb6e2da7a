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
    score: float
    top_k: list[Scored]
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


class ErrorBody(BaseModel):
    """Every 4xx answer: the field at fault (or null for the request as a whole) and what is wrong."""

    field: str | None
    detail: str
