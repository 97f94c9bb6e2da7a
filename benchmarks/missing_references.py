"""References for the rows that miss a modality: an LDA over frozen features, the missing half mean-filled or
marginalised out.

Both see every class at once; over frozen features a discriminant grown task by task equals one fitted on
all tasks, so each is the exact final-state reference for its way of treating a missing half. Blank inputs,
the third way, are the `head_only` method's rows.
- mean fill: a missing half is the mean of that half over the training rows that have it; the discriminant
  is fitted on training rows filled the same way.
- marginalisation: with one shared Gaussian per class, scoring a row on its present half alone is scoring
  it with the missing half integrated out. The present half's discriminant is fitted on the training rows
  that have that half, so its covariance is a proper block, not pieced together from rows of other kinds.
"""

from __future__ import annotations

import torch

from model.batch import EncodedBatch
from model.lda_classifier import LdaClassifier

REFERENCES = ("mean_fill", "marginalised")


def _frozen_halves(batch: EncodedBatch) -> tuple[torch.Tensor, torch.Tensor]:
    return batch.q_image, batch.q_text  # (N, Di), (N, Dt); zero where missing


def _fitted(features: torch.Tensor, targets: torch.Tensor, classes: int, shrinkage: float) -> LdaClassifier:
    lda = LdaClassifier(features.shape[1], shrinkage)
    lda.add_classes(features, targets, classes)
    return lda


def _mean_filled(batch: EncodedBatch, image_mean: torch.Tensor, text_mean: torch.Tensor) -> torch.Tensor:
    image, text = _frozen_halves(batch)
    image = torch.where(batch.has_image.unsqueeze(-1), image, image_mean)  # (N, Di)
    text = torch.where(batch.has_text.unsqueeze(-1), text, text_mean)  # (N, Dt)
    return torch.cat([image, text], dim=-1)  # (N, Di + Dt)


def missing_row_predictions(
    train: EncodedBatch, train_targets: torch.Tensor, test: EncodedBatch, classes: int, shrinkage: float
) -> dict[str, torch.Tensor]:
    """Each reference's predicted class `(N_test,)` for every test row; only rows missing a modality differ
    from a plain LDA's, and only those are meant to be read."""
    image, text = _frozen_halves(train)
    image_mean = image[train.has_image].mean(0)  # (Di,)
    text_mean = text[train.has_text].mean(0)  # (Dt,)
    filled = _fitted(_mean_filled(train, image_mean, text_mean), train_targets, classes, shrinkage)
    mean_fill = filled(_mean_filled(test, image_mean, text_mean)).argmax(-1)  # (N_test,)

    image_lda = _fitted(image[train.has_image], train_targets[train.has_image], classes, shrinkage)
    text_lda = _fitted(text[train.has_text], train_targets[train.has_text], classes, shrinkage)
    test_image, test_text = _frozen_halves(test)
    by_image, by_text = image_lda(test_image).argmax(-1), text_lda(test_text).argmax(-1)  # (N_test,) each
    marginal = torch.where(test.has_image & ~test.has_text, by_image, by_text)
    marginal = torch.where(test.has_image & test.has_text, mean_fill, marginal)  # complete rows: nothing missing
    return {"mean_fill": mean_fill, "marginalised": marginal}
