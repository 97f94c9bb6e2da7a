"""`moincl`: every task adds components, trained to keep the published model's answers on the new data.

After MoInCL (Pian et al., "Modality-Inconsistent Continual Learning of Multimodal Large Language
Models", 2024), which trains a new task against the previous model's outputs as targets, distilled at a
temperature (5), so that the new task's prompts keep what the old model knew.

Adapted to CODA pools on two frozen towers: before a task grows the pools, the model as published scores
the new task's rows with its cosine head over the classes it knows, each row as it is and, if complete,
with its image and with its text hidden (the views modality drop can make). While the task trains, the
KL divergence of the model's head scores over those old classes from the published ones, both softened
by `distill_temperature` and scaled by its square, is added to the loss with weight `distill_weight`: the
new components may not change how the new inputs score against old classes, the drift that dense
attention otherwise brings. The head's scores, cosines times `head_scale`, are on a scale a temperature
softens; the discriminant's are thousands apart, so a softmax of them is one-hot and passes no gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model.strategies.base import GrowthStrategy

AS_IS, IMAGE_HIDDEN, TEXT_HIDDEN = range(3)


@dataclass(frozen=True)
class SoftTargets:
    """The published model's scores `(3, N, C_old)` on every row of a task, in each view modality drop makes."""

    scores: torch.Tensor
    temperature: float
    weight: float

    def loss(self, scores: torch.Tensor, rows: torch.Tensor, lose_image: torch.Tensor, lose_text: torch.Tensor):
        """Weighted, softened KL of the model's old-class `scores (b, C_old)` on `rows (b,)` from the targets."""
        view = torch.where(lose_image, IMAGE_HIDDEN, torch.where(lose_text, TEXT_HIDDEN, AS_IS))  # (b,)
        targets = self.scores[view, rows]  # (b, C_old)
        t = self.temperature
        divergence = F.kl_div(
            F.log_softmax(scores / t, dim=-1),
            F.log_softmax(targets / t, dim=-1),
            log_target=True,
            reduction="batchmean",
        )
        return self.weight * t * t * divergence


class MoInCL(GrowthStrategy):
    name = "moincl"

    def soft_targets(self, learner, batch) -> SoftTargets | None:
        classes = learner.head.num_classes
        if classes == 0:
            return None
        complete = batch.has_image & batch.has_text  # (N,)
        views = (
            batch,
            batch.with_presence(batch.has_image & ~complete, batch.has_text),
            batch.with_presence(batch.has_image, batch.has_text & ~complete),
        )
        with torch.no_grad():
            scores = torch.stack([learner(view).head_logits[:, :classes] for view in views])  # (3, N, C_old)
        return SoftTargets(scores, self.config.distill_temperature, self.config.distill_weight)
