"""A linear discriminant over every class seen: class means and one shared, shrunk covariance, grown by tasks.

Each task adds its classes' mean features and its within-class scatter to running sums; nothing of a
finished task is kept but those sums, and the discriminant of every class is recomputed from them, so
old and new classes are scored against one covariance (no task-recency bias). While the features of
classes already learned do not move (prompts frozen after `prompt_tasks`), the result equals an LDA fit
on all tasks at once. The covariance is shrunk towards its mean variance: `(1 - g) S + g tr(S) / F I`.

By pattern (`image_dim` given: the feature is `[image | text]`, the image's `image_dim` columns first),
each class has a mean for each missing pattern (`PATTERNS`), and each row is scored against the means of
its own pattern. A reconstructed half differs systematically from a real one (it is a function of the
other modality), so one mean for all rows is off for every row. A half's mean is taken over the rows
where it is of the same kind: the real image half over complete and text-missing rows, the reconstructed
one over image-missing rows, and so on (in two towers, a real half does not depend on the other
modality). A class without a row of some kind takes, for that half, its mean over all its rows. The
covariance stays shared, the within-class scatter taken about each row's own pattern mean.
"""

from __future__ import annotations

import torch
from torch import nn

PATTERNS = ("complete", "image_missing", "text_missing")
COMPLETE, IMAGE_MISSING, TEXT_MISSING = range(len(PATTERNS))


def pattern_index(has_image: torch.Tensor, has_text: torch.Tensor) -> torch.Tensor:
    """Each row's index in `PATTERNS` `(B,)` from the masks `has_image (B,)`, `has_text (B,)`.

    A row with neither modality (never scored: requests without both are refused) counts as text-missing.
    """
    complete = torch.full_like(has_image, COMPLETE, dtype=torch.long)
    image_missing, text_missing = torch.full_like(complete, IMAGE_MISSING), torch.full_like(complete, TEXT_MISSING)
    return torch.where(has_image & has_text, complete, torch.where(has_text, image_missing, text_missing))


def _kind_means(members: torch.Tensor, data: torch.Tensor, rows: torch.Tensor, overall: torch.Tensor):
    """Class means `(n, D)` of `data (N, D)` over the rows `rows (N,)` (bool); `overall` where a class has none."""
    chosen = members * rows.unsqueeze(-1)  # (N, n)
    sizes = chosen.sum(0).unsqueeze(-1)  # (n, 1)
    return torch.where(sizes > 0, (chosen.T @ data) / sizes.clamp(min=1.0), overall)


