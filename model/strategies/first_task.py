"""`first_task`: prompt components on the first task only; every later task adds classifier rows.

The baseline the other strategies must beat. CODA-Prompt's cosine attention is dense: components learned
for a new task get weight from old inputs too and move old classes' features. Freezing the pools after
the first task keeps every old feature exact, so the discriminant's statistics of old classes stay true,
at the price of prompts that never learn a later task.
"""

from __future__ import annotations

from model.strategies.base import GrowthStrategy


class FirstTask(GrowthStrategy):
    name = "first_task"

    def prompt_tasks(self, tasks: int) -> int:
        return min(super().prompt_tasks(tasks), 1)
