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
from model.marginal_lda import MarginalLda

REFERENCES = ("mean_fill", "marginalised")


def _mean_filled(batch: EncodedBatch, image_mean: torch.Tensor, text_mean: torch.Tensor) -> torch.Tensor:
    image = torch.where(batch.has_image.unsqueeze(-1), batch.q_image, image_mean)  # (N, Di)
    text = torch.where(batch.has_text.unsqueeze(-1), batch.q_text, text_mean)  # (N, Dt)
    return torch.cat([image, text], dim=-1)  # (N, Di + Dt)


def missing_row_predictions(
    train: EncodedBatch, train_targets: torch.Tensor, test: EncodedBatch, classes: int, shrinkage: float
) -> dict[str, torch.Tensor]:
    """Each reference's predicted class `(N_test,)` for every test row; only rows missing a modality differ
    from a plain LDA's, and only those are meant to be read.

    One `MarginalLda` serves both: its whole-feature discriminant, fitted on mean-filled rows, is the mean
    fill; its half discriminants, fitted on the rows where each half is real, score the missing rows.
    """
    image_mean = train.q_image[train.has_image].mean(0)  # (Di,)
    text_mean = train.q_text[train.has_text].mean(0)  # (Dt,)
    lda = MarginalLda(train.q_image.shape[1], train.q_text.shape[1], shrinkage)
    every_row = torch.ones(len(train), dtype=torch.bool)
    filled = _mean_filled(train, image_mean, text_mean)  # (N, Di + Dt)
    lda.add_classes(filled, train_targets, classes, train.has_image, train.has_text, halves_from=every_row)
    test_filled = _mean_filled(test, image_mean, text_mean)  # (N_test, Di + Dt)
    with torch.no_grad():
        mean_fill = lda.full(test_filled).argmax(-1)  # (N_test,)
        marginal = lda(test_filled, test.has_image, test.has_text).argmax(-1)  # complete rows: the full one's
    return {"mean_fill": mean_fill, "marginalised": marginal}
