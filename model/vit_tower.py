"""A ViT-family image tower (ViT, DINOv2, CLIP's vision tower) with prefix key/value prompts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import AutoConfig, CLIPVisionModel, Dinov2Model, ViTModel

from model.config import ImageTowerConfig
from model.hf_loading import load_quietly
from model.modality import Modality
from model.prefix_attention import mark_prompt_layers, split_heads
from model.preprocess import ImagePreprocessor
from model.tower import PromptKind, Tower

# model_type -> (class, whether its pooler_output is the CLS feature to use)
VIT_FAMILIES = {
    "vit": (ViTModel, False),
    "dinov2": (Dinov2Model, True),
    "clip": (CLIPVisionModel, True),
    "clip_vision_model": (CLIPVisionModel, True),
}


def _normalisation(folder: Path, config: ImageTowerConfig) -> tuple[Sequence[float], Sequence[float]]:
    """The folder's own image mean and std (preprocessor_config.json), unless the config overrides them."""
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    processor_file = folder / "preprocessor_config.json"
    if processor_file.is_file():
        processor = json.loads(processor_file.read_text())
        mean, std = processor.get("image_mean", mean), processor.get("image_std", std)
    return config.mean or mean, config.std or std


class VitTower(Tower):
    modality = Modality.IMAGE
    prompt_kind = PromptKind.PREFIX
    input_names = ("pixel_values",)

    def __init__(self, encoder, config: ImageTowerConfig, mean, std, source: str, use_pooler: bool):
        super().__init__()
        self.encoder = encoder
        self.config = config
        self.source = source
        self.use_pooler = use_pooler
        vision_config = encoder.config
        self.image_size = config.image_size or vision_config.image_size
        self.num_heads = vision_config.num_attention_heads
        self.feature_dim = vision_config.hidden_size
        self.image_preprocessor = ImagePreprocessor(self.image_size, mean, std)
        mark_prompt_layers(encoder, config.prompt_layers)
        self.freeze()

    @classmethod
    def load(cls, config: ImageTowerConfig) -> VitTower:
        if config.path is None or not Path(config.path).is_dir():
            raise FileNotFoundError(f"image tower path: {config.path} is not a ViT-family model folder")
        folder = Path(config.path)
        model_type = AutoConfig.from_pretrained(folder).model_type
        if model_type not in VIT_FAMILIES:
            raise ValueError(f"image tower path: {model_type!r} is not one of {sorted(VIT_FAMILIES)}")
        model_class, use_pooler = VIT_FAMILIES[model_type]
        extra = {"add_pooling_layer": False} if model_class is ViTModel else {}
        encoder = load_quietly(model_class, folder, **extra)
        mean, std = _normalisation(folder, config)
        return cls(encoder, config, mean, std, source=str(folder), use_pooler=use_pooler)

    def prompt_shape(self, length: int) -> tuple[int, ...]:
        return (len(self.config.prompt_layers), 2, length, self.feature_dim)

    def preprocess(self, raw: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.image_preprocessor(raw)}

    def forward(self, pixel_values: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        # pixel_values (B, 3, S, S); prompts (B, Lp, 2, P, D) -> features (B, D)
        output = self.encoder(pixel_values=pixel_values, rebq_prefix=split_heads(prompts, self.num_heads))
        if self.use_pooler:
            return output.pooler_output
        return output.last_hidden_state[:, 0]

    def example_inputs(self, batch: int, prompt_length: int) -> dict[str, torch.Tensor]:
        return {
            "pixel_values": torch.randn(batch, 3, self.image_size, self.image_size),
            "prompts": torch.randn(batch, *self.prompt_shape(prompt_length)) * 0.1,
        }

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {
            "pixel_values": {0: "batch"},
            "prompts": {0: "batch", 3: "prompt_length"},
            "features": {0: "batch"},
        }

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.encoder.config.model_type,
            "source": Path(self.source).name,
            "layers": self.encoder.config.num_hidden_layers,
            "feature_dim": self.feature_dim,
            "image_size": self.image_size,
            "prompt_layers": list(self.config.prompt_layers),
        }
