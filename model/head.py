"""A cosine classifier over every class seen, growing by rows; finished tasks' rows are frozen buffers.

Unit-norm rows and unit-norm features put old and new classes on one scale, which is what a head
trained task after task lacks (task-recency bias).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GrowingHead(nn.Module):
    def __init__(self, feature_dim: int, scale: float):
        super().__init__()
        self.feature_dim = feature_dim
        self.scale = scale
        self.register_buffer("frozen_weight", torch.zeros(0, feature_dim))  # (C_old, F)
        self.new_weight = nn.Parameter(torch.zeros(0, feature_dim))  # (C_new, F)

    @property
    def num_classes(self) -> int:
        return self.frozen_weight.shape[0] + self.new_weight.shape[0]

    def weight(self) -> torch.Tensor:
        return torch.cat([self.frozen_weight, self.new_weight])  # (C, F)

    def freeze_current(self) -> None:
        self.frozen_weight = self.weight().detach().clone()
        self.new_weight = nn.Parameter(torch.zeros(0, self.feature_dim))

    def grow(self, initial_rows: torch.Tensor) -> None:
        """Freeze the rows learned so far and add trainable rows `(n, F)`, e.g. class prototypes."""
        self.freeze_current()
        self.new_weight = nn.Parameter(F.normalize(initial_rows.detach().clone(), dim=-1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # features (B, F) -> logits (B, C)
        return self.scale * F.normalize(features, dim=-1) @ F.normalize(self.weight(), dim=-1).T

    def export_tensors(self) -> dict[str, torch.Tensor]:
        return {"head.weight": self.weight().detach().clone()}

    def import_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.frozen_weight = tensors["head.weight"].clone()
        self.new_weight = nn.Parameter(torch.zeros(0, self.feature_dim))
