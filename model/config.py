"""Pydantic configuration of the frozen backbone, checked at the edge."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class StrictModel(BaseModel):
    """A config that refuses unknown fields and cannot change once made."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_layers(layers: tuple[int, ...]) -> tuple[int, ...]:
    if len(set(layers)) != len(layers):
        raise ValueError(f"prompt_layers must not repeat a layer: {list(layers)}")
    if any(layer < 0 for layer in layers):
        raise ValueError(f"prompt_layers must be non-negative: {list(layers)}")
    return tuple(sorted(layers))


class TextTowerConfig(StrictModel):
    """A BERT-family text encoder; `path=None` is all-MiniLM-L6-v2 from its wheel."""

    path: Path | None = None
    max_length: int = Field(64, ge=4, le=512)
    pooling: Literal["mean", "cls"] = "mean"
    prompt_layers: tuple[int, ...] = (0, 1, 2)

    _layers = field_validator("prompt_layers")(_check_layers)


RGB = tuple[float, float, float]


class ImageTowerConfig(StrictModel):
    """An image encoder: a CNN (EfficientNet-Lite, prompts on its pooled feature) or a ViT-family HF folder.

    For `kind="efficientnet"`, `path` is a state-dict file (None: EfficientNet-Lite0 from its wheel);
    for `kind="vit"` it is a transformers folder of ViT, DINOv2 or CLIP.
    """

    kind: Literal["efficientnet", "vit"] = "efficientnet"
    path: Path | None = None
    variant: str = "efficientnet-lite0"
    image_size: int | None = Field(None, ge=8, le=1024)
    width_coefficient: float | None = Field(None, gt=0)
    depth_coefficient: float | None = Field(None, gt=0)
    mean: RGB | None = None
    std: RGB | None = None
    prompt_layers: tuple[int, ...] = (0, 1, 2)

    _layers = field_validator("prompt_layers")(_check_layers)

    @field_validator("std")
    @classmethod
    def _positive_std(cls, std: RGB | None) -> RGB | None:
        if std is not None and min(std) <= 0:
            raise ValueError(f"std must be positive: {std}")
        return std


class BackboneConfig(StrictModel):
    """Both towers, where their ONNX exports are cached, the device they run on and their precision there.

    `precision`: what ONNX Runtime serves on the CPU provider. "int8": the text tower's matrix products
    quantised dynamically, the image tower quantised statically on calibration pictures (see
    `model/quantisation.py`); a tower on CUDA keeps fp32. Training always runs the fp32 torch towers.
    """

    text: TextTowerConfig = TextTowerConfig()
    image: ImageTowerConfig = ImageTowerConfig()
    onnx_cache_dir: Path | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "int8"] = "fp32"
    intra_op_threads: int | None = Field(None, ge=1, le=256)

    @model_validator(mode="after")
    def _int8_on_cpu(self) -> BackboneConfig:
        if self.device == "cuda" and self.precision == "int8":
            raise ValueError("precision: int8 runs on the CPU provider; with device: cuda use precision: fp32")
        return self

    def cache_dir(self) -> Path:
        return self.onnx_cache_dir or Path.home() / ".cache" / "rebq-serve" / "onnx"


class LearnerConfig(StrictModel):
    """The growing parts: prompt pools, memory pools, the cosine head and the discriminant.

    `strategy`: how a task grows the pools without moving what earlier tasks learned, one module each in
    `model/strategies/`. "fwd_prompt": every task adds components, their keys kept out of the subspace of
    earlier tasks' queries (with `null_space_energy` of those queries' energy defining the subspace), so
    earlier inputs give them no weight. "first_task": only the first task adds components; later tasks add
    classifier rows only. "modal_prompt": every task adds components and an image and a text prototype;
    each input uses the components of the `route_top_k` tasks whose prototypes are nearest to it.
    "exemplar_replay": every task adds components; a buffer of at most `exemplar_budget_bytes` of compact
    exemplars, shared by every class, moves old classes' discriminant means by their exemplars' drift.
    "moincl": every task adds components, trained with the published model's scores over the classes it
    knows, on the new task's rows, as soft targets (temperature `distill_temperature`, weight
    `distill_weight`).

    The cosine head trains the prompts; predictions rank a linear discriminant with one shared covariance
    shrunk by `lda_shrinkage` (see `model/lda_classifier.py`), grown from each task's class means and
    within-class scatter (over the training rows and each complete one twice more, with either half
    hidden and reconstructed, so that the means and the covariance know reconstructed halves).
    """

    strategy: Literal["fwd_prompt", "first_task", "exemplar_replay", "modal_prompt", "moincl"] = "first_task"
    null_space_energy: float = Field(0.99, gt=0, le=1)
    route_top_k: int = Field(1, ge=1)
    distill_temperature: float = Field(5.0, gt=0)
    distill_weight: float = Field(1.0, ge=0)
    exemplar_budget_bytes: int = Field(262_144, ge=0, le=2**31)
    components_per_task: int = Field(8, ge=1, le=256)
    prompt_length: int = Field(8, ge=1, le=64)
    memory_components_per_task: int = Field(8, ge=1, le=256)
    memory_prompt_length: int = Field(8, ge=1, le=64)
    head_scale: float = Field(16.0, gt=0)
    lda_shrinkage: float = Field(0.5, gt=0, le=1)
