"""The RebQ learner on two frozen towers: reconstruct a missing query, query the pools, prompt, fuse, classify.

For a batch with masks `has_image (B,)` and `has_text (B,)`, in one vectorised pass:
1. the frozen queries `q_image`, `q_text` come with the batch (zero where missing);
2. the memory pools, queried with the present modality, reconstruct a missing query: a prefix-prompted
   text tower reads its memory prompts in a short prompt-only pass; a feature tower's memory prompt is
   the reconstructed feature itself;
3. each modality's pool is queried with the real or reconstructed query, over the components its growth
   strategy lets each row use (`model/strategies/`);
4. prompted pass of each tower (a feature tower adds its prompt to its query); a missing modality keeps
   its reconstructed query;
5. the unit-norm features are concatenated and scored by one cosine head over every class seen (what
   training uses) and by a shared-covariance linear discriminant (what
   predictions rank), which scores a row missing a modality on its present half alone
   (`model/marginal_lda.py`); a temperature per missing pattern turns its scores into probabilities
   (`model/calibration.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.batch import EncodedBatch, scatter_rows
from model.calibration import Calibration
from model.config import LearnerConfig
from model.head import GrowingHead
from model.marginal_lda import MarginalLda
from model.modality import Modality
from model.prompt_pool import PromptPool
from model.strategies import MEMORY_POOLS, POOL_QUERIES, PROMPT_POOLS, make_strategy
from model.tower import FrozenTower, PromptKind

POOLS = PROMPT_POOLS + MEMORY_POOLS


@dataclass
class LearnerOutput:
    logits: torch.Tensor  # (B, C) what predictions rank: the discriminants
    fused: torch.Tensor  # (B, Di + Dt), unit norm
    q_hat_image: torch.Tensor  # (B, Di) reconstructed image query, zero where not reconstructed
    q_hat_text: torch.Tensor  # (B, Dt) reconstructed text query, zero where not reconstructed
    reconstructed: torch.Tensor  # (B,) bool: a missing modality was reconstructed
    head_logits: torch.Tensor  # (B, C) the cosine head's logits, which training's cross-entropy uses
    q_image: torch.Tensor  # (B, Di) the image query the pools were asked with: real, else reconstructed
    q_text: torch.Tensor  # (B, Dt) the text query the pools were asked with: real, else reconstructed


class RebQLearner(nn.Module):
    """The trainable parts around two frozen towers (torch `Tower`s or `OnnxTower`s)."""

    def __init__(self, image_tower: FrozenTower, text_tower: FrozenTower, config: LearnerConfig):
        super().__init__()
        self.config = config
        self.image_tower, self.text_tower = image_tower, text_tower
        image_dim, text_dim = image_tower.feature_dim, text_tower.feature_dim
        self.strategy = make_strategy(config, {Modality.IMAGE: image_dim, Modality.TEXT: text_dim})
        self.strategy.attach_towers(image_tower, text_tower)
        self.image_pool = PromptPool(image_dim, image_tower.prompt_shape(config.prompt_length))
        self.text_pool = PromptPool(text_dim, text_tower.prompt_shape(config.prompt_length))
        # a memory pool is queried with the other modality and yields this modality's reconstruction prompt
        self.image_memory = PromptPool(text_dim, self._memory_shape(image_tower))
        self.text_memory = PromptPool(image_dim, self._memory_shape(text_tower))
        self.head = GrowingHead(image_dim + text_dim, config.head_scale)
        self.lda = MarginalLda(image_dim, text_dim, config.lda_shrinkage)
        self.calibration = Calibration()  # refitted on held-back samples after each task

    def _memory_shape(self, tower: FrozenTower) -> tuple[int, ...]:
        if tower.encodes_prompts_alone:
            return tower.prompt_shape(self.config.memory_prompt_length)
        return (tower.feature_dim,)

    def towers(self):
        return {"image": self.image_tower, "text": self.text_tower}

    # -- growth ---------------------------------------------------------------------------------------

    def grow(self, class_rows: torch.Tensor, generator: torch.Generator, tasks_before: int) -> None:
        """Open task number `tasks_before + 1`: new components in the pools its strategy grows, new head rows
        initialised from `class_rows (n, F)`."""
        for name, count in self.strategy.grown_pools(tasks_before):
            projection = self.strategy.key_projection(POOL_QUERIES[name], tasks_before)
            getattr(self, name).grow(count, generator, projection)
        self.head.grow(class_rows)

    def freeze_current(self) -> None:
        for name in POOLS:
            getattr(self, name).freeze_current()
        self.head.freeze_current()

    # -- the forward ----------------------------------------------------------------------------------

    def _components(self, pool: PromptPool, queries: dict[Modality, torch.Tensor]) -> torch.Tensor | None:
        """Which of `pool`'s components each row may use `(b, M)` bool, as the strategy routes it; None: all."""
        choice = self.strategy.task_choice(queries) if pool.size else None  # (b, T)
        return None if choice is None else choice.repeat_interleave(pool.size // choice.shape[1], dim=1)

    def _reconstruct(self, tower, memory: PromptPool, other: Modality, other_query: torch.Tensor, rows):
        """Reconstructed unit-norm queries `(b, D)` of `tower`'s modality for `rows`, from the other query."""
        asked = other_query[rows]  # (b, Dq)
        prompts = memory.prompts(asked, self._components(memory, {other: asked})) if len(rows) else None
        if prompts is None:
            return torch.zeros(len(rows), tower.feature_dim)
        if tower.encodes_prompts_alone:
            return F.normalize(tower.encode(tower.prompt_only_inputs(len(rows)), prompts), dim=-1)
        return prompts.reshape(len(rows), -1)

    def _prompted(self, tower, pool: PromptPool, queries: dict[Modality, torch.Tensor], rows, inputs):
        """Unit-norm prompted features `(b, D)` of the rows that have this modality, from `queries (B, Dq)`."""
        if len(rows) == 0:
            return torch.zeros(0, tower.feature_dim)
        query = queries[tower.modality]  # (B, D)
        prompts = pool.prompts(query[rows], self._components(pool, {m: q[rows] for m, q in queries.items()}))
        if prompts is None:  # an empty pool: the prompted pass would repeat the query pass
            return query[rows]
        if tower.prompt_kind is PromptKind.FEATURE:
            return F.normalize(query[rows] + prompts, dim=-1)
        picked = {name: tensor[rows] for name, tensor in inputs.items()}
        return F.normalize(tower.encode(picked, prompts), dim=-1)

    def forward(self, batch: EncodedBatch) -> LearnerOutput:
        size = len(batch)
        has_image, has_text = batch.has_image, batch.has_text
        rebuild_image = (~has_image & has_text).nonzero().flatten()  # (b1,)
        rebuild_text = (~has_text & has_image).nonzero().flatten()  # (b2,)
        q_hat_image = scatter_rows(
            self._reconstruct(self.image_tower, self.image_memory, Modality.TEXT, batch.q_text, rebuild_image),
            rebuild_image,
            size,
        )  # (B, Di)
        q_hat_text = scatter_rows(
            self._reconstruct(self.text_tower, self.text_memory, Modality.IMAGE, batch.q_image, rebuild_text),
            rebuild_text,
            size,
        )  # (B, Dt)
        q_image = torch.where(has_image.unsqueeze(-1), batch.q_image, q_hat_image)  # (B, Di)
        q_text = torch.where(has_text.unsqueeze(-1), batch.q_text, q_hat_text)  # (B, Dt)

        image_rows, text_rows = has_image.nonzero().flatten(), has_text.nonzero().flatten()
        text_inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        image_inputs = {"pixel_values": batch.pixel_values} if batch.pixel_values is not None else {}
        queries = {Modality.IMAGE: q_image, Modality.TEXT: q_text}
        f_image = self._prompted(self.image_tower, self.image_pool, queries, image_rows, image_inputs)
        f_text = self._prompted(self.text_tower, self.text_pool, queries, text_rows, text_inputs)
        f_image = torch.where(has_image.unsqueeze(-1), scatter_rows(f_image, image_rows, size), q_hat_image)
        f_text = torch.where(has_text.unsqueeze(-1), scatter_rows(f_text, text_rows, size), q_hat_text)

        fused = torch.cat([f_image, f_text], dim=-1) / 2**0.5  # (B, Di + Dt)
        reconstructed = torch.zeros(size, dtype=torch.bool)
        reconstructed[rebuild_image] = True
        reconstructed[rebuild_text] = True
        head_logits = self.head(fused)  # (B, C)
        logits = self.lda(fused, has_image, has_text)  # (B, C)
        return LearnerOutput(logits, fused, q_hat_image, q_hat_text, reconstructed, head_logits, q_image, q_text)

    # -- saving ---------------------------------------------------------------------------------------

    def export_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {**self.head.export_tensors(), **self.strategy.export_tensors()}
        tensors.update(self.lda.export_tensors())
        tensors.update(self.calibration.export_tensors())
        for name in POOLS:
            tensors.update(getattr(self, name).export_tensors(name))
        return tensors

    def expected_shapes(self, tasks: int, classes: int) -> dict[str, tuple[int, ...]]:
        shapes = {"head.weight": (classes, self.head.feature_dim), **self.strategy.expected_shapes(tasks)}
        shapes.update(self.lda.expected_shapes(classes))
        shapes.update(self.calibration.expected_shapes())
        for name in PROMPT_POOLS:
            components = self.strategy.prompt_tasks(tasks) * self.config.components_per_task
            shapes.update(getattr(self, name).expected_shapes(name, components))
        for name in MEMORY_POOLS:
            components = self.strategy.memory_tasks(tasks) * self.config.memory_components_per_task
            shapes.update(getattr(self, name).expected_shapes(name, components))
        return shapes

    def import_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.head.import_tensors(tensors)
        self.strategy.import_tensors(tensors)
        self.lda.import_tensors(tensors)
        self.calibration.import_tensors(tensors)
        for name in POOLS:
            getattr(self, name).import_tensors(name, tensors)
