"""Which modalities a sample carries: a flag enum at the edge, boolean masks inside."""

from __future__ import annotations

import enum
from collections.abc import Sequence

import torch


class Modality(enum.Flag):
    NONE = 0
    IMAGE = enum.auto()
    TEXT = enum.auto()
    BOTH = IMAGE | TEXT

    @property
    def label(self) -> str:
        return {Modality.IMAGE: "image", Modality.TEXT: "text"}.get(self, str(self.name).lower())


MISSING_PATTERNS = ("complete", "image_missing", "text_missing")  # every `missing_pattern` of a sample


def given_text(text: str | None) -> str | None:
    """The text as given, or None when absent or blank (only whitespace). One rule on every path: a blank
    text is a missing text in requests, feedback, data sets and the encoded batch alike."""
    return text if text is not None and text.strip() else None


def missing_pattern(present: Modality) -> str:
    """The name used in answers, metrics and benchmarks for what a sample lacks."""
    if present == Modality.BOTH:
        return "complete"
    if present == Modality.IMAGE:
        return "text_missing"
    if present == Modality.TEXT:
        return "image_missing"
    return "empty"


def presence_masks(present: Sequence[Modality]) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks `has_image (B,)` and `has_text (B,)` for a batch of presence flags."""
    has_image = torch.tensor([bool(p & Modality.IMAGE) for p in present], dtype=torch.bool)  # (B,)
    has_text = torch.tensor([bool(p & Modality.TEXT) for p in present], dtype=torch.bool)  # (B,)
    return has_image, has_text
