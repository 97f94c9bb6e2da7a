"""Where the torch towers run: the configured `auto | cpu | cuda` resolved against this machine."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def resolve_device(wanted: str, field: str = "device") -> torch.device:
    """`auto`: the GPU when torch sees one, else the CPU; `cuda` with no usable GPU: an error naming `field`."""
    if wanted == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if wanted == "cuda":
        raise RuntimeError(f"{field}: cuda was asked for but torch sees no usable GPU here")
    return torch.device("cpu")


def place_towers(backbone, device: torch.device) -> None:
    """Move both frozen torch towers to `device`; the trainable parts stay where they are (the CPU)."""
    for tower in (backbone.image, backbone.text):
        tower.to(device)
    log.info("the towers run on %s", device)