class LdaClassifier(nn.Module):
    def __init__(self, feature_dim: int, shrinkage: float, image_dim: int | None = None):
        super().__init__()
        if image_dim is not None and not 0 < image_dim < feature_dim:
            raise ValueError(f"image_dim {image_dim} must split the {feature_dim} features in two")
        self.feature_dim = feature_dim
        self.shrinkage = shrinkage
        self.image_dim = image_dim
        patterns = 1 if image_dim is None else len(PATTERNS)
        self.register_buffer("means", torch.zeros(patterns, 0, feature_dim))  # (P, C, F)
        self.register_buffer("scatter", torch.zeros(feature_dim, feature_dim, dtype=torch.float64))  # (F, F)
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))  # samples behind the scatter
        self.register_buffer("weight", torch.zeros(patterns, 0, feature_dim))  # (P, C, F) derived: Sigma^-1 mu
        self.register_buffer("bias", torch.zeros(patterns, 0))  # (P, C) derived: -mu Sigma^-1 mu / 2

    @property
    def by_pattern(self) -> bool:
        return self.image_dim is not None

    @property
    def num_classes(self) -> int:
        return self.means.shape[1]

    def covariance(self) -> torch.Tensor:
        """The shared covariance `(F, F)`, shrunk."""
        sample = self.scatter / self.count.clamp(min=1.0)  # (F, F)
        spread = torch.trace(sample) / self.feature_dim
        identity = torch.eye(self.feature_dim, dtype=sample.dtype)
        return (1 - self.shrinkage) * sample + self.shrinkage * spread * identity

    def _pattern_means(self, data: torch.Tensor, members: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
        """Each new class's mean for each pattern `(P, n, F)`, each half over the rows where it is of that kind."""
        overall = (members.T @ data) / members.sum(0).unsqueeze(-1)  # (n, F)
        if not self.by_pattern:
            return overall.unsqueeze(0)
        split = self.image_dim
        image, text = data[:, :split], data[:, split:]  # (N, Di), (N, Dt)
        image_real = _kind_means(members, image, patterns != IMAGE_MISSING, overall[:, :split])  # (n, Di)
        image_rebuilt = _kind_means(members, image, patterns == IMAGE_MISSING, overall[:, :split])
        text_real = _kind_means(members, text, patterns != TEXT_MISSING, overall[:, split:])  # (n, Dt)
        text_rebuilt = _kind_means(members, text, patterns == TEXT_MISSING, overall[:, split:])
        by_pattern = {
            COMPLETE: (image_real, text_real),
            IMAGE_MISSING: (image_rebuilt, text_real),
            TEXT_MISSING: (image_real, text_rebuilt),
        }
        return torch.stack([torch.cat(by_pattern[index], dim=-1) for index in range(len(PATTERNS))])

    def add_classes(
        self, features: torch.Tensor, targets: torch.Tensor, count: int, patterns: torch.Tensor | None = None
    ) -> None:
        """Append `count` classes from `features (N, F)` and `targets (N,)` in `[0, count)`, each with a row.

        `patterns (N,)`: each row's index in `PATTERNS` (see `pattern_index`); needed, and only used, by pattern.
        """
        members = nn.functional.one_hot(targets, count).to(torch.float64)  # (N, n)
        sizes = members.sum(0)  # (n,)
        if bool((sizes == 0).any()):
            empty = (sizes == 0).nonzero().flatten().tolist()
            raise ValueError(f"every new class needs a sample: class indices {empty} have none")
        if not self.by_pattern:
            patterns = torch.zeros_like(targets)
        elif patterns is None:
            raise ValueError("statistics by missing pattern need each row's pattern")
        data = features.detach().to(torch.float64)  # (N, F)
        means = self._pattern_means(data, members, patterns)  # (P, n, F)
        centred = data - means[patterns, targets]  # (N, F)
        self.scatter = self.scatter + centred.T @ centred
        self.count = self.count + len(data)
        self.means = torch.cat([self.means, means.to(self.means.dtype)], dim=1)
        self.refresh()

    def refresh(self) -> None:
        """Recompute every class's discriminant from the sums."""
        if self.num_classes == 0:
            return
        means = self.means.to(torch.float64)  # (P, C, F)
        flat = means.reshape(-1, self.feature_dim)  # (P * C, F)
        weight = torch.linalg.solve(self.covariance(), flat.T).T.reshape(means.shape)  # (P, C, F)
        self.weight = weight.to(torch.float32)
        self.bias = (-0.5 * (weight * means).sum(-1)).to(torch.float32)  # (P, C)

    def forward(
        self, features: torch.Tensor, has_image: torch.Tensor | None = None, has_text: torch.Tensor | None = None
    ) -> torch.Tensor:
        # features (B, F), masks (B,) -> discriminants (B, C), each row against its own pattern's means
        if not self.by_pattern:
            return features @ self.weight[0].T + self.bias[0]
        if has_image is None or has_text is None:
            raise ValueError("discriminants by missing pattern need the masks has_image and has_text")
        scores = torch.einsum("bf,pcf->pbc", features, self.weight) + self.bias.unsqueeze(1)  # (P, B, C)
        return scores[pattern_index(has_image, has_text), torch.arange(features.shape[0])]  # (B, C)

    def export_tensors(self) -> dict[str, torch.Tensor]:
        """The sums; pooled, `lda.means` is `(C, F)` as it always was, by pattern `(P, C, F)`."""
        means = self.means if self.by_pattern else self.means[0]
        return {"lda.means": means.clone(), "lda.scatter": self.scatter.clone(), "lda.count": self.count.clone()}

    def import_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        means = tensors["lda.means"].clone()
        self.means = means if self.by_pattern else means.unsqueeze(0)
        self.scatter, self.count = tensors["lda.scatter"].clone(), tensors["lda.count"].clone()
        self.refresh()

    def expected_shapes(self, classes: int) -> dict[str, tuple[int, ...]]:
        lead = (len(PATTERNS),) if self.by_pattern else ()
        return {
            "lda.means": (*lead, classes, self.feature_dim),
            "lda.scatter": (self.feature_dim, self.feature_dim),
            "lda.count": (),
        }
