"""`modal_prompt`: every task adds components; each input uses the components of the tasks nearest to it.

After ModalPrompt (Zeng et al., "ModalPrompt: Dual-Modality Guided Prompt for Continual Learning of Large
Multimodal Models", 2024): prompts per task, each task with an image and a text prototype; an input picks
the prompts of the top-k tasks by `0.5 cos(image, image prototype) + 0.5 cos(text, text prototype)`, so
the prompt length stays fixed however many tasks there are, and an old input keeps using old prompts.

Adapted to CODA pools on two frozen towers: a task's prototypes are the mean real queries of its training
rows; its prompts are the components it added to each pool. A row's CODA weights on the components of
tasks it did not pick are zero. The prompt pools' choice uses both queries, a missing one reconstructed
standing in for it; a memory pool, asked before anything is reconstructed, chooses with the present
modality alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.config import LearnerConfig
from model.modality import Modality
from model.strategies.base import GrowthStrategy


class ModalPrompt(GrowthStrategy):
    name = "modal_prompt"

    def __init__(self, config: LearnerConfig, query_dims: dict[Modality, int]):
        super().__init__(config, query_dims)
        self.prototypes = {  # (T, Dq) each task's mean real query, unit norm
            modality: torch.zeros(0, width) for modality, width in query_dims.items()
        }

    def open_task(self, learner, batch) -> None:
        self.add_prototypes(
            {Modality.IMAGE: batch.q_image[batch.has_image], Modality.TEXT: batch.q_text[batch.has_text]}
        )

    def add_prototypes(self, real_queries: dict[Modality, torch.Tensor]) -> None:
        """A new task's prototypes: the mean of its rows' real queries `(N, Dq)`, by modality."""
        for modality, rows in real_queries.items():
            mean = rows.mean(0) if len(rows) else torch.zeros(self.query_dims[modality])  # (Dq,)
            prototype = F.normalize(mean, dim=-1).unsqueeze(0)  # (1, Dq); zero for a modality it never had
            self.prototypes[modality] = torch.cat([self.prototypes[modality], prototype])

    def task_choice(self, queries: dict[Modality, torch.Tensor]) -> torch.Tensor | None:
        similarity = sum(
            F.normalize(query, dim=-1) @ self.prototypes[modality].T for modality, query in queries.items()
        ) / len(queries)  # (B, T)
        tasks = similarity.shape[1]
        top = similarity.topk(min(self.config.route_top_k, tasks), dim=-1).indices  # (B, k)
        return torch.zeros_like(similarity, dtype=torch.bool).scatter(1, top, True)  # (B, T)

    def export_tensors(self) -> dict[str, torch.Tensor]:
        return {
            f"modal_prompt.{modality.label}_prototypes": rows.clone() for modality, rows in self.prototypes.items()
        }

    def import_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for modality in self.prototypes:
            self.prototypes[modality] = tensors[f"modal_prompt.{modality.label}_prototypes"].clone()

    def expected_shapes(self, tasks: int) -> dict[str, tuple[int, ...]]:
        return {
            f"modal_prompt.{modality.label}_prototypes": (tasks, width)
            for modality, width in self.query_dims.items()
        }
