"""What a growth strategy decides: which tasks add pool components, where they may point, what it remembers.

A strategy is one module behind this interface, picked by `learner.strategy`. The learner asks it, when
a task opens, which pools grow and with what key projection; the trainer hands it the queries of every
finished task; what it remembers travels in the PromptState under its own tensor names.
"""

from __future__ import annotations

import torch

from model.config import LearnerConfig
from model.modality import Modality

PROMPT_POOLS = ("image_pool", "text_pool")
MEMORY_POOLS = ("image_memory", "text_memory")
# the modality of the query each pool is queried with: a memory pool reconstructs one modality from the other
POOL_QUERIES = {
    "image_pool": Modality.IMAGE,
    "text_pool": Modality.TEXT,
    "image_memory": Modality.TEXT,
    "text_memory": Modality.IMAGE,
}


class GrowthStrategy:
    """Every task adds components to every pool, unconstrained; subclasses narrow or protect that."""

    name = ""

    def __init__(self, config: LearnerConfig, query_dims: dict[Modality, int]):
        self.config = config
        self.query_dims = query_dims

    def attach_towers(self, image_tower, text_tower) -> None:
        """Learn what the strategy needs of the towers it serves, or refuse them with a ValueError."""

    def prompt_tasks(self, tasks: int) -> int:
        """How many of `tasks` tasks added components to the prompt pools."""
        return tasks

    def memory_tasks(self, tasks: int) -> int:
        """How many of `tasks` tasks added components to the memory (reconstruction) pools."""
        return self.prompt_tasks(tasks)

    def grown_pools(self, tasks_before: int) -> list[tuple[str, int]]:
        """The pools that task number `tasks_before + 1` grows, each with its number of new components."""
        grown = []
        if self.prompt_tasks(tasks_before + 1) > self.prompt_tasks(tasks_before):
            grown += [(name, self.config.components_per_task) for name in PROMPT_POOLS]
        if self.memory_tasks(tasks_before + 1) > self.memory_tasks(tasks_before):
            grown += [(name, self.config.memory_components_per_task) for name in MEMORY_POOLS]
        return grown

    def key_projection(self, query: Modality, tasks_before: int) -> torch.Tensor | None:
        """A projection `(Dq, Dq)` the new keys of a pool queried with `query` must live in; None: anywhere."""
        return None

    def open_task(self, learner, batch) -> None:
        """Take note of a task about to grow the model as published (`learner`), with rows `batch`."""

    def soft_targets(self, learner, batch):
        """What the task's training should keep of the model as it is, computed before the pools grow: an
        object whose `loss(scores, rows, lose_image, lose_text)` is added to the loss; None: nothing."""
        return None

    def task_trained(self, learner, batch, targets: torch.Tensor) -> None:
        """Take note of a trained task's rows `batch` and their classes `targets (N,)` among every class, before
        the discriminant learns the new classes."""

    def observe_task(self, queries: dict[Modality, torch.Tensor]) -> None:
        """Take note of a trained task: the queries `(N, Dq)` its rows put to the pools, by query modality."""

    def task_choice(self, queries: dict[Modality, torch.Tensor]) -> torch.Tensor | None:
        """Which tasks' components each row may use `(B, T)` bool, from its queries `(B, Dq)` by modality
        (only those known when the pool is asked); None: every component."""
        return None

    def export_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def import_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Install what `export_tensors` wrote; shapes were checked by the caller."""

    def expected_shapes(self, tasks: int) -> dict[str, tuple[int, ...]]:
        return {}
