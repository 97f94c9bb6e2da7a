"""The discriminant predictions rank: complete rows against every feature, a row missing a modality against
its present half alone.

With one Gaussian per class and a shared covariance, scoring a row on its present half with that half's
own means and covariance is scoring it with the missing half integrated out (Gaussian marginalisation).
Measured on the validation splits of both public sets, that beats filling the missing half, whether with
its reconstruction, a blank input or the mean feature (docs/strategies.md).

Three `LdaClassifier`s grow task by task side by side:
- `full` (saved as `lda.*`): over whole features, from the rows the trainer hands it (complete ones also with
  either half hidden and reconstructed, by default); it scores complete rows;
- `image` and `text` (`lda_image.*`, `lda_text.*`): over one half of the feature (`[image | text]`), from
  the task's rows where that half is real; a class with no such row takes that half of its `full` mean
  and adds nothing to the covariance.
"""

from __future__ import annotations

import torch
from torch import nn

from model.lda_classifier import LdaClassifier


def _half_statistics(half: torch.Tensor, targets: torch.Tensor, real: torch.Tensor, fallback: torch.Tensor):
    """Class means `(n, D)` of `half (N, D)` over the `real (N,)` rows, `fallback (n, D)` for a class with
    none, and the within-class scatter `(D, D)` and count of those rows."""
    data = half[real].detach().to(torch.float64)  # (R, D)
    members = nn.functional.one_hot(targets[real], fallback.shape[0]).to(torch.float64)  # (R, n)
    sizes = members.sum(0).unsqueeze(-1)  # (n, 1)
    means = torch.where(sizes > 0, (members.T @ data) / sizes.clamp(min=1.0), fallback.to(torch.float64))
    centred = data - means[targets[real]]  # (R, D)
    return means, centred.T @ centred, len(data)


class MarginalLda(nn.Module):
    def __init__(self, image_dim: int, text_dim: int, shrinkage: float):
        super().__init__()
        self.image_dim = image_dim
        self.full = LdaClassifier(image_dim + text_dim, shrinkage, name="lda")
        self.image = LdaClassifier(image_dim, shrinkage, name="lda_image")
        self.text = LdaClassifier(text_dim, shrinkage, name="lda_text")

    @property
    def parts(self) -> tuple[LdaClassifier, ...]:
        return self.full, self.image, self.text

    @property
    def num_classes(self) -> int:
        return self.full.num_classes

    def add_classes(
        self,
        features: torch.Tensor,
        targets: torch.Tensor,
        count: int,
        has_image: torch.Tensor,
        has_text: torch.Tensor,
        halves_from: torch.Tensor,
    ) -> None:
        """Append `count` classes: `full` from every row of `features (N, F)`, `targets (N,)`; each half's
        discriminant from the rows `halves_from (N,)` (bool) where that half is real (`has_image`,
        `has_text (N,)`)."""
        first = self.full.num_classes
        self.full.add_classes(features, targets, count)
        full_means = self.full.means[first:]  # (n, F)
        split = self.image_dim
        for part, half, real, fallback in (
            (self.image, features[:, :split], has_image, full_means[:, :split]),
            (self.text, features[:, split:], has_text, full_means[:, split:]),
        ):
            part.add_statistics(*_half_statistics(half, targets, real & halves_from, fallback))

    def follow_drift(
        self,
        drift: torch.Tensor,
        targets: torch.Tensor,
        has_image: torch.Tensor,
        has_text: torch.Tensor,
        halves_from: torch.Tensor,
    ) -> None:
        """Move the means of classes already learned by how far their rows' features moved, `drift (N, F)`:
        the whole features' by every row's, each half's by the rows `halves_from (N,)` where that half is
        real (`has_image`, `has_text (N,)`)."""
        split = self.image_dim
        self.full.shift_means(drift, targets)
        for part, cut, real in (
            (self.image, slice(None, split), has_image & halves_from),
            (self.text, slice(split, None), has_text & halves_from),
        ):
            part.shift_means(drift[real][:, cut], targets[real])

    def forward(self, features: torch.Tensor, has_image: torch.Tensor, has_text: torch.Tensor) -> torch.Tensor:
        # features (B, F), masks (B,) -> discriminants (B, C)
        split = self.image_dim
        complete = self.full(features)  # (B, C)
        by_image, by_text = self.image(features[:, :split]), self.text(features[:, split:])  # (B, C) each
        missing_one = torch.where(has_image.unsqueeze(-1), by_image, by_text)  # (B, C)
        return torch.where((has_image & has_text).unsqueeze(-1), complete, missing_one)

    def distance(self, features: torch.Tensor, has_image: torch.Tensor, has_text: torch.Tensor) -> torch.Tensor:
        """Squared distance `(B,)` of `features (B, F)` to the nearest class, each row measured by the part
        that scores it (masks `(B,)`): only those rows go through each part's precision matrix."""
        split = self.image_dim
        distances = torch.zeros(len(features))  # (B,)
        for part, rows, cut in (
            (self.full, has_image & has_text, slice(None)),
            (self.image, has_image & ~has_text, slice(None, split)),
            (self.text, ~has_image & has_text, slice(split, None)),
        ):
            if rows.any():
                distances[rows] = part.distance(features[rows][:, cut])
        return distances

    def export_tensors(self) -> dict[str, torch.Tensor]:
        return {name: tensor for part in self.parts for name, tensor in part.export_tensors().items()}

    def import_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for part in self.parts:
            part.import_tensors(tensors)

    def expected_shapes(self, classes: int) -> dict[str, tuple[int, ...]]:
        return {name: shape for part in self.parts for name, shape in part.expected_shapes(classes).items()}
