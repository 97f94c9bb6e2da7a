"""The two frozen towers, loaded from config, in torch or in ONNX Runtime."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from model.cnn_tower import CnnTower
from model.config import BackboneConfig, ImageTowerConfig
from model.onnx_export import OnnxCache
from model.onnx_tower import OnnxTower, served_precision
from model.text_tower import TextTower
from model.tower import FrozenTower, Tower
from model.vit_tower import VitTower

log = logging.getLogger(__name__)


def load_image_tower(config: ImageTowerConfig) -> Tower:
    if config.kind == "efficientnet":
        return CnnTower.load(config)
    return VitTower.load(config)


@dataclass
class Backbone:
    """An image tower and a text tower (torch `Tower`s or `OnnxTower`s) and their joint fingerprint."""

    image: FrozenTower
    text: FrozenTower
    fingerprint: str

    def describe(self) -> dict[str, Any]:
        return {"image": self.image.describe(), "text": self.text.describe(), "fingerprint": self.fingerprint}


def joint_fingerprint(image_fingerprint: str, text_fingerprint: str) -> str:
    return hashlib.sha256(f"{image_fingerprint}|{text_fingerprint}".encode()).hexdigest()[:32]


def load_backbone(config: BackboneConfig, runtime: str = "torch") -> Backbone:
    """Load both towers; with `runtime="onnx"` run them in ONNX Runtime from the export cache, at
    `config.precision` (int8 on the CPU provider only)."""
    image_tower, text_tower = load_image_tower(config.image), TextTower.load(config.text)
    image_print, text_print = image_tower.fingerprint(), text_tower.fingerprint()
    fingerprint = joint_fingerprint(image_print, text_print)
    if runtime == "torch":
        return Backbone(image=image_tower, text=text_tower, fingerprint=fingerprint)
    if runtime != "onnx":
        raise ValueError(f"runtime: {runtime!r} is neither 'torch' nor 'onnx'")
    cache = OnnxCache(config.cache_dir())
    precision = served_precision(config.precision, config.device)
    towers = [
        OnnxTower(
            tower,
            cache.get_or_export(tower, tower_print, precision),
            config.device,
            config.intra_op_threads,
            precision,
        )
        for tower, tower_print in ((image_tower, image_print), (text_tower, text_print))
    ]
    return Backbone(image=towers[0], text=towers[1], fingerprint=fingerprint)
