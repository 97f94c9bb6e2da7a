"""A batch of samples as the learner sees it: frozen queries, tower inputs and presence masks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from PIL import Image

from model.modality import given_text
from model.tower import PromptKind


@dataclass(frozen=True)
class EncodedBatch:
    """Every field has the batch first. Rows without a modality carry placeholder inputs and zero queries."""

    has_image: torch.Tensor  # (B,) bool
    has_text: torch.Tensor  # (B,) bool
    q_image: torch.Tensor  # (B, Di) unit-norm frozen image feature, zero where missing
    q_text: torch.Tensor  # (B, Dt) unit-norm frozen text feature, zero where missing
    input_ids: torch.Tensor  # (B, S) int64
    attention_mask: torch.Tensor  # (B, S) int64
    pixel_values: torch.Tensor | None = None  # (B, 3, H, W), kept only for prefix-prompted image towers

    def __len__(self) -> int:
        return self.has_image.shape[0]

    @property
    def nbytes(self) -> int:
        """The memory its tensors hold."""
        tensors = (getattr(self, field.name) for field in fields(self))
        return sum(tensor.element_size() * tensor.nelement() for tensor in tensors if tensor is not None)

    def select(self, rows: torch.Tensor) -> EncodedBatch:
        """The rows `rows (b,)`, with the text trimmed to the longest of them."""
        picked = {
            field.name: (value[rows] if (value := getattr(self, field.name)) is not None else None)
            for field in fields(self)
        }
        longest = max(int(picked["attention_mask"].sum(1).max()) if len(rows) else 2, 2)
        picked["input_ids"] = picked["input_ids"][:, :longest]
        picked["attention_mask"] = picked["attention_mask"][:, :longest]
        return EncodedBatch(**picked)

    def with_presence(self, has_image: torch.Tensor, has_text: torch.Tensor) -> EncodedBatch:
        """The same rows with some modalities hidden (modality drop): queries of hidden ones zeroed."""
        return replace(
            self,
            has_image=has_image,
            has_text=has_text,
            q_image=self.q_image * has_image.unsqueeze(-1),
            q_text=self.q_text * has_text.unsqueeze(-1),
        )


def concat_batches(batches: Sequence[EncodedBatch]) -> EncodedBatch:
    """The rows of `batches`, in order, in one batch: the text padded (masked out) to the longest of them."""
    longest = max(batch.input_ids.shape[1] for batch in batches)

    def joined(name: str) -> torch.Tensor | None:
        values = [getattr(batch, name) for batch in batches]
        if values[0] is None:
            return None
        if name in ("input_ids", "attention_mask"):
            values = [F.pad(value, (0, longest - value.shape[1])) for value in values]  # (b, longest)
        return torch.cat(values)

    return EncodedBatch(**{field.name: joined(field.name) for field in fields(EncodedBatch)})


def with_halves_hidden(batch: EncodedBatch) -> tuple[torch.Tensor, EncodedBatch]:
    """Each row of `batch`, then each complete row once with its image and once with its text hidden:
    which rows of `batch` `(M,)`, and the batch of them."""
    complete = (batch.has_image & batch.has_text).nonzero().flatten()  # (n,)
    rows = torch.cat([torch.arange(len(batch)), complete, complete])  # (M,)
    hidden, shown = torch.zeros(len(complete), dtype=torch.bool), torch.ones(len(complete), dtype=torch.bool)
    has_image = torch.cat([batch.has_image, hidden, shown])  # (M,)
    has_text = torch.cat([batch.has_text, shown, hidden])  # (M,)
    return rows, batch.select(rows).with_presence(has_image, has_text)


def scatter_rows(values: torch.Tensor, rows: torch.Tensor, total: int) -> torch.Tensor:
    """`values (b, D)` placed at `rows (b,)` of a zero `(total, D)` tensor."""
    out = torch.zeros(total, *values.shape[1:], dtype=values.dtype)
    return out.index_copy(0, rows, values) if len(rows) else out


def encode_batch(image_tower, text_tower, images: Sequence[Image.Image | None], texts: Sequence[str | None]):
    """Preprocess raw samples and run the frozen towers once, only on the rows that have each modality."""
    total = len(images)
    has_image = torch.tensor([image is not None for image in images], dtype=torch.bool)  # (B,)
    texts = [given_text(text) for text in texts]
    has_text = torch.tensor([text is not None for text in texts], dtype=torch.bool)  # (B,)
    image_rows, text_rows = has_image.nonzero().flatten(), has_text.nonzero().flatten()
    with torch.no_grad():
        image_inputs = image_tower.preprocess([images[i] for i in image_rows.tolist()])
        text_inputs = text_tower.preprocess([texts[i] or "" for i in range(total)])
        q_image = F.normalize(image_tower.encode(image_inputs), dim=-1) if len(image_rows) else None
        present_text = {name: tensor[text_rows] for name, tensor in text_inputs.items()}
        q_text = F.normalize(text_tower.encode(present_text), dim=-1) if len(text_rows) else None
    pixel_values = None
    if image_tower.prompt_kind is PromptKind.PREFIX:
        pixels = image_inputs["pixel_values"]
        pixel_values = scatter_rows(pixels, image_rows, total)
    if q_image is None:
        q_image = torch.zeros(0, image_tower.feature_dim)
    if q_text is None:
        q_text = torch.zeros(0, text_tower.feature_dim)
    return EncodedBatch(
        has_image=has_image,
        has_text=has_text,
        q_image=scatter_rows(q_image, image_rows, total),
        q_text=scatter_rows(q_text, text_rows, total),
        input_ids=text_inputs["input_ids"],
        attention_mask=text_inputs["attention_mask"],
        pixel_values=pixel_values,
    )
