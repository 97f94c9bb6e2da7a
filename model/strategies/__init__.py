"""Growth strategies, one module each, picked by `learner.strategy`."""

from __future__ import annotations

from model.config import LearnerConfig
from model.modality import Modality
from model.strategies.base import MEMORY_POOLS, POOL_QUERIES, PROMPT_POOLS, GrowthStrategy
from model.strategies.exemplar_replay import ExemplarReplay
from model.strategies.first_task import FirstTask
from model.strategies.fwd_prompt import FwdPrompt
from model.strategies.modal_prompt import ModalPrompt
from model.strategies.moincl import MoInCL

STRATEGIES: dict[str, type[GrowthStrategy]] = {
    strategy.name: strategy for strategy in (FirstTask, FwdPrompt, ExemplarReplay, ModalPrompt, MoInCL)
}

__all__ = ["MEMORY_POOLS", "POOL_QUERIES", "PROMPT_POOLS", "STRATEGIES", "GrowthStrategy", "make_strategy"]


def make_strategy(config: LearnerConfig, query_dims: dict[Modality, int]) -> GrowthStrategy:
    return STRATEGIES[config.strategy](config, query_dims)
