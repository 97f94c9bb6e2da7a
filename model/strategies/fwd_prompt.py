"""`fwd_prompt`: every task adds components, whose keys stay out of the subspace earlier tasks' queries span.

After Fwd-Prompt (Zheng et al., "Beyond Anti-Forgetting: Multimodal Continual Instruction Tuning with
Positive Forward Transfer", 2024), which projects prompt gradients into the residual space of earlier
tasks' input subspace, found by an SVD of their inputs, so that a new task cannot disturb what earlier
tasks use.

Adapted to CODA pools on two frozen towers: a component's weight for a query `q` is `cos(q * A, K)`,
whose numerator is `q . (A * K)`. The strategy keeps, for each query modality, the sum `G = sum q q^T`
over every query earlier tasks' rows put to the pools (real ones, and reconstructed ones of rows with a
modality hidden). When a task opens, the leading eigenvectors of `G` that hold `null_space_energy` of its
energy span the earlier tasks' subspace `U`; the new components' keys are parametrised as `k (I - U U^T)`
and their attention vectors are fixed ones. A query inside `U` then gives every new component a weight of
exactly zero, so its prompt, its feature and its reconstruction do not move. The new components start at
zero, so a task starts from the model as published (random ones, as CODA-Prompt draws them, moved the new
task's own rows before training began, and cost 0.9 AP: docs/strategies.md). The paper projects gradients;
we project the parameter itself, since Adam rescales a gradient coordinate by coordinate and would carry a
projected gradient out of the subspace.
"""

from __future__ import annotations

import logging

import torch

from model.config import LearnerConfig
from model.modality import Modality
from model.strategies.base import GrowthStrategy

log = logging.getLogger(__name__)


def residual_projector(gram: torch.Tensor, energy: float) -> tuple[torch.Tensor, int, float]:
    """The projector `(D, D)` onto the residual space of the leading directions of `gram (D, D)` that hold
    `energy` of its trace; with it the number of directions kept out and the share of energy left in."""
    width = gram.shape[0]
    values, vectors = torch.linalg.eigh(gram.to(torch.float64))  # ascending
    values, vectors = values.flip(0).clamp(min=0), vectors.flip(1)  # (D,), (D, D) leading first
    total = values.sum()
    identity = torch.eye(width, dtype=torch.float64)
    if total <= 0:
        return identity.to(torch.float32), 0, 0.0
    cumulative = values.cumsum(0) / total  # (D,)
    target = torch.tensor([energy * (1 - 1e-9)], dtype=torch.float64)
    rank = min(int(torch.searchsorted(cumulative, target)) + 1, width)
    basis = vectors[:, :rank]  # (D, r)
    projector = identity - basis @ basis.T  # (D, D)
    return projector.to(torch.float32), rank, float(1 - cumulative[rank - 1])


class FwdPrompt(GrowthStrategy):
    name = "fwd_prompt"

    def __init__(self, config: LearnerConfig, query_dims: dict[Modality, int]):
        super().__init__(config, query_dims)
        self.grams = {  # (Dq, Dq) sum of q q^T over earlier tasks' queries
            modality: torch.zeros(width, width, dtype=torch.float64) for modality, width in query_dims.items()
        }
        self._projectors: dict[Modality, torch.Tensor] = {}

    def key_projection(self, query: Modality, tasks_before: int) -> torch.Tensor | None:
        if tasks_before == 0:
            return None
        if query not in self._projectors:
            projector, rank, left = residual_projector(self.grams[query], self.config.null_space_energy)
            log.info(
                "fwd_prompt: task %d's %s-queried keys avoid %d of %d directions; %.4f of earlier queries' "
                "energy lies outside them",
                tasks_before + 1,
                query.label,
                rank,
                projector.shape[0],
                left,
            )
            self._projectors[query] = projector
        return self._projectors[query]

    def observe_task(self, queries: dict[Modality, torch.Tensor]) -> None:
        for modality, rows in queries.items():
            data = rows.detach().to(torch.float64)  # (N, Dq)
            self.grams[modality] = self.grams[modality] + data.T @ data
        self._projectors.clear()

    def export_tensors(self) -> dict[str, torch.Tensor]:
        return {f"fwd_prompt.{modality.label}_gram": gram.clone() for modality, gram in self.grams.items()}

    def import_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for modality in self.grams:
            self.grams[modality] = tensors[f"fwd_prompt.{modality.label}_gram"].clone()
        self._projectors.clear()

    def expected_shapes(self, tasks: int) -> dict[str, tuple[int, ...]]:
        return {f"fwd_prompt.{modality.label}_gram": (width, width) for modality, width in self.query_dims.items()}
