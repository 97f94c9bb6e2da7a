"""A linear discriminant over every class seen: class means and one shared, shrunk covariance, grown by tasks.

Each task adds its classes' mean features and its within-class scatter to running sums; nothing of a
finished task is kept but those sums, and the discriminant of every class is recomputed from them, so
old and new classes are scored against one covariance (no task-recency bias). While the features of
classes already learned do not move, the result equals an LDA fit on all tasks at once. The covariance
is shrunk towards its mean variance: `(1 - g) S + g tr(S) / F I`.
"""

from __future__ import annotations

import torch
from torch import nn

STATISTICS = ("means", "scatter", "count")  # what is saved; the discriminants are derived from them


class LdaClassifier(nn.Module):
    def __init__(self, feature_dim: int, shrinkage: float, name: str = "lda"):
        super().__init__()
        self.feature_dim = feature_dim
        self.shrinkage = shrinkage
        self.name = name  # what its tensors are saved under
        self.register_buffer("means", torch.zeros(0, feature_dim))  # (C, F)
        self.register_buffer("scatter", torch.zeros(feature_dim, feature_dim, dtype=torch.float64))  # (F, F)
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))  # samples behind the scatter
        self.register_buffer("weight", torch.zeros(0, feature_dim))  # (C, F) derived: Sigma^-1 mu
        self.register_buffer("bias", torch.zeros(0))  # (C,) derived: -mu Sigma^-1 mu / 2
        self.register_buffer("precision", torch.zeros(feature_dim, feature_dim))  # (F, F) derived: Sigma^-1

    @property
    def num_classes(self) -> int:
        return self.means.shape[0]

    def covariance(self) -> torch.Tensor:
        """The shared covariance `(F, F)`, shrunk."""
        sample = self.scatter / self.count.clamp(min=1.0)  # (F, F)
        spread = torch.trace(sample) / self.feature_dim
        identity = torch.eye(self.feature_dim, dtype=sample.dtype)
        return (1 - self.shrinkage) * sample + self.shrinkage * spread * identity

    def add_classes(self, features: torch.Tensor, targets: torch.Tensor, count: int) -> None:
        """Append `count` classes from `features (N, F)` and `targets (N,)` in `[0, count)`, each with a row."""
        members = nn.functional.one_hot(targets, count).to(torch.float64)  # (N, n)
        sizes = members.sum(0)  # (n,)
        if bool((sizes == 0).any()):
            empty = (sizes == 0).nonzero().flatten().tolist()
            raise ValueError(f"every new class needs a sample: class indices {empty} have none")
        data = features.detach().to(torch.float64)  # (N, F)
        means = (members.T @ data) / sizes.unsqueeze(-1)  # (n, F)
        centred = data - means[targets]  # (N, F)
        self.add_statistics(means, centred.T @ centred, len(data))

    def add_statistics(self, means: torch.Tensor, scatter: torch.Tensor, count: int) -> None:
        """Append classes with means `(n, F)`, adding their within-class `scatter (F, F)` over `count` rows."""
        self.scatter = self.scatter + scatter.to(torch.float64)
        self.count = self.count + count
        self.means = torch.cat([self.means, means.to(self.means.dtype)])
        self.refresh()

    def shift_means(self, drift: torch.Tensor, targets: torch.Tensor) -> None:
        """Move each class's mean by the mean of its rows' `drift (N, F)` (`targets (N,)`); a class with no
        row stays where it is."""
        members = nn.functional.one_hot(targets, self.num_classes).to(torch.float64)  # (N, C)
        sizes = members.sum(0).clamp(min=1.0).unsqueeze(-1)  # (C, 1)
        shift = (members.T @ drift.detach().to(torch.float64)) / sizes  # (C, F), zero for a class with no row
        self.means = (self.means.to(torch.float64) + shift).to(self.means.dtype)
        self.refresh()

    def refresh(self) -> None:
        """Recompute every class's discriminant from the sums."""
        if self.num_classes == 0:
            return
        means = self.means.to(torch.float64)  # (C, F)
        precision = torch.linalg.inv(self.covariance())  # (F, F)
        weight = means @ precision  # (C, F), the covariance is symmetric
        self.precision = precision.to(torch.float32)
        self.weight = weight.to(torch.float32)
        self.bias = (-0.5 * (weight * means).sum(-1)).to(torch.float32)  # (C,)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.weight.T + self.bias  # (B, F) -> discriminants (B, C)

    def distance(self, features: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance `(B,)` of `features (B, F)` to the nearest class mean: the quadratic
        term the discriminants leave out, less twice the best discriminant."""
        quadratic = ((features @ self.precision) * features).sum(-1)  # (B,)
        return (quadratic - 2 * self(features).max(-1).values).clamp(min=0.0)

    def export_tensors(self) -> dict[str, torch.Tensor]:
        return {f"{self.name}.{key}": getattr(self, key).clone() for key in STATISTICS}

    def import_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for key in STATISTICS:
            setattr(self, key, tensors[f"{self.name}.{key}"].clone())
        self.refresh()

    def expected_shapes(self, classes: int) -> dict[str, tuple[int, ...]]:
        width = self.feature_dim
        shapes = {"means": (classes, width), "scatter": (width, width), "count": ()}
        return {f"{self.name}.{key}": shape for key, shape in shapes.items()}
