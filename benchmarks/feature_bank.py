"""Frozen features of a whole data set, computed once and shared by every method and seed of a benchmark."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from model.batch import EncodedBatch
from model.continual import ContinualModel
from model.dataset import Sample, load_image
from model.modality import Modality, presence_masks

log = logging.getLogger(__name__)

CHUNK = 32


def encode_samples(model: ContinualModel, samples: Sequence[Sample], progress: bool = True) -> EncodedBatch:
    """Every sample with all the modalities it has, encoded in chunks; text padded to the data set's longest."""
    parts = []
    for start in tqdm(range(0, len(samples), CHUNK), desc="frozen features", disable=not progress, leave=False):
        chunk = samples[start : start + CHUNK]
        images = [load_image(sample) if sample.image_path else None for sample in chunk]
        parts.append(model.encode(images, [sample.text for sample in chunk]))
    width = max(part.input_ids.shape[1] for part in parts)

    def padded(tensor: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(tensor, (0, width - tensor.shape[1]))

    return EncodedBatch(
        has_image=torch.cat([part.has_image for part in parts]),
        has_text=torch.cat([part.has_text for part in parts]),
        q_image=torch.cat([part.q_image for part in parts]),
        q_text=torch.cat([part.q_text for part in parts]),
        input_ids=torch.cat([padded(part.input_ids) for part in parts]),
        attention_mask=torch.cat([padded(part.attention_mask) for part in parts]),
        pixel_values=None if parts[0].pixel_values is None else torch.cat([part.pixel_values for part in parts]),
    )


def with_table(batch: EncodedBatch, table: Sequence[Modality]) -> EncodedBatch:
    """Hide the modalities a missing table takes away."""
    keep_image, keep_text = presence_masks(table)  # (N,), (N,)
    return batch.with_presence(batch.has_image & keep_image, batch.has_text & keep_text)


def blank_inputs(model: ContinualModel, size: int) -> EncodedBatch:
    """One complete row of blank inputs, both encoded: a white `size`-square image and the empty text.

    The empty text is the special-tokens-only input `[CLS] [SEP]` run through the text tower; its query is a
    real feature, not the zero vector that `encode` gives a missing text.
    """
    white = model.encode([Image.new("RGB", (size, size), (255, 255, 255))], [None])  # the image row
    text_tower = model.backbone.text
    empty = text_tower.prompt_only_inputs(1)  # input_ids, attention_mask (1, 2)
    with torch.no_grad():
        q_text = F.normalize(text_tower.encode(empty), dim=-1)  # (1, Dt)
    return replace(
        white,
        has_text=torch.ones(1, dtype=torch.bool),
        q_text=q_text,
        input_ids=empty["input_ids"],
        attention_mask=empty["attention_mask"],
    )


def fill_blanks(batch: EncodedBatch, blank: EncodedBatch) -> EncodedBatch:
    """Give each missing modality the features and tokens of a blank input (white image, empty text)."""
    no_image, no_text = ~batch.has_image, ~batch.has_text  # (N,)
    ids, mask = batch.input_ids.clone(), batch.attention_mask.clone()
    blank_width = blank.input_ids.shape[1]
    ids[no_text] = 0
    mask[no_text] = 0
    ids[no_text, :blank_width] = blank.input_ids[0]
    mask[no_text, :blank_width] = blank.attention_mask[0]
    pixels = batch.pixel_values
    if pixels is not None:
        pixels = torch.where(no_image[:, None, None, None], blank.pixel_values[0], pixels)
    return replace(
        batch,
        has_image=torch.ones_like(batch.has_image),
        has_text=torch.ones_like(batch.has_text),
        q_image=torch.where(no_image.unsqueeze(-1), blank.q_image[0], batch.q_image),
        q_text=torch.where(no_text.unsqueeze(-1), blank.q_text[0], batch.q_text),
        input_ids=ids,
        attention_mask=mask,
        pixel_values=pixels,
    )
